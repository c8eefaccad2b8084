"""An MP4 clip as a file of known size and identity whose bytes can be read at any offset:
what an HTTP server needs for ``Range``, ``If-Range``, ``ETag`` and ``HEAD``.

The layout (``ftyp | moov | mdat``) comes from the chunks' packet tables before any payload is
read, so the size and the first bytes are known at once, and a range near the end of an
hour-long clip reads only the chunks it covers. The clip is the one ``write_clip`` writes, byte
for byte, and it keeps its footage leased (lifecycle L1-L3) until closed.
"""

import hashlib
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Self

from vstore._version import __version__
from vstore.base.errors import CorruptSegment
from vstore.export.clip import start_on_the_frame_shown
from vstore.export.clip_plan import ClipPlan, DamagedChunks, plan_clip
from vstore.export.mp4_clip import NativeMp4
from vstore.store.store import Store

# How many times a layout is planned again without chunks that failed their check.
_REPLANS = 64


class ClipFile:
    """A prepared MP4 clip; ``open_clip_file`` makes one."""

    def __init__(self, plan: ClipPlan, mp4: NativeMp4, leases: ExitStack) -> None:
        self.plan = plan
        self._mp4 = mp4
        self._leases = leases
        self.size = mp4.size
        self.etag = _etag(plan)
        self._lock = threading.Lock()

    @property
    def head_bytes(self) -> int:
        """Bytes before the first sample (``ftyp``, ``moov``, the ``mdat`` header)."""
        return len(self._mp4.head)

    def read(self, start: int = 0, end: int | None = None) -> Iterator[list[bytes | memoryview]]:
        """Bytes ``start`` to ``end`` (exclusive; None: the end), in blocks of buffers.
        Several readers may read at once (each block is read under the file's lock)."""
        blocks = self._mp4.read_range(start, self.size if end is None else end)
        while True:
            with self._lock:
                block = next(blocks, None)
            if block is None:
                return
            yield block

    def close(self) -> None:
        self._mp4.close()
        self._leases.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _etag(plan: ClipPlan) -> str:
    """A strong validator: the same range over the same chunks gives the same bytes. The
    chunks' checksums and places name them; the version, the muxer that laid them out."""
    h = hashlib.sha256(f"{__version__}|{plan.camera}|{plan.start_ns}|{plan.end_ns}".encode())
    for p in plan.read_parts:
        for c in p.chunks:
            h.update(f"|{c.segment_id}:{c.offset}:{c.length}:{c.crc32}".encode())
    return '"' + h.hexdigest()[:32] + '"'


def open_clip_file(
    store: Store, camera_id: str, start_ns: int, end_ns: int, strict: bool = False
) -> ClipFile | None:
    """The MP4 clip of [start_ns, end_ns) prepared for reading at any offset; None when its
    audio needs FFmpeg's muxer (MP3, Opus), which cannot lay a file out ahead. Raises
    NotFound when the range holds no footage. Chunks whose tables fail their check become
    gaps (``plan.damaged``) unless ``strict``; a chunk found damaged while bytes are read
    raises CorruptSegment then."""
    leases = ExitStack()
    try:
        # Leased before planning (L1): nothing planned can be deleted under the reader.
        leases.enter_context(store.lease(ranges=[(camera_id, start_ns, end_ns)]))
        plan = plan_clip(store, camera_id, start_ns, end_ns)
        for _attempt in range(_REPLANS):
            # Nothing kept between reads: a reader holds many of these at once.
            mp4 = NativeMp4(store, plan, strict, keep_bytes=0)
            try:
                if not mp4.supported():
                    mp4.close()
                    leases.close()
                    return None
                start_on_the_frame_shown(store, plan, strict)
                mp4.prepare()
            except DamagedChunks as exc:
                mp4.close()
                plan = plan.without(exc.chunks)
                continue
            except BaseException:
                mp4.close()
                raise
            leases.enter_context(store.lease(p.segment.segment_id for p in plan.read_parts))
            return ClipFile(plan, mp4, leases)
        raise CorruptSegment(f"too many damaged chunks in the range of camera {camera_id!r}")
    except BaseException:
        leases.close()
        raise
