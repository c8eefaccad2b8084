"""Opening a store: construct it, then, when it may write, run crash recovery (R1-R6)
before any writer starts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar, Unpack

from vstore.base.clock import Clock
from vstore.base.fsutil import Fs
from vstore.store.disk import DiskUsage
from vstore.store.recovery import recover
from vstore.store.store import Store, resolve_store_path

S = TypeVar("S", bound=Store)


class OpenOptions(TypedDict, total=False):
    """How to open a store (every key optional; ``Store.__init__`` documents each)."""

    read_only: bool  # inspect a store, perhaps one another process writes
    clock: Clock  # the wall and boot clocks (tests inject stepped clocks)
    fs: Fs  # the filesystem seam (tests inject faults)
    create: bool  # create the store when it does not exist (default True)
    disk_usage: Callable[[], DiskUsage]  # free space, as tests simulate a filling disk
    make_room: Callable[[Any], tuple[int, str]]  # how a full disk frees space


def open_store(
    path: str | os.PathLike[str] | None = None,
    factory: Callable[..., S] = Store,  # type: ignore[assignment]
    **options: Unpack[OpenOptions],
) -> S:
    """Open the store at path (default: $VSTORE_STORE or ./vstore-data), creating it if new,
    and recover it when opened for writing (``last_recovery`` says what that repaired)."""
    st = factory(resolve_store_path(str(path) if path is not None else None), **options)
    if not options.get("read_only", False):
        try:
            st.last_recovery = recover(st)
        except BaseException:
            st.close()
            raise
    return st
