"""The embedding API: a Store opened with its whole lifecycle wired (crash recovery, the
space keeper's deletion for room) and clips as methods. ``vstore.open_store`` is this."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import IO, Any, Unpack

from vstore.base.timebase import to_ns
from vstore.export.clip import clip_bytes, write_clip
from vstore.export.clip_plan import ClipPlan, plan_clip
from vstore.export.clip_result import ClipResult
from vstore.lifecycle.retention import make_room
from vstore.segment.format import TrackInfo
from vstore.store import opening
from vstore.store import store as engine
from vstore.store.camera_writer import CameraWriter, MappedTracks, open_writer


class Store(engine.Store):
    """A store as an embedding program uses it (see ``vstore.store.store.Store`` for the
    engine's part and its thread-safety contract)."""

    def writer(
        self,
        camera_id: str,
        tracks: Sequence[TrackInfo] | MappedTracks,
        *,
        start_ns: int | None = None,
    ) -> CameraWriter:
        """A writer for one camera (see ``vstore.store.camera_writer.open_writer``): it takes
        PyAV packets or ``vstore.Packet`` records, thread-safely."""
        return open_writer(self, camera_id, tracks, start_ns=start_ns)

    def plan_clip(self, camera_id: str, start_ns: Any, end_ns: Any) -> ClipPlan:
        """What a clip of [start_ns, end_ns) would contain; no payload is read."""
        return plan_clip(self, camera_id, to_ns(start_ns), to_ns(end_ns))

    def clip(
        self,
        camera_id: str,
        start_ns: Any,
        end_ns: Any,
        format: str = "mp4",
        out: str | os.PathLike[str] | IO[bytes] | None = None,
    ) -> ClipResult | Iterator[bytes]:
        """A clip of [start_ns, end_ns): with ``out`` (a path or binary file object) it is
        written there and a ClipResult returned; without, an iterator of bytes is returned.
        Times are ns since the epoch, aware ``datetime``s or text such as ``-15m``."""
        start, end = to_ns(start_ns), to_ns(end_ns)
        if out is None:
            return clip_bytes(self, camera_id, start, end, format=format)
        with self.lease(ranges=[(camera_id, start, end)]):  # before planning (L1)
            plan = plan_clip(self, camera_id, start, end)
            return write_clip(self, plan, out, format=format)


def open_store(
    path: str | os.PathLike[str] | None = None, **options: Unpack[opening.OpenOptions]
) -> Store:
    """Open the store at path (default: $VSTORE_STORE or ./vstore-data), creating it if new;
    recovered when opened for writing, and freeing room by the retention rules when its
    disk falls below the watermark. Options: ``read_only``, ``create``, and the seams tests
    inject (``clock``, ``fs``, ``disk_usage``); see ``vstore.store.opening.OpenOptions``."""
    options.setdefault("make_room", make_room)
    return opening.open_store(path, Store, **options)
