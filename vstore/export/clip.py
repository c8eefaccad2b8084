"""Clips: a camera and a wall-clock range in, a standard MP4 / fragmented MP4 / MPEG-TS /
QuickTime file out, remuxed and never decoded.

``mp4`` (and ``mov``) begin on the exact frame on screen at ``start`` (an edit list hides the
pre-roll from the keyframe); streaming forms (``fmp4``, ``ts``) begin with the whole GOP that
contains ``start`` (``ClipPlan.preroll_ns``). Output times are wall time relative to the
first requested frame, so a gap stays a gap in time. MP4 is written by our own muxer
(``mp4_clip``); the other forms go through PyAV (``remux``)."""

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from vstore.base.errors import CorruptSegment, UsageError, VstoreError
from vstore.base.fsutil import translate_oserror
from vstore.base.timebase import (
    format_time,
    ticks_to_ns_many,
)
from vstore.export.clip_output import ClipOutput
from vstore.export.clip_plan import FORMATS, ClipPlan, DamagedChunks, plan_clip
from vstore.export.clip_result import ClipResult
from vstore.export.mp4_clip import NativeMp4
from vstore.export.remux import CONTAINERS, EDITED_FORMATS, MUX_OPTIONS, mux_plan, origin_ns
from vstore.segment.reader import SegmentReader
from vstore.store.store import Store


class _Abandoned(Exception):
    """The consumer of a streamed clip stopped reading."""


class _CountingSink:
    """A write-only file object for PyAV that forwards bytes and counts them."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self.count = 0
        self.first_byte_at: float | None = None

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self.first_byte_at is None and data:
            self.first_byte_at = time.perf_counter()
        self._write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class _FileSink:
    """A file for PyAV to write a clip into, seekable (MP4 and MOV go back to their moov).
    Its first error is raised to PyAV, which hands it on; after it, writes and seeks do
    nothing and succeed, so the muxer's closing writes add no second error (PyAV would print
    each as "exception being dropped")."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, b: Any) -> int:
        if self.error is None:
            try:
                return self._f.write(b)
            except OSError as exc:
                self.error = exc
                raise
        return len(b)

    def seek(self, offset: int, whence: int = 0) -> int:
        if self.error is None:
            try:
                return self._f.seek(offset, whence)
            except OSError as exc:
                self.error = exc
                raise
        return 0

    def tell(self) -> int:
        return self._f.tell() if self.error is None else 0

    def flush(self) -> None:
        pass  # (closing the file writes what it holds)

    def close(self) -> None:
        """Close the file; its last bytes are written here, and a failure raises."""
        try:
            self._f.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc
        if self.error is not None:
            raise self.error


# Formats FFmpeg writes front to back, never going back in the file.
STREAMED_FORMATS = ("fmp4", "ts")


def write_clip(
    store: Store,
    plan: ClipPlan,
    out: str | os.PathLike[str] | IO[bytes],
    *,
    format: str = "mp4",
    progress: Callable[[int, int], None] | None = None,
    muxer: str = "auto",
    strict: bool = False,
) -> ClipResult:
    """Remux the plan's packets into ``out`` (a path, or a writable binary file object).

    A chunk that does not verify is left out with the rest of its GOP and listed in the
    result's ``plan.damaged`` (the clip shows a gap there); ``strict`` raises CorruptSegment
    instead.

    ``mp4`` puts the index (moov) first so it plays while downloading. vstore's own MP4
    writer (``muxer="auto"``) builds it from the packet tables and streams it to ``out``
    with nothing staged; ``muxer="ffmpeg"`` (and audio only FFmpeg can box: MP3, Opus) uses
    FFmpeg's muxer, which needs a second pass over the file, so to a file object it is
    staged in the store's tmp/ directory (disk, not memory). ``fmp4`` and ``ts`` use FFmpeg
    and stream straight to ``out``.
    """
    if muxer not in ("auto", "ffmpeg"):
        raise UsageError("muxer must be 'auto' or 'ffmpeg'")
    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    for _attempt in range(64):
        try:
            if format in EDITED_FORMATS:
                start_on_the_frame_shown(store, plan, strict)
            return _write_clip(store, plan, out, format, progress, muxer, strict, t0)
        except DamagedChunks as exc:
            # Chunks that do not verify become a gap (listed in plan.damaged), found before
            # a byte was written; ``strict`` fails instead, as a chunk read does.
            plan = plan.without(exc.chunks)
    raise CorruptSegment(f"too many damaged chunks in the range of camera {plan.camera!r}")


def start_on_the_frame_shown(store: Store, plan: ClipPlan, strict: bool) -> None:
    """An MP4 clip starts on the frame on screen at its requested start (the one a snapshot
    of that instant shows), not on the next one: players built on FFmpeg show no frame that
    begins before the edit list's start. Moves ``plan.start_ns`` back to that frame's time
    (less than one frame). Reads the packet tables of the chunks up to the start (usually
    one GOP) and of the chunk after them: local chunks' tables alone, as the clip checks
    each chunk when it reads it; tiered chunks whole (a table alone would cost a request of
    its own)."""
    want = plan.start_ns
    best = None
    video0 = None
    for part in plan.parts:
        try:
            reader = store.segment_reader(part.segment)
        except CorruptSegment:  # (its file missing, or unreadable: damage, R6)
            if strict:
                raise
            raise DamagedChunks(list(part.chunks)) from None
        with reader as rd:
            meta = rd.meta
            video = next((t for t in meta.tracks if t.kind == "video"), None)
            if video is None or (video0 is not None and video.codec != video0):
                break
            video0 = video.codec
            tb = video.time_base
            shift = meta.anchor_wall_ns - meta.anchor_media_ns
            for c in part.chunks:
                try:
                    if part.segment.location == "local":
                        cols = rd.read_table(c.offset, c.length)[1]
                    else:
                        cols = rd.read_chunk(c.offset, c.length, c.crc32).columns
                except CorruptSegment:
                    if strict:
                        raise
                    raise DamagedChunks([c]) from None
                pts = [p for p, tr in zip(cols.pts, cols.track, strict=True) if tr == video.index]
                shown = [w for w in ticks_to_ns_many(pts, *tb, shift) if w <= want]
                if shown:
                    best = max(shown) if best is None else max(best, *shown)
                if c.start_ns > want:
                    # The first chunk past the start is read too: an open GOP's leading
                    # frames in it are shown before its keyframe (clip_plan.chunk_after).
                    break
            else:
                continue
            break
    if best is not None and best < want:
        plan.start_ns = best


def _write_clip(
    store: Store,
    plan: ClipPlan,
    out: str | os.PathLike[str] | IO[bytes],
    format: str,
    progress: Callable[[int, int], None] | None,
    muxer: str,
    strict: bool,
    t0: float,
) -> ClipResult:
    if format == "mp4" and muxer == "auto":
        with store.lease(p.segment.segment_id for p in plan.read_parts):
            native = NativeMp4(store, plan, strict)
            try:
                if native.supported():
                    return native.write(out, t0, progress)
            finally:
                native.close()
    # The first chunk gives the streams their parameters: check it before any output.
    c0 = plan.parts[0].chunks[0]
    with store.segment_reader(plan.parts[0].segment) as rd0:
        try:
            rd0.read_chunk(c0.offset, c0.length, c0.crc32)
        except CorruptSegment:
            if strict:
                raise
            raise DamagedChunks([c0]) from None
    import av  # PyAV: heavy, loaded on first use

    staged: Path | None = None
    sink: _CountingSink | None = None
    output: ClipOutput | None = None
    out_file: _FileSink | None = None
    if format in EDITED_FORMATS and not isinstance(out, str | os.PathLike):
        import tempfile  # lazily (~15 ms): only an edited format sent to a stream stages

        store.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=f".{format}", dir=store.layout.tmp_dir)
        os.close(fd)
        staged = Path(name)
        target: Any = str(staged)
    elif isinstance(out, str | os.PathLike):
        output = ClipOutput(out)
        if format not in STREAMED_FORMATS:
            target = output.name_for_creating()
        else:
            # Written through a Python file, not by FFmpeg's own file I/O: FFmpeg lets a
            # write that fails at the end of a fragmented MP4 pass, and the clip would be
            # cut short in silence; a Python file raises, and PyAV hands that on. (MP4 and
            # MOV keep FFmpeg's: moving their moov to the front reopens the file by name.)
            out_file = _FileSink(os.fdopen(output.open_fd(), "wb"))
            target = out_file
    else:
        sink = _CountingSink(out.write)
        target = sink
    readers: dict[int, SegmentReader] = {}
    counts = {"video": 0, "audio": 0}
    dropped: list[str] = []
    # A read lease keeps retention away from these segments while the clip reads them.
    with store.lease(p.segment.segment_id for p in plan.read_parts):
        try:
            with av.open(
                target, "w", format=CONTAINERS[format], options=dict(MUX_OPTIONS[format])
            ) as container:
                # The wall time of the first sample shown: fMP4 and MPEG-TS have no edit
                # list and show the GOP from its keyframe; MP4 hides the pre-roll.
                origin = origin_ns(plan, format)
                container.metadata["creation_time"] = format_time(origin).replace("+00:00", "Z")
                container.metadata["vstore_start"] = format_time(origin)
                container.metadata["vstore_start_ns"] = str(origin)
                container.metadata["vstore_camera"] = plan.camera
                mux_plan(store, plan, container, format, readers, counts, dropped, progress, strict)
            if out_file is not None:
                out_file.close()  # (its last bytes are written here: a failure raises)
        except BaseException as exc:
            if out_file is not None:
                with contextlib.suppress(OSError):
                    out_file.close()
                exc = out_file.error or exc  # (the file's first error: what went wrong)
            if output is not None:
                output.abort()
            cause = exc.__cause__ or exc.__context__
            if isinstance(exc, av.FFmpegError) and isinstance(cause, BrokenPipeError):
                raise cause from None  # the reader went away (`| head`): not a failure
            if isinstance(exc, av.FFmpegError) and isinstance(cause, OSError):
                exc = cause  # the file's own error, handed on by PyAV's write callback
            if isinstance(exc, OSError) and exc.errno is not None and output is not None:
                # The file's I/O errors (FFmpeg's error classes are OSErrors too): a full disk
                # is StorageFull, as everywhere, and the message names the user's path.
                raise translate_oserror(exc, f"writing the {format} clip to {out}") from exc
            if isinstance(exc, av.FFmpegError):
                raise VstoreError(f"building the {format} clip failed: {exc}") from exc
            raise
        finally:
            for rd in readers.values():
                rd.close()
    if output is not None:
        output.commit()
    first_byte = None
    written = 0
    if staged is not None:
        assert not isinstance(out, str | os.PathLike)
        with open(staged, "rb") as f:
            while True:
                buf = f.read(1 << 20)
                if not buf:
                    break
                if first_byte is None:
                    first_byte = time.perf_counter() - t0
                out.write(buf)
                written += len(buf)
        staged.unlink()
    elif sink is not None:
        written = sink.count
        first_byte = (sink.first_byte_at - t0) if sink.first_byte_at else None
    else:
        written = Path(out).stat().st_size  # type: ignore[arg-type]
    return ClipResult(
        plan,
        format,
        written,
        counts["video"],
        counts["audio"],
        time.perf_counter() - t0,
        first_byte,
        dropped,
    )


def clip_bytes(
    store: Store,
    camera_id: str,
    start_ns: int,
    end_ns: int,
    format: str = "fmp4",
    chunk_bytes: int = 1 << 16,
    on_plan: Callable[[ClipPlan], None] | None = None,
) -> Iterator[bytes]:
    """Stream a clip as bytes. ``fmp4``/``ts`` are produced as they are muxed; ``mp4`` is
    staged on disk first (moov-first needs the whole file). Memory stays bounded.
    ``on_plan`` is handed the clip's plan before the first byte (what a caller records)."""
    # Leased before planning and until the last byte is produced (L1).
    lease = store.lease(ranges=[(camera_id, start_ns, end_ns)])
    lease.__enter__()
    try:
        plan = plan_clip(store, camera_id, start_ns, end_ns)
        if on_plan is not None:
            on_plan(plan)
    except BaseException:
        lease.__exit__(None, None, None)
        raise
    import queue  # (a stream's producer thread: not on a clip to a file)

    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
    # Set when the consumer stops early (a client that went away): the muxing thread then
    # stops at its next write instead of waiting forever on a full queue.
    abandoned = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        while not abandoned.is_set():
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Abandoned

    class _Q:
        def write(self, b: bytes) -> int:
            put(bytes(b))
            return len(b)

    def run() -> None:
        try:
            write_clip(store, plan, _Q(), format=format)  # type: ignore[arg-type]
            put(None)
        except _Abandoned:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            try:
                put(exc)
            except _Abandoned:
                pass

    th = threading.Thread(target=run, name="vstore-clip", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            for i in range(0, len(item), chunk_bytes):
                yield item[i : i + chunk_bytes]
    finally:
        abandoned.set()  # (after the last item: the thread has nothing left to put)
        th.join()
        lease.__exit__(None, None, None)
