"""Opening a store: construct it, then, when it may write, run crash recovery (R1-R6)
before any writer starts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from vstore.base.clock import Clock
from vstore.base.fsutil import Fs
from vstore.store.disk import DiskUsage
from vstore.store.recovery import recover
from vstore.store.store import Store, resolve_store_path

S = TypeVar("S", bound=Store)


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    clock: Clock | None = None,
    fs: Fs | None = None,
    create: bool = True,
    disk_usage: Callable[[], DiskUsage] | None = None,
    make_room: Callable[[Any], tuple[int, str]] | None = None,
    factory: Callable[..., S] = Store,  # type: ignore[assignment]
) -> S:
    """Open the store at path (default: $VSTORE_STORE or ./vstore-data), creating it if new,
    and recover it when opened for writing (``last_recovery`` says what that repaired)."""
    st = factory(
        resolve_store_path(str(path) if path is not None else None),
        read_only=read_only,
        clock=clock,
        fs=fs,
        create=create,
        disk_usage=disk_usage,
        make_room=make_room,
    )
    if not read_only:
        try:
            st.last_recovery = recover(st)
        except BaseException:
            st.close()
            raise
    return st
