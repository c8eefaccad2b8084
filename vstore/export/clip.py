"""Clips: a camera and a wall-clock range in, a standard MP4 / fragmented MP4 / MPEG-TS out.

Streaming forms (``fmp4``, ``ts``) have no edit list before their first fragment, so they
begin with the whole GOP that contains ``start`` (``ClipPlan.preroll_ns``); ``mp4`` begins on
the exact frame.

``plan_clip`` resolves the range through the index (one seek to the GOP start that decoding
needs, then a forward scan) into segments, chunks and byte ranges, with the gaps and timeline
events inside the range; it reads no payload. ``write_clip`` remuxes the planned packets with
PyAV, never decoding: output timestamps are wall time relative to the first requested frame,
so the pre-roll from the keyframe gets negative times that an MP4 edit list hides (the first
frame a player shows is the frame at ``start``) and a gap stays a gap in time.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up (issue 5).

import itertools
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from vstore.base.errors import CorruptSegment, NotFound, UsageError, VstoreError
from vstore.base.fsutil import translate_oserror
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    NS_PER_S,
    TimeRange,
    format_time,
    ns_to_ticks,
    ns_to_ticks_many,
    subtract_ranges,
    ticks_to_ns_many,
)
from vstore.codec.aac import adts_to_asc, asc_sample_rate
from vstore.codec.annexb import (
    annexb_to_length_prefixed,
    config_to_annexb,
    length_prefixed_to_annexb,
)
from vstore.codec.parameter_sets import avcc_record, hvcc_record
from vstore.export.mp4 import Mp4Track, aac_entry, visual_entry
from vstore.export.mp4 import layout as mp4_layout
from vstore.index.time_index import ChunkRow, SegmentRow
from vstore.segment import format as fmt
from vstore.segment.reader import SegmentReader, chunk_packets
from vstore.store.store import Store, damaged_ranges

FORMATS = ("mp4", "fmp4", "ts", "mov")
MAX_CLIP_NS = 7 * 86400 * NS_PER_S  # a limit on everything: one request, at most a week
_MUX_OPTIONS = {
    "mp4": {"movflags": "+faststart+use_metadata_tags"},
    # delay_moov: the moov waits for the first fragment, so it knows where each track starts
    # and gives audio that starts after the first frame an edit list (without, the muxer
    # pulls its first sample to 0 and stretches it).
    "fmp4": {
        "movflags": "+frag_keyframe+empty_moov+delay_moov+default_base_moof+use_metadata_tags"
    },
    "ts": {},
    "mov": {"movflags": "+faststart+use_metadata_tags"},
}
_CONTAINER = {"mp4": "mp4", "fmp4": "mp4", "ts": "mpegts", "mov": "mov"}
# Audio each container takes as it is (remuxed). G.711 (the usual audio of IP cameras) goes
# into QuickTime (.mov, `ulaw`/`alaw` sample entries): MP4 and MPEG-TS have no place for it.
_AUDIO_OK = {
    "mp4": {"aac", "mp3", "opus"},
    "fmp4": {"aac", "mp3", "opus"},
    "ts": {"aac", "mp3", "opus"},
    "mov": {"aac", "mp3", "pcm_mulaw", "pcm_alaw"},
}
# Containers with an edit list: the pre-roll is hidden and the clip starts on its frame.
_EDITED = ("mp4", "mov")


class _Damaged(Exception):
    """Chunks of a plan that do not verify, found before anything was written: the clip is
    built again without them (``ClipPlan.without``)."""

    def __init__(self, chunks: list[ChunkRow]) -> None:
        super().__init__(f"{len(chunks)} damaged chunk(s)")
        self.chunks = chunks


class ClipPart(NamedTuple):
    """Consecutive chunks of one segment that the clip reads."""

    segment: SegmentRow
    chunks: tuple[ChunkRow, ...]

    @property
    def bytes(self) -> int:
        return sum(c.length for c in self.chunks)


class ClipPlan:
    """What a clip will contain, resolved from the index without reading payloads. Building
    the clip may shorten it (``end_ns``) and add ``notes``."""

    def __init__(
        self,
        camera: str,
        requested: TimeRange,
        start_ns: int,
        end_ns: int,
        preroll_ns: int,
        parts: list[ClipPart],
        gaps: list[tuple[int, int]],
        events: list[dict[str, Any]],
        notes: list[str] | None = None,
    ) -> None:
        self.camera = camera
        self.requested = requested
        self.start_ns = start_ns  # first frame shown (>= requested start if footage is later)
        self.end_ns = end_ns  # end of the last frame included (<= requested end)
        self.preroll_ns = preroll_ns  # keyframe the decoder starts from (<= start_ns)
        self.parts = parts
        self.gaps = gaps
        self.events = events
        self.notes = notes if notes is not None else []
        # Ranges left out because their chunks do not verify (the clip shows a gap there).
        self.damaged: list[tuple[int, int]] = []

    def without(self, bad: Iterable[ChunkRow]) -> "ClipPlan":
        """This plan without chunks that do not verify, nor the continuation chunks of their
        GOPs (undecodable without them); their ranges are listed in ``damaged``."""
        bad_starts = {c.start_ns for c in bad}
        damaged = list(self.damaged)
        parts: list[ClipPart] = []
        skipping = False
        for p in self.parts:
            kept = []
            for c in p.chunks:
                dependent = skipping and bool(c.flags & fmt.CHUNK_CONTINUATION)
                if (
                    c.start_ns in bad_starts
                    or dependent
                    or (not parts and not kept and (c.flags & fmt.CHUNK_CONTINUATION))
                ):
                    if damaged and damaged[-1][1] >= c.start_ns:
                        damaged[-1] = (damaged[-1][0], max(damaged[-1][1], c.end_ns))
                    else:
                        damaged.append((c.start_ns, c.end_ns))
                    skipping = True
                    continue
                skipping = False
                kept.append(c)
            if kept:
                parts.append(ClipPart(p.segment, tuple(kept)))
        if not parts:
            raise CorruptSegment(
                f"every chunk of camera {self.camera!r} in the range is damaged "
                "(see `vstore check`)"
            )
        first, last = parts[0].chunks[0], parts[-1].chunks[-1]
        out = ClipPlan(
            self.camera,
            self.requested,
            max(self.start_ns, first.start_ns),
            min(self.end_ns, last.end_ns),
            first.start_ns,
            parts,
            self.gaps,
            self.events,
            list(self.notes),
        )
        out.damaged = damaged
        return out

    def __repr__(self) -> str:
        return (
            f"ClipPlan(camera={self.camera!r}, start_ns={self.start_ns}, end_ns={self.end_ns}, "
            f"parts={len(self.parts)}, gaps={self.gaps!r}, notes={self.notes!r})"
        )

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "requested": {
                "from": format_time(self.requested.start_ns),
                "to": format_time(self.requested.end_ns),
            },
            "from": format_time(self.start_ns),
            "to": format_time(self.end_ns),
            "from_ns": self.start_ns,
            "to_ns": self.end_ns,
            "preroll_from": format_time(self.preroll_ns),
            "bytes": self.bytes,
            "segments": [
                {
                    "segment_id": p.segment.segment_id,
                    "location": p.segment.location,
                    "path": p.segment.path,
                    "ranges": [[c.offset, c.length] for c in p.chunks],
                    "from": format_time(p.chunks[0].start_ns),
                    "to": format_time(p.chunks[-1].end_ns),
                }
                for p in self.parts
            ],
            "gaps": [
                {
                    "from": format_time(s),
                    "to": format_time(e),
                    "from_ns": s,
                    "to_ns": e,
                    "duration_s": (e - s) / NS_PER_S,
                }
                for s, e in self.gaps
            ],
            "events": [{"at": format_time(e["at_ns"]), **e} for e in self.events],
            "damaged": [
                {"from": format_time(s), "to": format_time(e), "from_ns": s, "to_ns": e}
                for s, e in self.damaged
            ],
            "notes": self.notes,
        }


def plan_clip(store: Store, camera_id: str, start_ns: int, end_ns: int) -> ClipPlan:
    """Resolve [start_ns, end_ns) for a camera; NotFound when the range holds no footage."""
    rng = TimeRange(start_ns, end_ns)
    if rng.duration_ns > MAX_CLIP_NS:
        raise UsageError("a clip may span at most 7 days; split the request")
    num = store.camera_num(camera_id)
    chunks = list(store.index.chunks_from_keyframe(num, start_ns, end_ns, fmt.CHUNK_CONTINUATION))
    if not chunks:
        raise NotFound(
            f"camera {camera_id!r} has no footage between {format_time(start_ns)} and "
            f"{format_time(end_ns)} (see `vstore timeline --camera {camera_id}`)"
        )
    seg_rows = {r.segment_id: r for r in store.index.segments(num, chunks[0].start_ns, end_ns)}
    parts: list[ClipPart] = []
    for c in chunks:
        row = seg_rows.get(c.segment_id)
        if row is None:
            raise VstoreError(
                f"index names segment {c.segment_id} without a catalog row; run `vstore check`"
            )
        if parts and parts[-1].segment.segment_id == c.segment_id:
            parts[-1] = ClipPart(row, (*parts[-1].chunks, c))
        else:
            parts.append(ClipPart(row, (c,)))
    first_ns = max(start_ns, chunks[0].start_ns)
    last_ns = min(end_ns, chunks[-1].end_ns)
    gaps: list[tuple[int, int]] = []
    if chunks[0].start_ns > start_ns:
        gaps.append((start_ns, chunks[0].start_ns))
    for a, b in itertools.pairwise(chunks):
        if b.start_ns - a.end_ns > GAP_TOLERANCE_NS:
            gaps.append((a.end_ns, b.start_ns))
    if chunks[-1].end_ns < end_ns:
        gaps.append((chunks[-1].end_ns, end_ns))
    events = [
        {"at_ns": e.at_ns, "kind": e.kind, "detail": e.detail}
        for e in store.index.events(num, min(start_ns, chunks[0].start_ns), end_ns)
    ]
    # A gap where footage was recorded and later found damaged (R5, R6) says so.
    gaps, damaged = subtract_ranges(gaps, damaged_ranges(events))
    plan = ClipPlan(camera_id, rng, first_ns, last_ns, chunks[0].start_ns, parts, gaps, events)
    plan.damaged = damaged
    return plan


class ClipResult(NamedTuple):
    plan: ClipPlan
    format: str
    bytes_written: int
    video_packets: int
    audio_packets: int
    elapsed_s: float
    first_byte_s: float | None
    dropped_tracks: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.plan.as_json(),
            "format": self.format,
            "bytes_written": self.bytes_written,
            "video_packets": self.video_packets,
            "audio_packets": self.audio_packets,
            "elapsed_s": round(self.elapsed_s, 4),
            "dropped_tracks": self.dropped_tracks,
        }


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
            if format in _EDITED:
                _start_on_the_frame_shown(store, plan, strict)
            return _write_clip(store, plan, out, format, progress, muxer, strict, t0)
        except _Damaged as exc:
            # Chunks that do not verify become a gap (listed in plan.damaged), found before
            # a byte was written; ``strict`` fails instead, as a chunk read does.
            plan = plan.without(exc.chunks)
    raise CorruptSegment(f"too many damaged chunks in the range of camera {plan.camera!r}")


def _start_on_the_frame_shown(store: Store, plan: ClipPlan, strict: bool) -> None:
    """An MP4 clip starts on the frame on screen at its requested start (the one a snapshot
    of that instant shows), not on the next one: players built on FFmpeg show no frame that
    begins before the edit list's start. Moves ``plan.start_ns`` back to that frame's time
    (less than one frame); reads the chunks up to the start (usually one GOP)."""
    want = plan.start_ns
    best = None
    part = plan.parts[0]
    with store.segment_reader(part.segment) as rd:
        video = next((t.index for t in rd.meta.tracks if t.kind == "video"), None)
        for c in part.chunks:
            if c.start_ns > want:
                break
            try:
                chunk = rd.read_chunk(c.offset, c.length, c.crc32)
            except CorruptSegment:
                if strict:
                    raise
                raise _Damaged([c]) from None
            for p in chunk_packets(rd.meta, chunk):
                if p.track == video and p.wall_ns is not None and p.wall_ns <= want:
                    best = p.wall_ns if best is None else max(best, p.wall_ns)
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
        with store.lease(p.segment.segment_id for p in plan.parts):
            native = _NativeMp4(store, plan, strict)
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
            raise _Damaged([c0]) from None
    import av

    staged: Path | None = None
    sink: _CountingSink | None = None
    if format in _EDITED and not isinstance(out, str | os.PathLike):
        import tempfile

        store.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=f".{format}", dir=store.layout.tmp_dir)
        os.close(fd)
        staged = Path(name)
        target: Any = str(staged)
    elif isinstance(out, str | os.PathLike):
        target = str(out)
    else:
        sink = _CountingSink(out.write)
        target = sink
    readers: dict[int, SegmentReader] = {}
    counts = {"video": 0, "audio": 0}
    dropped: list[str] = []
    # A read lease keeps retention away from these segments while the clip reads them.
    with store.lease(p.segment.segment_id for p in plan.parts):
        try:
            with av.open(
                target, "w", format=_CONTAINER[format], options=dict(_MUX_OPTIONS[format])
            ) as container:
                # The wall time of the first sample shown: fMP4 and MPEG-TS have no edit
                # list and show the GOP from its keyframe; MP4 hides the pre-roll.
                origin = _origin_ns(plan, format)
                container.metadata["creation_time"] = format_time(origin).replace("+00:00", "Z")
                container.metadata["vstore_start"] = format_time(origin)
                container.metadata["vstore_start_ns"] = str(origin)
                container.metadata["vstore_camera"] = plan.camera
                _mux_plan(
                    store, plan, container, format, readers, counts, dropped, progress, strict
                )
        except av.FFmpegError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, BrokenPipeError):
                raise cause from None  # the reader went away (`| head`): not a failure
            raise VstoreError(f"building the {format} clip failed: {exc}") from exc
        finally:
            for rd in readers.values():
                rd.close()
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
        written = Path(target).stat().st_size
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


# Chunk pieces kept in memory between the native writer's two passes; past this they are
# read again (and checked again) in the second pass, so memory stays bounded for any clip.
_KEEP_BYTES = 64 << 20
_BLOCK_BYTES = 1 << 20  # output is written in blocks of about this size


class _TrackOut:
    """One output track of a native MP4: where its samples go and how they are framed."""

    __slots__ = ("adts", "annexb", "asc", "mp4", "src")

    def __init__(self, src: fmt.TrackInfo, mp4: Mp4Track, adts: bool, annexb: bool, asc: bytes):
        self.src, self.mp4 = src, mp4
        self.adts = adts  # AAC recorded with ADTS headers: strip them (MP4 wants raw frames)
        self.annexb = annexb  # Annex-B video: rewrite start codes as 4-byte lengths
        self.asc = asc  # AudioSpecificConfig (found in the first ADTS header if not recorded)


class _Pieces(NamedTuple):
    sizes: list[int]  # one per sample
    bufs: list[bytes | memoryview]  # the samples' bytes, in order


class _PlannedChunk(NamedTuple):
    reader: SegmentReader
    row: ChunkRow
    samples: list[tuple[int, list[int]]]  # (track, packet indices) in output order
    pieces: list[_Pieces] | None  # per entry of samples; None: read again


class _Sink:
    """Where a native MP4 goes: a path (written with writev, no joining copies; a file it
    created is removed if the clip fails) or a file object (fed blocks of about
    ``_BLOCK_BYTES``). Errors writing a path come out as vstore errors (a full disk as
    StorageFull)."""

    def __init__(self, out: str | os.PathLike[str] | IO[bytes]) -> None:
        self.count = 0
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self.path: Path | None = None
        self._fd = -1
        self._regular = False  # only a regular file is removed on failure (never /dev/...)
        self._file: IO[bytes] | None = None
        if isinstance(out, str | os.PathLike):
            self.path = Path(out)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            try:
                self._fd = os.open(self.path, flags, 0o644)
                self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            except OSError as exc:
                raise translate_oserror(exc, f"cannot write the clip to {self.path}") from exc
        else:
            self._file = out

    def put(self, bufs: list[bytes | memoryview]) -> None:
        self._pending += bufs
        self._pending_bytes += sum(len(b) for b in bufs)
        if self._pending_bytes >= _BLOCK_BYTES or self.count == 0:
            self._flush()

    def _flush(self) -> None:
        bufs, self._pending, n = self._pending, [], self._pending_bytes
        self._pending_bytes = 0
        if not bufs:
            return
        if self._file is not None:
            self._file.write(b"".join(bufs))
        else:
            try:
                # writev takes at most IOV_MAX (1024) buffers and may write less than asked.
                for k in range(0, len(bufs), 1024):
                    batch = bufs[k : k + 1024]
                    want = sum(len(b) for b in batch)
                    got = os.writev(self._fd, batch)
                    if got < want:
                        rest = memoryview(b"".join(batch))[got:]
                        while rest:
                            rest = rest[os.write(self._fd, rest) :]
            except OSError as exc:
                raise translate_oserror(exc, f"writing the clip to {self.path}") from exc
        self.count += n

    def close(self) -> None:
        self._flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._regular:
                assert self.path is not None
                self.path.unlink(missing_ok=True)


class _NativeMp4:
    """Builds a moov-first MP4 straight from the plan's packet tables (no FFmpeg).

    Pass 1 reads each chunk (checking its CRC), selects the packets in range, and fills the
    sample tables; pass 2 writes ``ftyp | moov | mdat`` and then the samples. Because the
    index is complete before the first sample byte, the file streams to a pipe with no
    staging, and the first byte goes out as soon as pass 1 ends.
    """

    def __init__(self, store: Store, plan: ClipPlan, strict: bool = False) -> None:
        self.store, self.plan, self.strict = store, plan, strict
        self.readers: dict[int, SegmentReader] = {}
        first = plan.parts[0].segment
        self.meta0 = self._reader(first).meta
        self.tracks: dict[int, _TrackOut] = {}
        self.dropped: list[str] = []
        self.chunks: list[_PlannedChunk] = []
        self.payload_bytes = 0

    def _reader(self, seg: SegmentRow) -> SegmentReader:
        rd = self.readers.get(seg.segment_id)
        if rd is None:
            rd = self.store.segment_reader(seg)
            self.readers[seg.segment_id] = rd
        return rd

    def close(self) -> None:
        for rd in self.readers.values():
            rd.close()

    def supported(self) -> bool:
        """Video in H.264/H.265 and audio in AAC (or not storable at all): the other audio
        codecs MP4 can hold (MP3, Opus) go through FFmpeg's muxer."""
        for t in self.meta0.tracks:
            if t.kind == "video" and t.codec not in ("h264", "hevc"):
                return False
            if t.kind == "audio" and t.codec != "aac" and t.codec in _AUDIO_OK["mp4"]:
                return False
        return True

    def _setup_tracks(self) -> None:
        track_id = 1
        for t in self.meta0.tracks:
            if t.kind == "audio" and t.codec != "aac":
                self.dropped.append(_not_storable(t, "mp4"))
                continue
            if t.kind == "video":
                scale = t.time_base[1]
            else:
                scale = t.sample_rate or (asc_sample_rate(t.extradata) if t.extradata else 0)
                scale = scale or 48000
            out = Mp4Track(track_id, t.kind, scale, b"", t.width, t.height)
            self.tracks[t.index] = _TrackOut(
                t,
                out,
                adts=t.kind == "audio" and not t.extradata,
                annexb=t.kind == "video" and t.bitstream != "avcc",
                asc=t.extradata if t.kind == "audio" else b"",
            )
            track_id += 1

    def _select(self, meta: fmt.SegmentMeta, chunk: Any) -> list[tuple[int, list[int]]]:
        """Packets of the chunk inside the clip, grouped per track (video first); appends
        their times and key flags to the sample tables (sizes come with the pieces)."""
        cols = chunk.columns
        start, end = self.plan.start_ns, self.plan.end_ns
        shift = meta.anchor_wall_ns - meta.anchor_media_ns
        pts, dts, flags, track = cols.pts, cols.dts, cols.flags, cols.track
        picked: list[tuple[int, list[int]]] = []
        present = sorted(set(track))
        for tr in present:
            out = self.tracks.get(tr)
            if out is None:
                continue
            one = len(present) == 1
            idx = range(len(track)) if one else [i for i, x in enumerate(track) if x == tr]
            tb = meta.tracks[tr].time_base
            walls = ticks_to_ns_many(pts if one else [pts[i] for i in idx], *tb, shift - start)
            end_rel = end - start
            if out.src.kind == "video":
                # Cut in decode order after the last frame shown before `end`: with
                # B-frames a reference shown after `end` is decoded before frames shown
                # before it, so it stays in (the edit list hides it) or they cannot decode.
                if max(walls) < end_rel:
                    last = len(walls) - 1  # the whole GOP is inside: the usual case
                else:
                    last = max((k for k, w in enumerate(walls) if w < end_rel), default=-1)
                keep: range | list[int] = range(last + 1)
            else:
                keep = [k for k, w in enumerate(walls) if 0 <= w < end_rel]
            if not keep:
                continue
            whole = len(keep) == len(walls)
            sel = list(idx) if whole else [idx[k] for k in keep]
            m = out.mp4
            scale = m.timescale
            p_out = ns_to_ticks_many(walls if whole else [walls[k] for k in keep], scale)
            cts = [pts[i] - dts[i] for i in sel]
            base = len(m.dts)
            if any(cts):
                c_out = ns_to_ticks_many(ticks_to_ns_many(cts, *tb), scale)
                m.dts.extend([p - c for p, c in zip(p_out, c_out, strict=True)])
                m.cts.extend(c_out)
            else:
                m.dts.extend(p_out)
                m.cts.extend(cts)
            m.sync.extend([base + n + 1 for n, i in enumerate(sel) if flags[i] & fmt.PKT_KEY])
            picked.append((tr, sel))
        return picked

    def _pieces(self, chunk: Any, samples: list[tuple[int, list[int]]]) -> list[_Pieces]:
        """The selected packets' bytes in MP4 sample form, per track: sample sizes, and the
        buffers holding them (adjacent untouched packets share one buffer, no copy)."""
        cols = chunk.columns
        offset, size = cols.offset, cols.size
        mv = memoryview(chunk.payload)
        out: list[_Pieces] = []
        for tr, idxs in samples:
            t = self.tracks[tr]
            if not t.annexb and not t.adts:
                sizes = [size[i] for i in idxs]
                bufs: list[bytes | memoryview] = []
                run_start = run_end = -1
                for i in idxs:
                    if offset[i] != run_end:
                        if run_end > run_start:
                            bufs.append(mv[run_start:run_end])
                        run_start = offset[i]
                    run_end = offset[i] + size[i]
                if run_end > run_start:
                    bufs.append(mv[run_start:run_end])
                out.append(_Pieces(sizes, bufs))
                continue
            pieces: list[bytes | memoryview] = []
            for i in idxs:
                data = mv[offset[i] : offset[i] + size[i]]
                if t.annexb:
                    data = annexb_to_length_prefixed(bytes(data))
                elif (conv := adts_to_asc(bytes(data[:7]))) is not None:
                    t.asc = t.asc or conv[0]
                    data = data[conv[1] :]
                pieces.append(data)
            out.append(_Pieces([len(x) for x in pieces], pieces))
        return out

    def _pass1(self, progress: Callable[[int, int], None] | None) -> None:
        plan = self.plan
        signature = _signature(self.meta0.tracks)
        kept = 0
        done, total = 0, 2 * plan.bytes
        damaged: list[ChunkRow] = []
        for part in plan.parts:
            rd = self._reader(part.segment)
            if _signature(rd.meta.tracks) != signature:
                _end_at_codec_change(plan, part)
                break
            for c in part.chunks:
                try:
                    chunk = rd.read_chunk(c.offset, c.length, c.crc32)
                except CorruptSegment:
                    if self.strict:
                        raise
                    damaged.append(c)  # (the clip is planned again without it: nothing
                    continue  # of this pass is written)
                samples = self._select(rd.meta, chunk)
                pieces = self._pieces(chunk, samples)
                for (tr, _idxs), ps in zip(samples, pieces, strict=True):
                    m = self.tracks[tr].mp4
                    m.chunk_offsets.append(self.payload_bytes)
                    m.chunk_samples.append(len(ps.sizes))
                    m.sizes.extend(ps.sizes)
                    self.payload_bytes += sum(ps.sizes)
                keep = kept + c.length <= _KEEP_BYTES
                kept += c.length if keep else 0
                self.chunks.append(_PlannedChunk(rd, c, samples, pieces if keep else None))
                done += c.length
                if progress is not None:
                    progress(done, total)
        if damaged:
            raise _Damaged(damaged)

    def _sample_entries(self) -> list[Mp4Track]:
        out: list[Mp4Track] = []
        for t in self.tracks.values():
            if not t.mp4.sizes:
                continue  # nothing of this track inside the range
            src = t.src
            if src.kind == "video":
                if src.bitstream == "avcc":
                    record = src.extradata
                else:
                    params = src.extradata or self._inband_params(t)
                    record = (avcc_record if src.codec == "h264" else hvcc_record)(params)
                t.mp4.sample_entry = visual_entry(src.codec, src.width, src.height, record)
            else:
                if not t.asc:
                    self.dropped.append(
                        f"audio track {src.index} (aac) has no AudioSpecificConfig or ADTS "
                        "headers to describe it; left out"
                    )
                    continue
                rate = src.sample_rate or asc_sample_rate(t.asc)
                t.mp4.sample_entry = aac_entry(src.channels, rate, t.asc, t.mp4.track_id)
            # The clip's own end (pass 1 may have moved it to a codec change) ends every track.
            t.mp4.end_limit = ns_to_ticks(self.plan.end_ns - self.plan.start_ns, 1, t.mp4.timescale)
            out.append(t.mp4)
        return out

    def _inband_params(self, t: _TrackOut) -> bytes:
        """Parameter sets from the first keyframe, for Annex-B tracks recorded without them."""
        from vstore import _native

        codec = _native.CODEC_H264 if t.src.codec == "h264" else _native.CODEC_HEVC
        pc = self.chunks[0]
        chunk = pc.reader.read_chunk(pc.row.offset, pc.row.length, pc.row.crc32)
        for i, tr in enumerate(chunk.columns.track):
            if tr == t.src.index and chunk.columns.flags[i] & fmt.PKT_KEY:
                off, size = chunk.columns.offset[i], chunk.columns.size[i]
                return _native.nal.parameter_sets(chunk.payload[off : off + size], codec, 0)
        return b""

    def write(
        self,
        out: str | os.PathLike[str] | IO[bytes],
        t0: float,
        progress: Callable[[int, int], None] | None,
    ) -> ClipResult:
        self._setup_tracks()
        self._pass1(progress)
        tracks = self._sample_entries()
        if not any(t.kind == "video" for t in tracks):
            raise NotFound("no video frames inside the requested range")
        kept_ids = {t.track_id for t in tracks}
        plan = self.plan
        metadata = {
            "vstore_start": format_time(plan.start_ns),
            "vstore_start_ns": str(plan.start_ns),
            "vstore_camera": plan.camera,
        }
        head = mp4_layout(tracks, self.payload_bytes, plan.start_ns // NS_PER_S, metadata)
        sink = _Sink(out)
        try:
            sink.put([head])
            first_byte = time.perf_counter() - t0
            done, total = plan.bytes, 2 * plan.bytes
            for pc in self.chunks:
                pieces = pc.pieces
                if pieces is None:
                    chunk = pc.reader.read_chunk(pc.row.offset, pc.row.length, pc.row.crc32)
                    pieces = self._pieces(chunk, pc.samples)
                for (tr, _i), ps in zip(pc.samples, pieces, strict=True):
                    if self.tracks[tr].mp4.track_id in kept_ids:
                        sink.put(ps.bufs)
                done += pc.row.length
                if progress is not None:
                    progress(done, total)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        written = sink.count
        counts = {"video": 0, "audio": 0}
        for t in self.tracks.values():
            if t.mp4.track_id in kept_ids:
                counts[t.src.kind] += len(t.mp4.sizes)
        return ClipResult(
            plan,
            "mp4",
            written,
            counts["video"],
            counts["audio"],
            time.perf_counter() - t0,
            first_byte,
            self.dropped,
        )


def _mux_plan(
    store: Store,
    plan: ClipPlan,
    container: Any,
    format: str,
    readers: dict[int, SegmentReader],
    counts: dict[str, int],
    dropped: list[str],
    progress: Callable[[int, int], None] | None,
    strict: bool = False,
) -> None:
    from fractions import Fraction

    import av

    first = plan.parts[0].segment
    rd0 = store.segment_reader(first)
    readers[first.segment_id] = rd0
    tracks = rd0.meta.tracks
    streams: dict[int, Any] = {}
    # AAC from MPEG-TS carries ADTS headers and no extradata; MP4 wants raw frames plus an
    # AudioSpecificConfig. Derive it from the first frame (bit fields, not transcoding).
    adts: dict[int, int] = {}  # track -> ADTS header length to strip
    asc: dict[int, bytes] = {}
    if format != "ts" and any(t.codec == "aac" and not t.extradata for t in tracks):
        c0 = plan.parts[0].chunks[0]
        for p in chunk_packets(rd0.meta, rd0.read_chunk(c0.offset, c0.length, c0.crc32)):
            t = tracks[p.track]
            if t.codec == "aac" and not t.extradata and p.track not in asc:
                conv = adts_to_asc(bytes(p.data))
                if conv is not None:
                    asc[p.track], adts[p.track] = conv
    c0 = plan.parts[0].chunks[0]
    first_chunk = rd0.read_chunk(c0.offset, c0.length, c0.crc32)
    probes: list[Any] = []  # template inputs, closed once the header is written
    for t in tracks:
        if t.kind == "video":
            key = next(
                p for p in chunk_packets(rd0.meta, first_chunk) if p.track == t.index and p.is_key
            )
            probe = _video_template(t, bytes(key.data))
            probes.append(probe)
            s = container.add_stream_from_template(probe.streams.video[0])
            # A remux stream: never opened as an encoder, so the stored parameters stay.
            if t.extradata:
                s.codec_context.extradata = t.extradata
        else:
            if t.codec not in _AUDIO_OK[format]:
                dropped.append(_not_storable(t, format))
                continue
            default_rate = 8000 if t.codec.startswith("pcm_") else 48000  # (G.711: 8 kHz)
            s = container.add_stream(t.codec, rate=t.sample_rate or default_rate)
            s.layout = "stereo" if t.channels == 2 else "mono"
            if t.extradata or t.index in asc:
                s.codec_context.extradata = t.extradata or asc[t.index]

        s.time_base = Fraction(*t.time_base)
        streams[t.index] = s
    signature = _signature(tracks)
    tbs = {t.index: Fraction(*t.time_base) for t in tracks}
    total = plan.bytes
    done = 0
    skipping = False  # after a damaged chunk, until the next GOP starts
    origin = _origin_ns(plan, format)
    for part in plan.parts:
        rd = readers.get(part.segment.segment_id)
        if rd is None:
            rd = store.segment_reader(part.segment)
            readers[part.segment.segment_id] = rd
            new_sig = _signature(rd.meta.tracks)
            if new_sig != signature and format == "ts" and _inband_change_ok(tracks, rd.meta):
                # MPEG-TS carries parameter sets in band: decoders follow the change.
                plan.notes.append(
                    f"codec parameters change at {format_time(part.chunks[0].start_ns)} "
                    "(carried in band)"
                )
                signature = new_sig
            elif new_sig != signature:
                _end_at_codec_change(plan, part)
                break
        meta = rd.meta
        for c in part.chunks:
            if skipping and c.flags & fmt.CHUNK_CONTINUATION:
                plan.damaged[-1] = (plan.damaged[-1][0], c.end_ns)  # the rest of its GOP
                continue
            skipping = False
            try:
                chunk = rd.read_chunk(c.offset, c.length, c.crc32)
            except CorruptSegment:
                if strict:
                    raise
                plan.damaged.append((c.start_ns, c.end_ns))  # a gap in the clip
                skipping = True
                continue
            for p in chunk_packets(meta, chunk):
                s = streams.get(p.track)
                if s is None or p.wall_ns is None:
                    continue
                t = meta.tracks[p.track]
                if t.kind == "video":
                    if p.wall_ns >= plan.end_ns:
                        continue
                elif not origin <= p.wall_ns < plan.end_ns:
                    continue  # audio starts where the first frame shown does
                data = bytes(p.data)
                if p.track in adts:
                    data = data[adts[p.track] :]
                tb = t.time_base
                pts = ns_to_ticks(p.wall_ns - origin, *tb)
                assert p.pts is not None and p.dts is not None
                pkt = av.Packet(data)
                pkt.stream = s
                # The track's own time base: the muxer may change the stream's (mov uses
                # 1/sample_rate for audio) and PyAV rescales from the packet's.
                pkt.time_base = tbs[p.track]
                pkt.pts = pts
                pkt.dts = pts - (p.pts - p.dts)
                pkt.is_keyframe = p.is_key
                container.mux(pkt)
                counts[t.kind] += 1
                while probes:
                    probes.pop().close()
            done += c.length
            if progress is not None:
                progress(done, total)


def _origin_ns(plan: ClipPlan, format: str) -> int:
    """Clip time 0: the first frame shown. MP4 hides the pre-roll behind its edit list and
    starts at ``plan.start_ns``; fMP4 and MPEG-TS show the GOP from its keyframe."""
    return plan.start_ns if format in _EDITED else plan.preroll_ns


def _signature(tracks: tuple[fmt.TrackInfo, ...]) -> list[tuple[Any, ...]]:
    """What must stay the same for a clip to go on in one MP4 track set."""
    return [(t.codec, t.extradata, t.width, t.height) for t in tracks]


def _not_storable(t: fmt.TrackInfo, format: str) -> str:
    where = [f for f, ok in _AUDIO_OK.items() if t.codec in ok]
    hint = f" (kept in: --format {', '.join(where)})" if where else ""
    return (
        f"audio track {t.index} ({t.codec}) cannot be stored in {format} without "
        f"transcoding; left out{hint}"
    )


def _end_at_codec_change(plan: ClipPlan, part: ClipPart) -> None:
    """An MP4 or fMP4 clip cannot change codec parameters mid-file: it ends where they do."""
    plan.notes.append(
        f"clip ends at {format_time(part.chunks[0].start_ns)}: codec parameters "
        "change there (request the rest as a separate clip)"
    )
    plan.end_ns = part.chunks[0].start_ns


def _inband_change_ok(old: tuple[fmt.TrackInfo, ...], meta: fmt.SegmentMeta) -> bool:
    """Same track layout and codecs, Annex-B video: a TS clip can continue across it."""
    new = meta.tracks
    return (
        len(old) == len(new)
        and all(a.codec == b.codec and a.kind == b.kind for a, b in zip(old, new, strict=True))
        and all(t.bitstream == "annexb" for t in (*old, *new) if t.kind == "video")
    )


def _video_template(track: fmt.TrackInfo, keyframe: bytes) -> Any:
    """An input container whose stream carries the track's codec parameters, for add_stream_from_template.

    PyAV's add_stream() opens an encoder (libx264/libx265), whose own parameter sets would
    replace the recorded ones; a template stream is never opened. It is made by probing the
    track's parameter sets and first keyframe as raw Annex-B.
    """
    import io

    import av

    if track.bitstream == "avcc":
        params = config_to_annexb(track.codec, track.extradata) if track.extradata else b""
        keyframe = length_prefixed_to_annexb(keyframe)
    else:
        params = track.extradata
    raw = io.BytesIO(params + keyframe)
    try:
        probe = av.open(raw, "r", format={"h264": "h264", "hevc": "hevc"}[track.codec])
    except (KeyError, av.FFmpegError) as exc:
        raise VstoreError(f"cannot describe {track.codec} track for remuxing: {exc}") from exc
    return probe


def clip_bytes(
    store: Store,
    camera_id: str,
    start_ns: int,
    end_ns: int,
    format: str = "fmp4",
    chunk_bytes: int = 1 << 16,
) -> Iterator[bytes]:
    """Stream a clip as bytes. ``fmp4``/``ts`` are produced as they are muxed; ``mp4`` is
    staged on disk first (moov-first needs the whole file). Memory stays bounded."""
    import queue
    import threading

    # Leased before planning and until the last byte is produced (L1).
    lease = store.lease(ranges=[(camera_id, start_ns, end_ns)])
    lease.__enter__()
    try:
        plan = plan_clip(store, camera_id, start_ns, end_ns)
    except BaseException:
        lease.__exit__(None, None, None)
        raise
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    class _Q:
        def write(self, b: bytes) -> int:
            q.put(bytes(b))
            return len(b)

    def run() -> None:
        try:
            write_clip(store, plan, _Q(), format=format)  # type: ignore[arg-type]
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(exc)

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
        th.join()
    finally:
        lease.__exit__(None, None, None)
