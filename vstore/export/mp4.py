"""MP4 (ISO/IEC 14496-12) boxes: a progressive, moov-first file built from sample tables.

This module knows boxes, not footage: ``clip`` decides which samples go in, with what sizes
and times, and where their bytes sit in ``mdat``; here they become ``ftyp``, ``moov`` (with
edit lists, so a clip starts on its exact frame) and the ``mdat`` header. It also derives the
codec configuration records (avcC, hvcC, the AAC esds) from recorded parameter sets, bit
fields only. No FFmpeg: a clip command never has to load PyAV.

Layout of every file written: ``ftyp | moov | mdat``. Because ``moov`` comes first, its size
must be known before any sample offset is: ``build_moov`` is called once with the offsets
relative to the mdat payload and shifted by the header size it produces (see ``layout``).
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import NamedTuple

from vstore import _native

MOVIE_TIMESCALE = 1000  # mvhd/tkhd/elst units, as FFmpeg writes them
_EPOCH_1904_S = 2_082_844_800  # seconds from 1904-01-01 (MP4's epoch) to 1970-01-01
_U32 = 0xFFFFFFFF
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


class Mp4Track:
    """One track's samples. Times are in ``timescale`` units; ``dts`` may start below zero
    (the pre-roll a decoder needs before the clip's first shown frame, at time 0)."""

    def __init__(
        self,
        track_id: int,
        kind: str,
        timescale: int,
        sample_entry: bytes,
        width: int = 0,
        height: int = 0,
    ) -> None:
        self.track_id = track_id
        self.kind = kind  # "video" | "audio"
        self.timescale = timescale
        self.sample_entry = sample_entry  # the stsd entry box (avc1, hvc1, mp4a)
        self.width, self.height = width, height
        self.sizes = array("I")
        self.dts = array("q")
        self.cts = array("q")  # pts - dts
        self.sync = array("I")  # 1-based keyframe numbers
        self.chunk_offsets = array("Q")  # from the start of the mdat payload
        self.chunk_samples = array("I")
        self.end_limit: int | None = None  # presentation ends here at the latest
        # A sample's own length where the table cannot tell (a track of one sample), or 0.
        self.sample_duration = 0

    def durations(self) -> list[int]:
        """Each sample's duration: the next sample's dts minus its own (at least 1)."""
        return _native.cliptab.durations(self.dts, self.sample_duration or 1)

    def presentation(self, durations: list[int]) -> tuple[int, int]:
        """(first shown time, end time) in timescale units, clamped to start at 0."""
        first, end = _native.cliptab.presentation(self.dts, self.cts, durations)
        if self.end_limit is not None:
            end = min(end, self.end_limit)
        return max(0, first), max(end, max(0, first))


def _be(code: str, values: Sequence[int]) -> bytes:
    a = array(code, values)
    if a.itemsize > 1 and sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


class _Prepared(NamedTuple):
    """What a track's boxes need that does not depend on where mdat starts."""

    durations: list[int]
    first: int  # presentation, timescale units
    end: int
    tables: bytes  # stsd, stts, ctts, stss, stsc, stsz


def _prepare(t: Mp4Track) -> _Prepared:
    durs = t.durations()
    first, end = t.presentation(durs)
    return _Prepared(durs, first, end, _tables(t, durs))


def _tables(t: Mp4Track, durs: list[int]) -> bytes:
    n = len(t.sizes)
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), t.sample_entry)
    stts_runs = _native.cliptab.runs(durs)
    stts = full_box(b"stts", 0, 0, struct.pack(">I", len(stts_runs) // 2), _be("I", stts_runs))
    boxes = [stsd, stts]
    if any(t.cts):
        ctts_runs = _native.cliptab.runs(t.cts)
        signed = min(t.cts) < 0
        body = _be("i", ctts_runs) if signed else _be("I", ctts_runs)
        boxes.append(
            full_box(b"ctts", 1 if signed else 0, 0, struct.pack(">I", len(ctts_runs) // 2), body)
        )
    if t.kind == "video" and len(t.sync) != n:
        boxes.append(full_box(b"stss", 0, 0, struct.pack(">I", len(t.sync)), _be("I", t.sync)))
    stsc_entries: list[int] = []
    prev = -1
    for i, k in enumerate(t.chunk_samples):
        if k != prev:
            stsc_entries += (i + 1, k, 1)
            prev = k
    boxes.append(
        full_box(b"stsc", 0, 0, struct.pack(">I", len(stsc_entries) // 3), _be("I", stsc_entries))
    )
    boxes.append(full_box(b"stsz", 0, 0, struct.pack(">II", 0, n), _be("I", t.sizes)))
    return b"".join(boxes)


def _stbl(t: Mp4Track, prep: _Prepared, base: int, wide: bool) -> bytes:
    offs = [base + o for o in t.chunk_offsets]
    if wide:
        offsets = full_box(b"co64", 0, 0, struct.pack(">I", len(offs)), _be("Q", offs))
    else:
        offsets = full_box(b"stco", 0, 0, struct.pack(">I", len(offs)), _be("I", offs))
    return box(b"stbl", prep.tables, offsets)


def _trak(t: Mp4Track, prep: _Prepared, base: int, wide: bool, created: int) -> bytes:
    first, end = prep.first, prep.end
    media_duration = sum(prep.durations)
    shown = end - first

    def to_movie(v: int) -> int:
        return (v * MOVIE_TIMESCALE + t.timescale // 2) // t.timescale

    # Edit list: an empty edit while the track has not begun, then the media from the stored
    # time of clip time max(0, first). Samples before it (the pre-roll) decode but never show.
    dts0 = t.dts[0]
    edits: list[tuple[int, int]] = []
    if first > 0:
        edits.append((to_movie(first), -1))
    edits.append((to_movie(shown), first - dts0))
    wide_edit = any(d > _U32 or m > 0x7FFFFFFF for d, m in edits)
    body = struct.pack(">I", len(edits)) + b"".join(
        struct.pack(">QqHH" if wide_edit else ">IiHH", d, m, 1, 0) for d, m in edits
    )
    edts = box(b"edts", full_box(b"elst", 1 if wide_edit else 0, 0, body))
    track_duration = to_movie(end)
    tv = 1 if created > _U32 or track_duration > _U32 else 0
    tkhd = full_box(
        b"tkhd",
        tv,
        3,  # enabled, in movie
        struct.pack(">QQIIQ" if tv else ">IIIII", created, created, t.track_id, 0, track_duration),
        struct.pack(">IIhhHH", 0, 0, 0, 0, 0x0100 if t.kind == "audio" else 0, 0),
        _MATRIX,
        struct.pack(">II", t.width << 16, t.height << 16),
    )
    mv = 1 if (created > _U32 or media_duration > _U32) else 0
    mdhd = full_box(
        b"mdhd",
        mv,
        0,
        struct.pack(">QQIQ" if mv else ">IIII", created, created, t.timescale, media_duration),
        struct.pack(">HH", 0x55C4, 0),  # language 'und'
    )
    handler, name = (b"vide", b"VideoHandler") if t.kind == "video" else (b"soun", b"SoundHandler")
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\x00")
    media_header = (
        full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0))
        if t.kind == "video"
        else full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0))
    )
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    minf = box(b"minf", media_header, dinf, _stbl(t, prep, base, wide))
    return box(b"trak", tkhd, edts, box(b"mdia", mdhd, hdlr, minf))


def _udta(metadata: dict[str, str]) -> bytes:
    """moov/udta/meta with 'mdta' keys, as FFmpeg's ``use_metadata_tags`` writes them."""
    if not metadata:
        return b""
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"mdta"), b"\x00")
    keys = full_box(
        b"keys",
        0,
        0,
        struct.pack(">I", len(metadata)),
        *(box(b"mdta", k.encode()) for k in metadata),
    )
    items = [
        struct.pack(">II", 8 + 16 + len(v.encode()), i + 1)
        + box(b"data", struct.pack(">II", 1, 0), v.encode())
        for i, v in enumerate(metadata.values())
    ]
    return box(b"udta", full_box(b"meta", 0, 0, hdlr, keys, box(b"ilst", *items)))


def ftyp(tracks: Sequence[Mp4Track]) -> bytes:
    brands = [b"isom", b"iso2"]
    if any(t.sample_entry[4:8] == b"avc1" for t in tracks):
        brands.append(b"avc1")
    brands.append(b"mp41")
    return box(b"ftyp", b"isom", struct.pack(">I", 0x200), *brands)


def mdat_header(payload_bytes: int) -> bytes:
    """A 16-byte header (64-bit size form) so the size never changes the layout."""
    return struct.pack(">I4sQ", 1, b"mdat", 16 + payload_bytes)


def build_moov(
    tracks: Sequence[Mp4Track],
    base: int,
    wide: bool,
    created_unix_s: int,
    metadata: dict[str, str],
    prepared: Sequence[_Prepared] | None = None,
) -> bytes:
    """The moov box, with chunk offsets ``base`` + each track's mdat-relative offsets
    (64-bit ones when ``wide``)."""
    # MP4 counts from 1904 and cannot say earlier: footage imported with an older start gets
    # 0 (the clip keeps its real start in its vstore_start tag).
    created = max(0, created_unix_s + _EPOCH_1904_S)
    preps = list(prepared) if prepared is not None else [_prepare(t) for t in tracks]
    ends = [p.end * MOVIE_TIMESCALE // t.timescale for t, p in zip(tracks, preps, strict=True)]
    movie_end = max(ends) if ends else 0
    v = 1 if created > _U32 or movie_end > _U32 else 0
    mvhd = full_box(
        b"mvhd",
        v,
        0,
        struct.pack(">QQIQ" if v else ">IIII", created, created, MOVIE_TIMESCALE, movie_end),
        struct.pack(">IH10x", 0x10000, 0x0100),  # rate 1.0, volume 1.0
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", len(tracks) + 1),
    )
    traks = [_trak(t, p, base, wide, created) for t, p in zip(tracks, preps, strict=True)]
    return box(b"moov", mvhd, *traks, _udta(metadata))


def layout(
    tracks: Sequence[Mp4Track], payload_bytes: int, created_unix_s: int, metadata: dict[str, str]
) -> bytes:
    """``ftyp | moov | mdat header``: everything before the first sample byte."""
    head = ftyp(tracks)
    preps = [_prepare(t) for t in tracks]
    # The moov's size does not depend on the offsets' values, only on their width: build it
    # once to learn where mdat starts, then with the real offsets.
    wide = False
    probe = build_moov(tracks, 0, wide, created_unix_s, metadata, preps)
    if len(head) + len(probe) + 16 + payload_bytes > _U32:
        wide = True
        probe = build_moov(tracks, 0, wide, created_unix_s, metadata, preps)
    base = len(head) + len(probe) + 16
    moov = build_moov(tracks, base, wide, created_unix_s, metadata, preps)
    assert len(moov) == len(probe)
    return head + moov + mdat_header(payload_bytes)


def visual_entry(codec: str, width: int, height: int, record: bytes) -> bytes:
    """avc1 (H.264) or hvc1 (H.265) sample entry around its configuration record."""
    kind, cfg = {"h264": (b"avc1", b"avcC"), "hevc": (b"hvc1", b"hvcC")}[codec]
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x18, -1),
        box(cfg, record),
    )


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes(
        [0x80 | (n >> 21 & 0x7F), 0x80 | (n >> 14 & 0x7F), 0x80 | (n >> 7 & 0x7F), n & 0x7F]
    )
    return bytes([tag]) + size + body


def aac_entry(channels: int, sample_rate: int, asc: bytes, track_id: int) -> bytes:
    """mp4a sample entry with its esds (AudioSpecificConfig inside)."""
    dec_config = _descriptor(
        0x04, struct.pack(">BBBHII", 0x40, 0x15, 0, 0, 0, 0) + _descriptor(0x05, asc)
    )
    es = _descriptor(
        0x03, struct.pack(">HB", track_id, 0) + dec_config + _descriptor(0x06, b"\x02")
    )
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", channels or 2, 16, 0, 0),
        struct.pack(">I", (sample_rate if sample_rate < 0x10000 else 0) << 16),
        full_box(b"esds", 0, 0, es),
    )
