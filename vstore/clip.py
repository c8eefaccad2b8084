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

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from vstore import format as fmt
from vstore.bitstream import config_to_annexb, length_prefixed_to_annexb
from vstore.errors import NotFound, UsageError, VstoreError
from vstore.index import ChunkRow, SegmentRow
from vstore.segment_reader import SegmentReader, chunk_packets
from vstore.segment_writer import GAP_TOLERANCE_NS
from vstore.store import Store
from vstore.timebase import NS_PER_S, TimeRange, format_time, ns_to_ticks

FORMATS = ("mp4", "fmp4", "ts")
MAX_CLIP_NS = 7 * 86400 * NS_PER_S  # a limit on everything: one request, at most a week
_MUX_OPTIONS = {
    "mp4": {"movflags": "+faststart+use_metadata_tags"},
    "fmp4": {"movflags": "+frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"},
    "ts": {},
}
_CONTAINER = {"mp4": "mp4", "fmp4": "mp4", "ts": "mpegts"}
_AUDIO_OK = {
    "mp4": {"aac", "mp3", "opus"},
    "fmp4": {"aac", "mp3", "opus"},
    "ts": {"aac", "mp3", "opus"},
}


@dataclass(frozen=True)
class ClipPart:
    """Consecutive chunks of one segment that the clip reads."""

    segment: SegmentRow
    chunks: tuple[ChunkRow, ...]

    @property
    def bytes(self) -> int:
        return sum(c.length for c in self.chunks)


@dataclass
class ClipPlan:
    """What a clip will contain, resolved from the index without reading payloads."""

    camera: str
    requested: TimeRange
    start_ns: int  # first frame shown (>= requested start when footage begins later)
    end_ns: int  # end of the last frame included (<= requested end)
    preroll_ns: int  # keyframe the decoder starts from (<= start_ns)
    parts: list[ClipPart]
    gaps: list[tuple[int, int]]
    events: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

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
        for e in store.index.events(num, chunks[0].start_ns, end_ns)
    ]
    return ClipPlan(camera_id, rng, first_ns, last_ns, chunks[0].start_ns, parts, gaps, events)


def _adts_to_asc(frame: bytes) -> tuple[bytes, int] | None:
    """AudioSpecificConfig and header length from an ADTS frame header, or None."""
    if len(frame) < 7 or frame[0] != 0xFF or frame[1] & 0xF6 != 0xF0:
        return None
    profile = (frame[2] >> 6) & 0x3
    freq_idx = (frame[2] >> 2) & 0xF
    chan = ((frame[2] & 0x1) << 2) | (frame[3] >> 6)
    header = 7 if frame[1] & 0x01 else 9  # protection_absent
    asc = ((profile + 1) << 11) | (freq_idx << 7) | (chan << 3)
    return asc.to_bytes(2, "big"), header


@dataclass
class ClipResult:
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
) -> ClipResult:
    """Remux the plan's packets into ``out`` (a path, or a writable binary file object).

    ``mp4`` puts the index (moov) first so it plays while downloading; that needs a second
    pass over the file, so to a file object it is staged in the store's tmp/ directory (disk,
    not memory). ``fmp4`` and ``ts`` stream straight to ``out``.
    """
    import av

    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    staged: Path | None = None
    sink: _CountingSink | None = None
    if format == "mp4" and not isinstance(out, str | os.PathLike):
        store.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".mp4", dir=store.layout.tmp_dir)
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
                container.metadata["creation_time"] = format_time(plan.start_ns).replace(
                    "+00:00", "Z"
                )
                container.metadata["vstore_start"] = format_time(plan.start_ns)
                container.metadata["vstore_start_ns"] = str(plan.start_ns)
                container.metadata["vstore_camera"] = plan.camera
                _mux_plan(store, plan, container, format, readers, counts, dropped, progress)
        except av.FFmpegError as exc:
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


def _mux_plan(
    store: Store,
    plan: ClipPlan,
    container: Any,
    format: str,
    readers: dict[int, SegmentReader],
    counts: dict[str, int],
    dropped: list[str],
    progress: Callable[[int, int], None] | None,
) -> None:
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
                conv = _adts_to_asc(bytes(p.data))
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
                dropped.append(
                    f"audio track {t.index} ({t.codec}) cannot be stored in "
                    f"{format} without transcoding"
                )
                continue
            s = container.add_stream(t.codec, rate=t.sample_rate or 48000)
            s.layout = "stereo" if t.channels == 2 else "mono"
            if t.extradata or t.index in asc:
                s.codec_context.extradata = t.extradata or asc[t.index]

        s.time_base = Fraction(*t.time_base)
        streams[t.index] = s
    signature = [(t.codec, t.extradata, t.width, t.height) for t in tracks]
    tbs = {t.index: Fraction(*t.time_base) for t in tracks}
    total = plan.bytes
    done = 0
    for part in plan.parts:
        rd = readers.get(part.segment.segment_id)
        if rd is None:
            rd = store.segment_reader(part.segment)
            readers[part.segment.segment_id] = rd
            new_sig = [(t.codec, t.extradata, t.width, t.height) for t in rd.meta.tracks]
            if new_sig != signature and format == "ts" and _inband_change_ok(tracks, rd.meta):
                # MPEG-TS carries parameter sets in band: decoders follow the change.
                plan.notes.append(
                    f"codec parameters change at {format_time(part.chunks[0].start_ns)} "
                    "(carried in band)"
                )
                signature = new_sig
            elif new_sig != signature:
                plan.notes.append(
                    f"clip ends at {format_time(part.chunks[0].start_ns)}: codec parameters "
                    "change there (request the rest as a separate clip)"
                )
                plan.end_ns = part.chunks[0].start_ns
                break
        meta = rd.meta
        for c in part.chunks:
            chunk = rd.read_chunk(c.offset, c.length, c.crc32)
            for p in chunk_packets(meta, chunk):
                s = streams.get(p.track)
                if s is None or p.wall_ns is None:
                    continue
                t = meta.tracks[p.track]
                if t.kind == "video":
                    if p.wall_ns >= plan.end_ns:
                        continue
                elif not plan.start_ns <= p.wall_ns < plan.end_ns:
                    continue
                data = bytes(p.data)
                if p.track in adts:
                    data = data[adts[p.track] :]
                tb = t.time_base
                pts = ns_to_ticks(p.wall_ns - plan.start_ns, *tb)
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

    plan = plan_clip(store, camera_id, start_ns, end_ns)
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
    while True:
        item = q.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        for i in range(0, len(item), chunk_bytes):
            yield item[i : i + chunk_bytes]
    th.join()
