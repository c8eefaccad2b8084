"""HLS for any range of a camera's footage and for its live edge: a playlist of its GOPs, each
served as an fMP4 media segment built straight from the recorded chunk(s), never
transcoded.

Media times are wall-clock times (nanoseconds since the Unix epoch in each track's
timescale), so every segment of a camera sits where it was recorded and playlists of any
range agree; ``EXT-X-PROGRAM-DATE-TIME`` says the same in ISO 8601 so players show wall-clock
time. A gap in the footage is an ``EXT-X-DISCONTINUITY``. Each segment file of the store has
its initialization segment (its codec configuration), named by the first GOP it serves.

URLs in a playlist are relative: ``init/{start_ns}.mp4`` and ``seg/{start_ns}.m4s``, where
``start_ns`` is the wall-clock start of a GOP.
"""

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

from vstore import _native
from vstore.base.errors import NotFound
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    NS_PER_S,
    format_time,
    ns_to_ticks_many,
    ticks_to_ns_many,
)
from vstore.codec.aac import adts_to_asc, asc_sample_rate
from vstore.codec.parameter_sets import avcc_record, hvcc_record
from vstore.export.fmp4 import Fragment, InitTrack, init_segment, media_segment
from vstore.export.mp4 import aac_entry, visual_entry
from vstore.export.mp4_clip import sample_pieces
from vstore.index.time_index import ChunkRow, SegmentRow
from vstore.segment import format as fmt
from vstore.segment.reader import Chunk, SegmentReader
from vstore.store.store import Store

# Playlists of at most this many GOPs (a day of 2 s GOPs is 43,200).
MAX_SEGMENTS = 100_000


class Gop(NamedTuple):
    """One HLS media segment: a GOP, in one chunk or a chunk and its continuations."""

    start_ns: int
    end_ns: int
    segment_id: int


class _SegmentGops(NamedTuple):
    """A sealed segment's GOPs and their playlist lines (its first GOP's header aside)."""

    row_value: bytes  # the segment row it was built from: any change rebuilds it
    gops: list[Gop]
    body: str
    target_s: int


def _gops_by_segment(
    store: Store, camera_num: int, start_ns: int, end_ns: int
) -> dict[int, list[Gop]]:
    """The GOPs of the chunks that start in [start_ns, end_ns), by segment id (one scan)."""
    cont = fmt.CHUNK_CONTINUATION
    out: dict[int, list[Gop]] = {}
    new = tuple.__new__  # (a day is 43,200 GOPs: plain tuple construction)
    for c in store.index.chunks_starting(camera_num, start_ns, end_ns):
        # ChunkRow: camera_num, start_ns, end_ns, segment_id, offset, length, packets, crc, flags
        sid = c[3]
        gops = out.get(sid)
        if gops is None:
            gops = out[sid] = []
        if c[8] & cont and gops:
            gops[-1] = new(Gop, (gops[-1][0], c[2], sid))
        else:
            gops.append(new(Gop, (c[1], c[2], sid)))
    return out


def _pdt(ns: int) -> str:
    return format_time(ns).replace("+00:00", "Z")


def _lines(gops: list[Gop], prev_end: int | None, prev_seg: int | None) -> list[str]:
    """Playlist lines of GOPs that follow one ending at prev_end in segment prev_seg."""
    lines: list[str] = []
    add = lines.append
    for start, end, seg in gops:
        if prev_end is None or start - prev_end > GAP_TOLERANCE_NS:
            if prev_end is not None:
                add("#EXT-X-DISCONTINUITY")
            add(f'#EXT-X-MAP:URI="init/{start}.mp4"')
            add(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(start)}")
        elif seg != prev_seg:
            add(f'#EXT-X-MAP:URI="init/{start}.mp4"')
        add(f"#EXTINF:{(end - start) / NS_PER_S:.3f},\nseg/{start}.m4s")
        prev_end, prev_seg = end, seg
    return lines


def _target_s(gops: list[Gop]) -> int:
    return max((math.ceil((g[1] - g[0]) / NS_PER_S) for g in gops), default=1)


class Playlists:
    """Media playlists of any range of a camera, VOD or live (EVENT).

    A sealed segment's GOPs never change while its row stands (a trimmed copy is a new
    segment; tiering moves its bytes, not its chunks), so the GOPs and playlist lines of
    sealed segments are kept, least recently used first out, up to ``max_gops``: a day of a
    camera is then a scan of its segment rows, not of its 43,200 chunk rows. The open
    segment is always read afresh."""

    def __init__(self, max_gops: int = 500_000) -> None:
        self.max_gops = max_gops
        self._kept: OrderedDict[bytes, _SegmentGops] = OrderedDict()
        self._kept_gops = 0
        self._lock = threading.Lock()

    def _sealed(self, key: bytes, value: bytes) -> _SegmentGops | None:
        with self._lock:
            e = self._kept.get(key)
            if e is not None and e.row_value == value:
                self._kept.move_to_end(key)
                return e
        return None

    def _keep(self, key: bytes, e: _SegmentGops) -> None:
        with self._lock:
            old = self._kept.pop(key, None)
            self._kept_gops += len(e.gops) - (len(old.gops) if old else 0)
            self._kept[key] = e
            while self._kept_gops > self.max_gops and self._kept:
                _k, gone = self._kept.popitem(last=False)
                self._kept_gops -= len(gone.gops)

    def playlist(
        self, store: Store, camera_id: str, start_ns: int, end_ns: int, live: bool
    ) -> str | None:
        """The playlist of the GOPs that show [start_ns, end_ns), from the one on screen at
        start_ns; None when there are none. Raises NotFound for more than MAX_SEGMENTS."""
        num = store.camera_num(camera_id)
        parts: list[str] = []
        count = 0
        target = 1
        prev_end: int | None = None
        prev_seg: int | None = None
        rows = list(store.index.segment_items(num, start_ns, end_ns))
        kept = [self._sealed(k, v) for k, v in rows]
        fresh: dict[int, SegmentRow] = {
            i: SegmentRow.decode(*rows[i]) for i, e in enumerate(kept) if e is None
        }
        found: dict[int, list[Gop]] = {}
        if fresh:  # one scan of the chunk rows of every segment not kept
            lo = min(r.start_ns for r in fresh.values())
            hi = max(r.end_ns if r.state == "sealed" else end_ns for r in fresh.values())
            found = _gops_by_segment(store, num, lo, hi)
        for i, e in enumerate(kept):
            if e is None:
                seg = fresh[i]
                gops = found.get(seg.segment_id, [])
                if seg.state == "sealed":
                    body = "\n".join(_lines(gops, None, None)[2:])
                    e = _SegmentGops(rows[i][1], gops, body, _target_s(gops))
                    self._keep(rows[i][0], e)
            else:
                gops = e.gops
            if not gops:
                continue
            whole = e is not None and gops[0][0] >= start_ns and gops[-1][0] < end_ns
            if not whole:
                gops = [g for g in gops if g[1] > start_ns and g[0] < end_ns]
                if not gops:
                    continue
            count += len(gops)
            if count > MAX_SEGMENTS:
                raise NotFound("the range holds more GOPs than one playlist lists: ask for less")
            if whole and e is not None:
                # The first GOP's header as it follows what came before; the rest as kept.
                head = _lines(gops[:1], prev_end, prev_seg)
                parts.extend(head[:-1])
                parts.append(e.body)
                target = max(target, e.target_s)
            else:
                parts.extend(_lines(gops, prev_end, prev_seg))
                target = max(target, _target_s(gops))
            prev_end, prev_seg = gops[-1][1], gops[-1][2]
        if not parts:
            return None
        head = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{max(1, target)}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            f"#EXT-X-PLAYLIST-TYPE:{'EVENT' if live else 'VOD'}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        tail = [] if live else ["#EXT-X-ENDLIST"]
        return "\n".join(head + parts + tail) + "\n"


def _gop_at(store: Store, camera_id: str, start_ns: int) -> tuple[SegmentRow, list[ChunkRow]]:
    """The GOP that starts at start_ns (its chunks) and its segment's row."""
    num = store.camera_num(camera_id)
    rows: list[ChunkRow] = []
    for c in store.index.chunks(num, start_ns, 2**63 - 1):
        if not rows:
            if c.start_ns != start_ns or c.flags & fmt.CHUNK_CONTINUATION:
                break
        elif not c.flags & fmt.CHUNK_CONTINUATION or c.segment_id != rows[0].segment_id:
            break
        rows.append(c)
    if not rows:
        raise NotFound(
            f"camera {camera_id!r} has no GOP starting at {start_ns} ({format_time(start_ns)})"
        )
    seg = next(
        (s for s in store.index.segments(num, start_ns, start_ns + 1)
         if s.segment_id == rows[0].segment_id),
        None,
    )  # fmt: skip
    if seg is None:
        raise NotFound(f"the segment of the GOP at {format_time(start_ns)} is gone")
    return seg, rows


class _Source:
    """A GOP's chunks read and checked, with its segment's tracks."""

    def __init__(self, store: Store, camera_id: str, start_ns: int) -> None:
        seg, rows = _gop_at(store, camera_id, start_ns)
        with store.lease(segment_ids=[seg.segment_id]), store.segment_reader(seg) as rd:
            self.meta = rd.meta
            self.chunks: list[Chunk] = [_read(rd, c) for c in rows]
        # Video first, then AAC audio (the audio MP4 can carry): track ids 1, 2.
        kept = [t for t in self.meta.tracks if t.kind == "video"]
        kept += [t for t in self.meta.tracks if t.kind == "audio" and t.codec == "aac"]
        self.tracks = kept

    def packets(self, track: int) -> Iterator[tuple[Chunk, list[int]]]:
        for ch in self.chunks:
            idxs = [i for i, tr in enumerate(ch.columns.track) if tr == track]
            if idxs:
                yield ch, idxs


def _read(rd: SegmentReader, c: ChunkRow) -> Chunk:
    return rd.read_chunk(c.offset, c.length, c.crc32)


def _timescale(t: fmt.TrackInfo, asc: bytes) -> int:
    if t.kind == "video":
        return t.time_base[1]
    return t.sample_rate or (asc_sample_rate(asc) if asc else 0) or 48000


def _audio_config(src: _Source, t: fmt.TrackInfo) -> bytes:
    if t.extradata:
        return t.extradata
    for ch, idxs in src.packets(t.index):
        off = ch.columns.offset[idxs[0]]
        conv = adts_to_asc(bytes(ch.payload[off : off + 7]))
        if conv is not None:
            return conv[0]
    return b""


def _video_record(src: _Source, t: fmt.TrackInfo) -> bytes:
    if t.bitstream == "avcc":
        return t.extradata
    params = t.extradata
    if not params:
        codec = _native.CODEC_H264 if t.codec == "h264" else _native.CODEC_HEVC
        for ch, idxs in src.packets(t.index):
            i = idxs[0]
            off, size = ch.columns.offset[i], ch.columns.size[i]
            params = _native.nal.parameter_sets(bytes(ch.payload[off : off + size]), codec, 0)
            break
    return (avcc_record if t.codec == "h264" else hvcc_record)(params)


def init_for(store: Store, camera_id: str, start_ns: int) -> bytes:
    """The initialization segment of the segment file whose GOP starts at start_ns."""
    src = _Source(store, camera_id, start_ns)
    tracks: list[InitTrack] = []
    for tid, t in enumerate(src.tracks, start=1):
        if t.kind == "video":
            entry = visual_entry(t.codec, t.width, t.height, _video_record(src, t))
            tracks.append(InitTrack(tid, "video", _timescale(t, b""), entry, t.width, t.height))
        else:
            asc = _audio_config(src, t)
            if not asc:
                continue
            rate = _timescale(t, asc)
            tracks.append(InitTrack(tid, "audio", rate, aac_entry(t.channels, rate, asc, tid)))
    return init_segment(tracks)


def media_for(store: Store, camera_id: str, start_ns: int) -> list[bytes | memoryview]:
    """The fMP4 media segment of the GOP that starts at start_ns."""
    src = _Source(store, camera_id, start_ns)
    shift = src.meta.anchor_wall_ns - src.meta.anchor_media_ns
    frags: list[Fragment] = []
    for tid, t in enumerate(src.tracks, start=1):
        annexb = t.kind == "video" and t.bitstream != "avcc"
        adts = t.kind == "audio" and not t.extradata
        dts: list[int] = []
        pts: list[int] = []
        sync: list[bool] = []
        sizes: list[int] = []
        data: list[bytes | memoryview] = []
        asc = t.extradata if t.kind == "audio" else b""
        for ch, idxs in src.packets(t.index):
            cols = ch.columns
            pieces, found = sample_pieces(ch.payload, cols, idxs, annexb, adts)
            asc = asc or found
            sizes += pieces.sizes
            data += pieces.bufs
            dts += [cols.dts[i] for i in idxs]
            pts += [cols.pts[i] for i in idxs]
            sync += [bool(cols.flags[i] & fmt.PKT_KEY) for i in idxs]
        if not sizes or (t.kind == "audio" and not asc):
            continue
        scale = _timescale(t, asc)
        d = ns_to_ticks_many(ticks_to_ns_many(dts, *t.time_base, shift), scale)
        p = ns_to_ticks_many(ticks_to_ns_many(pts, *t.time_base, shift), scale)
        durs = [max(1, b - a) for a, b in itertools.pairwise(d)]
        durs.append(durs[-1] if durs else max(1, scale // 25))
        if t.kind == "audio":
            sync = [True] * len(sizes)
        cts = [b - a for a, b in zip(d, p, strict=True)]
        frags.append(Fragment(tid, d[0], durs, sizes, sync, cts, data))
    if not frags:
        raise NotFound(f"no video or audio MP4 can carry in the GOP at {format_time(start_ns)}")
    # The sequence number only has to grow from segment to segment.
    return media_segment(start_ns // 1_000_000 & 0xFFFFFFFF, frags)
