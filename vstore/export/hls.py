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
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from vstore import _native
from vstore.base.errors import NotFound, VstoreError
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    NS_PER_S,
    format_time,
    ns_to_ticks_many,
    ticks_to_ns,
    ticks_to_ns_many,
)
from vstore.codec.aac import adts_to_asc, asc_sample_rate
from vstore.codec.parameter_sets import avcc_record, hvcc_record
from vstore.export.clip_plan import chunk_after, chunk_before
from vstore.export.fmp4 import Fragment, InitTrack, init_segment, media_segment
from vstore.export.mp4 import aac_entry, visual_entry
from vstore.export.mp4_clip import sample_pieces
from vstore.index import gop_table
from vstore.index.time_index import ChunkRow, SegmentRow
from vstore.segment import format as fmt
from vstore.segment.reader import Chunk, SegmentReader
from vstore.store.store import Store

# Playlists of at most this many GOPs (a day of 2 s GOPs is 43,200).
MAX_SEGMENTS = 100_000

# How much footage a live playlist lists: many GOPs more than the three target durations a
# player keeps behind the live edge, so a reload that comes late still continues the last.
LIVE_WINDOW_NS = 60 * NS_PER_S


class _SegmentGops(NamedTuple):
    """A segment's GOPs (start and end arrays) and, for a sealed one, its playlist lines
    (its first GOP's header aside) and target duration."""

    row_value: bytes  # the segment row it was built from: any change rebuilds it
    segment_id: int
    starts: np.ndarray
    ends: np.ndarray
    body: str
    target_s: int
    first_ns: int = 0  # (as plain ints: a day's playlist asks these of 1,440 segments)
    last_start_ns: int = 0
    last_end_ns: int = 0


def _gops_by_segment(
    store: Store, camera_num: int, start_ns: int, end_ns: int
) -> dict[int, tuple[list[int], list[int]]]:
    """(starts, ends) of the GOPs of the chunks that start in [start_ns, end_ns), by segment
    id (one scan): for segments whose row carries no GOP table, and the open one."""
    cont = fmt.CHUNK_CONTINUATION
    out: dict[int, tuple[list[int], list[int]]] = {}
    for c in store.index.chunks_starting(camera_num, start_ns, end_ns):
        # ChunkRow: camera_num, start_ns, end_ns, segment_id, offset, length, packets, crc, flags
        sid = c[3]
        se = out.get(sid)
        if se is None:
            se = out[sid] = ([], [])
        if c[8] & cont and se[0]:
            se[1][-1] = c[2]
        else:
            se[0].append(c[1])
            se[1].append(c[2])
    return out


def _pdt(ns: int) -> str:
    return format_time(ns).replace("+00:00", "Z")


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values and each value's index among them. (np.unique does the
    same, but its module loads on first use: ~40 ms of a node's first playlist.)"""
    s = np.sort(values)
    uniq = s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s
    return uniq, np.searchsorted(uniq, values)


def _extinf_heads(distinct_ns: np.ndarray) -> list[str]:
    """The #EXTINF line head of each of these (distinct) GOP durations."""
    return [f"#EXTINF:{d / NS_PER_S:.3f},\nseg/" for d in distinct_ns.tolist()]


def _header(first_ns: int, prev_end: int | None, same_segment: bool) -> list[str]:
    """The lines before a segment's first GOP as it follows one ending at prev_end (None:
    the first of the playlist): after a gap beyond the tolerance, a discontinuity with its
    map and wall-clock time; in another segment file, a new map."""
    if prev_end is None or first_ns - prev_end > GAP_TOLERANCE_NS:
        disc = [] if prev_end is None else ["#EXT-X-DISCONTINUITY"]
        return [*disc, f'#EXT-X-MAP:URI="init/{first_ns}.mp4"',
                f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(first_ns)}"]  # fmt: skip
    return [] if same_segment else [f'#EXT-X-MAP:URI="init/{first_ns}.mp4"']


def _bodies(starts: np.ndarray, ends: np.ndarray, counts: list[int]) -> list[tuple[str, int]]:
    """(body, target duration) of sealed segments, ``counts[k]`` GOPs each in turn: each
    segment's playlist lines but its first GOP's header, built for all of them at once (a
    day is 1,440 segments)."""
    durations = ends - starts
    text, at = _gop_lines(starts, durations)
    offs = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    nonempty = np.asarray(counts) > 0
    firsts = offs[:-1][nonempty]
    gap = np.zeros(len(starts), dtype=bool)
    gap[1:] = starts[1:] - ends[:-1] > GAP_TOLERANCE_NS
    gap[firsts] = False  # (a segment's first GOP: its header is the playlist's to write)
    gaps = np.flatnonzero(gap).tolist()
    targets = np.ones(len(counts), dtype=np.int64)
    if len(firsts):
        longest = np.maximum.reduceat(durations, firsts)
        targets[nonempty] = np.maximum(1, -(-longest // NS_PER_S))
    out = []
    g = 0
    for a, b, target in zip(offs[:-1].tolist(), offs[1:].tolist(), targets.tolist(), strict=True):
        if g < len(gaps) and gaps[g] < b:
            parts: list[str] = []
            done = a
            while g < len(gaps) and gaps[g] < b:
                i = gaps[g]
                t = int(starts[i])
                parts += [text[at(done) : at(i) - 1], "#EXT-X-DISCONTINUITY",
                          f'#EXT-X-MAP:URI="init/{t}.mp4"',
                          f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(t)}"]  # fmt: skip
                done = i
                g += 1
            parts.append(text[at(done) : at(b) - 1])
            out.append(("\n".join(parts), target))
        else:
            out.append((text[at(a) : at(b) - 1] if b > a else "", target))
    return out


# The zero-padded decimal text of 0..9999 (4 ASCII bytes each, read as one uint32), for
# laying out 19-digit start times with numpy.
_DIGITS4 = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)


def _gop_lines(starts: np.ndarray, durations: np.ndarray) -> tuple[str, Callable[[int], int]]:
    """Every GOP's "#EXTINF:D,\nseg/START.m4s" lines, each ended by a newline, as one text,
    and where GOP i's lines begin in it. When every start has 19 digits and every duration
    head is as long (GOPs under 10 s), the text is laid out as a byte matrix by numpy, with
    no per-GOP Python work; otherwise joined from per-GOP strings."""
    n = len(starts)
    uniq, inv = _unique(durations)
    heads = _extinf_heads(uniq)
    widths = {len(h) for h in heads}
    if n and len(widths) == 1 and int(starts.min()) >= 10**18:
        hw = widths.pop()
        w = hw + 19 + 5
        table = np.frombuffer("".join(heads).encode("ascii"), dtype=np.uint8).reshape(-1, hw)
        m = np.empty((n, w), dtype=np.uint8)
        m[:, :hw] = table[inv.reshape(-1)]
        # 19 digits as five groups of 4 (the first with a leading zero), each looked up.
        groups = np.empty((n, 5), dtype=np.uint32)
        v = starts
        for k in range(4, 0, -1):
            v, g = np.divmod(v, 10_000)
            groups[:, k] = _DIGITS4[g]
        groups[:, 0] = _DIGITS4[v]
        m[:, hw : hw + 19] = groups.view(np.uint8).reshape(n, 20)[:, 1:]
        m[:, hw + 19 :] = np.frombuffer(b".m4s\n", dtype=np.uint8)
        return m.tobytes().decode("ascii"), lambda i: i * w
    per_gop = [heads[k] for k in inv.reshape(-1).tolist()]
    lines = list(map("{}{}.m4s\n".format, per_gop, starts.tolist()))
    offsets = np.concatenate(([0], np.cumsum([len(x) for x in lines]))).tolist()
    return "".join(lines), offsets.__getitem__


def _ends(starts: np.ndarray, ends: np.ndarray) -> tuple[int, int, int]:
    """First start, last start and last end, as plain ints (0s when there is no GOP)."""
    if not len(starts):
        return 0, 0, 0
    return int(starts[0]), int(starts[-1]), int(ends[-1])


class Playlists:
    """Media playlists of any range of a camera, VOD or live (EVENT).

    A sealed segment's row carries its GOP table (index/gop_table.py), so a day of a camera
    is a scan of its segment rows, not of its 43,200 chunk rows; rows without one (sealed
    before tables were kept, or with chunks quarantined since) and the open segment are read
    from their chunk rows, in one scan. A sealed segment's GOPs never change while its row
    stands (a trimmed copy is a new segment; tiering moves its bytes, not its chunks; a
    repair that quarantines a chunk rewrites the row), so its GOPs and playlist lines are
    kept, least recently used first out, up to ``max_gops``."""

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

    def _keep(self, entries: list[tuple[bytes, _SegmentGops]]) -> None:
        with self._lock:
            for key, e in entries:
                old = self._kept.pop(key, None)
                self._kept_gops += len(e.starts) - (len(old.starts) if old else 0)
                self._kept[key] = e
            while self._kept_gops > self.max_gops and self._kept:
                _k, gone = self._kept.popitem(last=False)
                self._kept_gops -= len(gone.starts)

    def _entries(
        self, store: Store, num: int, end_ns: int, rows: list[tuple[bytes, bytes]]
    ) -> list[_SegmentGops]:
        """Each segment row's GOPs: kept, from its GOP table, or from its chunk rows."""
        out: list[_SegmentGops | None] = [self._sealed(k, v) for k, v in rows]
        sealed: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        scan: dict[int, SegmentRow] = {}
        tables: dict[int, tuple[int, str]] = {}
        for i, e in enumerate(out):
            if e is not None:
                continue
            table = SegmentRow.sealed_gops(*rows[i])
            if table is not None:
                tables[i] = table
            else:
                scan[i] = SegmentRow.decode(*rows[i])
        flat: tuple[np.ndarray, np.ndarray, list[int]] | None = None
        if tables:
            flat = gop_table.decode_many([t for _sid, t in tables.values()])
        if scan:  # one scan of the chunk rows of every segment with no table
            lo = min(r.start_ns for r in scan.values())
            hi = max(r.end_ns if r.state == "sealed" else end_ns for r in scan.values())
            found = _gops_by_segment(store, num, lo, hi)
            for i, row in scan.items():
                s_list, e_list = found.get(row.segment_id, ([], []))
                starts = np.array(s_list, dtype=np.int64)
                ends = np.array(e_list, dtype=np.int64)
                if row.state == "sealed":
                    sealed[i] = (row.segment_id, starts, ends)
                else:  # the open segment: read afresh each time, never kept
                    out[i] = _SegmentGops(
                        rows[i][1], row.segment_id, starts, ends, "", 0, *_ends(starts, ends)
                    )
        # Every sealed segment's body is built in one pass: those with tables first (as
        # decoded), then those read from chunk rows.
        order = list(tables) + sorted(sealed)
        if order:
            parts_s = [flat[0]] if flat is not None else []
            parts_e = [flat[1]] if flat is not None else []
            counts = list(flat[2]) if flat is not None else []
            for i in sorted(sealed):
                parts_s.append(sealed[i][1])
                parts_e.append(sealed[i][2])
                counts.append(len(sealed[i][1]))
            starts_all = np.concatenate(parts_s)
            ends_all = np.concatenate(parts_e)
            ids = [tables[i][0] for i in tables] + [sealed[i][0] for i in sorted(sealed)]
            built = _bodies(starts_all, ends_all, counts)
            # Each segment's first start, last start and last end, as plain ints.
            offs = np.concatenate(([0], np.cumsum(counts))).tolist()
            pad = np.append(starts_all, 0), np.append(ends_all, 0)
            lo, hi = np.array(offs[:-1]), np.array(offs[1:]) - 1
            some = hi >= lo
            firsts = np.where(some, pad[0][lo], 0).tolist()
            lasts = np.where(some, pad[0][np.maximum(hi, 0)], 0).tolist()
            last_ends = np.where(some, pad[1][np.maximum(hi, 0)], 0).tolist()
            kept = []
            for k, (i, seg_id, (body, target)) in enumerate(zip(order, ids, built, strict=True)):
                a, b = offs[k], offs[k + 1]
                e = _SegmentGops(rows[i][1], seg_id, starts_all[a:b], ends_all[a:b], body,
                                 target, firsts[k], lasts[k], last_ends[k])  # fmt: skip
                kept.append((rows[i][0], e))
                out[i] = e
            self._keep(kept)
        return [e for e in out if e is not None]

    def playlist(
        self,
        store: Store,
        camera_id: str,
        start_ns: int,
        end_ns: int,
        live: bool,
        window_ns: int | None = None,
    ) -> str | None:
        """The playlist of the GOPs that show [start_ns, end_ns), from the one on screen at
        start_ns; None when there are none. Raises NotFound for more than MAX_SEGMENTS.

        Live with ``window_ns``: a sliding window, the GOPs of the last ``window_ns`` of
        footage only, numbered from start_ns (its ``EXT-X-MEDIA-SEQUENCE`` is the number of
        GOPs before the window, its ``EXT-X-DISCONTINUITY-SEQUENCE`` the gaps before it), so
        each reload from the same start_ns continues the numbers of the one before. Live
        without: an EVENT playlist, growing from start_ns."""
        num = store.camera_num(camera_id)
        picked: list[tuple[_SegmentGops, np.ndarray, np.ndarray, bool]] = []
        count = 0
        rows = list(store.index.segment_items(num, start_ns, end_ns))
        for e in self._entries(store, num, end_ns, rows):
            starts, ends = e.starts, e.ends
            if not len(starts):
                continue
            whole = bool(e.body) and e.first_ns >= start_ns and e.last_start_ns < end_ns
            if not whole:
                keep = (ends > start_ns) & (starts < end_ns)
                starts, ends = starts[keep], ends[keep]
                if not len(starts):
                    continue
            count += len(starts)
            if count > MAX_SEGMENTS:
                raise NotFound("the range holds more GOPs than one playlist lists: ask for less")
            picked.append((e, starts, ends, whole))
        if not picked:
            return None
        sequence = discontinuities = 0
        if live and window_ns is not None:
            picked, sequence, discontinuities = _slide(picked, int(picked[-1][2][-1]) - window_ns)
        parts: list[str] = []
        target = 1
        prev_end: int | None = None
        prev_seg: int | None = None
        for e, starts, ends, whole in picked:
            # The first GOP's header as it follows what came before; the rest as kept (or,
            # for part of a segment, as built now).
            first = e.first_ns if whole else int(starts[0])
            parts.extend(_header(first, prev_end, prev_seg == e.segment_id))
            body, seg_target = (
                (e.body, e.target_s) if whole else _bodies(starts, ends, [len(starts)])[0]
            )
            parts.append(body)
            target = max(target, seg_target)
            prev_end = e.last_end_ns if whole else int(ends[-1])
            prev_seg = e.segment_id
        kind = (
            [] if live and window_ns is not None
            else [f"#EXT-X-PLAYLIST-TYPE:{'EVENT' if live else 'VOD'}"]
        )  # fmt: skip
        head = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{max(1, target)}",
            f"#EXT-X-MEDIA-SEQUENCE:{sequence}",
            *([f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities}"] if discontinuities else []),
            *kind,
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        tail = [] if live else ["#EXT-X-ENDLIST"]
        return "\n".join(head + parts + tail) + "\n"


def _slide(
    picked: list[tuple[_SegmentGops, np.ndarray, np.ndarray, bool]], cut_ns: int
) -> tuple[list[tuple[_SegmentGops, np.ndarray, np.ndarray, bool]], int, int]:
    """The GOPs that end after cut_ns (at least the last one), with how many came before
    them and how many gaps came before (or right at) the first of them."""
    starts = np.concatenate([p[1] for p in picked])
    ends = np.concatenate([p[2] for p in picked])
    first = min(int(np.searchsorted(ends, cut_ns, side="right")), len(starts) - 1)
    gaps = int(np.count_nonzero(starts[1 : first + 1] - ends[:first] > GAP_TOLERANCE_NS))
    out = []
    at = 0
    for e, s, en, whole in picked:
        n = len(s)
        if at + n > first:
            k = max(0, first - at)
            out.append((e, s[k:], en[k:], whole and k == 0))
        at += n
    return out, first, gaps


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
    seg = store.index.segment_of(rows[0])
    if seg is None:
        raise NotFound(f"the segment of the GOP at {format_time(start_ns)} is gone")
    return seg, rows


class _Source:
    """A GOP's chunks read and checked, with its segment's tracks; and the chunk before it
    in its segment, for the sound sent ahead of the GOP's pictures (``sound``)."""

    def __init__(self, store: Store, camera_id: str, start_ns: int) -> None:
        seg, rows = _gop_at(store, camera_id, start_ns)
        num = store.camera_num(camera_id)
        prev = chunk_before(store, num, rows[0])
        nxt = chunk_after(store, num, rows[-1])
        # Sound is split between GOPs at their keyframes' times, where both sides of the
        # line are one segment's: the GOP after takes what this one's chunk holds past it
        # (as the chunk before it, the one that ends where it starts).
        self.start_ns = start_ns
        self.split_ns = (
            nxt.start_ns if nxt is not None and nxt.segment_id == seg.segment_id else None
        )
        self.lead: Chunk | None = None
        with store.lease(segment_ids=[seg.segment_id]), store.segment_reader(seg) as rd:
            self.meta = rd.meta
            self.chunks: list[Chunk] = [_read(rd, c) for c in rows]
            if prev is not None and prev.segment_id == seg.segment_id:
                try:
                    self.lead = _read(rd, prev)
                except VstoreError:
                    self.lead = None  # (its damage is no damage of this GOP: no lead sound)
        # Video first, then AAC audio (the audio MP4 can carry): track ids 1, 2.
        kept = [t for t in self.meta.tracks if t.kind == "video"]
        kept += [t for t in self.meta.tracks if t.kind == "audio" and t.codec == "aac"]
        self.tracks = kept

    def packets(self, track: int) -> Iterator[tuple[Chunk, list[int]]]:
        for ch in self.chunks:
            idxs = [i for i, tr in enumerate(ch.columns.track) if tr == track]
            if idxs:
                yield ch, idxs

    def sound(self, t: fmt.TrackInfo, shift_ns: int) -> Iterator[tuple[Chunk, list[int]]]:
        """Track ``t``'s sound of the GOP's own time, from its keyframe to the next: what
        the chunk before holds of it (sent ahead of the pictures; a player would otherwise
        start silent), then its own but what the GOP after takes."""

        def wall(ch: Chunk, i: int) -> int:
            return ticks_to_ns(ch.columns.pts[i], *t.time_base) + shift_ns

        if self.lead is not None:
            cols = self.lead.columns
            idxs = [i for i, tr in enumerate(cols.track)
                    if tr == t.index and wall(self.lead, i) >= self.start_ns]  # fmt: skip
            if idxs:
                yield self.lead, idxs
        split = self.split_ns
        for ch, idxs in self.packets(t.index):
            if split is not None:
                idxs = [i for i in idxs if wall(ch, i) < split]
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
        for ch, idxs in src.sound(t, shift) if t.kind == "audio" else src.packets(t.index):
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
