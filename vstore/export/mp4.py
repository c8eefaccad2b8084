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
# annotation when the module loads, a few ms of every command's start-up (issue 5).

import itertools
import operator
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import NamedTuple

from vstore.base.errors import CorruptSegment

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

    def durations(self) -> list[int]:
        """Each sample's duration: the next sample's dts minus its own (at least 1)."""
        d = self.dts
        out = list(map(operator.sub, d[1:], d))
        if out and min(out) < 1:  # dts out of order (a damaged source): keep the table valid
            out = [max(1, x) for x in out]
        if len(d):
            out.append(out[-1] if out else 1)  # the last sample lasts as long as the one before
        return out

    def presentation(self, durations: list[int]) -> tuple[int, int]:
        """(first shown time, end time) in timescale units, clamped to start at 0."""
        first = min(d + c for d, c in zip(self.dts, self.cts, strict=True))
        end = max(d + c + u for d, c, u in zip(self.dts, self.cts, durations, strict=True))
        if self.end_limit is not None:
            end = min(end, self.end_limit)
        return max(0, first), max(end, max(0, first))


def _runs(values: Sequence[int]) -> list[int]:
    """Run-length pairs (count, value), flattened."""
    out: list[int] = []
    for v, group in itertools.groupby(values):
        out += (sum(1 for _ in group), v)
    return out


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
    stts_runs = _runs(durs)
    stts = full_box(b"stts", 0, 0, struct.pack(">I", len(stts_runs) // 2), _be("I", stts_runs))
    boxes = [stsd, stts]
    if any(t.cts):
        ctts_runs = _runs(t.cts)
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


# --- codec configuration records ------------------------------------------------------------


def _unescape(nal: bytes) -> bytes:
    """RBSP from a NAL unit: drop emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise CorruptSegment("parameter set ends early")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptSegment("bad Exp-Golomb code in a parameter set")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)


def annexb_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte string (start codes removed)."""
    out: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        while nxt >= 0 and end > start and data[end - 1] == 0:
            end -= 1  # a 4-byte start code's leading zero
        if end > start:
            out.append(data[start:end])
        i = nxt
    return out


def annexb_to_length_prefixed(data: bytes) -> bytes:
    """An Annex-B access unit as 4-byte length-prefixed NAL units (MP4 sample form)."""
    return b"".join(len(u).to_bytes(4, "big") + u for u in annexb_units(data))


# Profiles whose SPS carries chroma_format_idc and bit depths (as FFmpeg's h264_ps.c reads).
_H264_CHROMA_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135, 144)


class _H264Sps(NamedTuple):
    chroma: int  # chroma_format_idc
    luma_depth_minus8: int
    chroma_depth_minus8: int
    width: int
    height: int


def _h264_sps(sps: bytes, size: bool = True) -> _H264Sps:
    """The fields vstore needs from an H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1); with
    ``size`` False it stops after the bit depths (all an avcC record needs), size 0 x 0."""
    if len(sps) < 4:
        raise CorruptSegment("H.264 SPS too short")
    b = _Bits(_unescape(sps[4:]))
    b.ue()  # seq_parameter_set_id
    chroma, luma, chroma_depth, separate = 1, 0, 0, 0
    if sps[1] in _H264_CHROMA_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            separate = b.u(1)
        luma, chroma_depth = b.ue(), b.ue()
        if not size:
            return _H264Sps(chroma, luma, chroma_depth, 0, 0)
        b.u(1)  # qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    _skip_scaling_list(b, 16 if i < 6 else 64)
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se(), b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)  # mb_adaptive_frame_field_flag
    b.u(1)  # direct_8x8_inference_flag
    left = right = top = bottom = 0
    if b.u(1):  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
    array_type = 0 if separate else chroma
    crop_x = 1 if array_type in (0, 3) else 2
    crop_y = (2 - frame_mbs_only) * (2 if array_type == 1 else 1)
    width = width_mbs * 16 - crop_x * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (top + bottom)
    return _H264Sps(chroma, luma, chroma_depth, width, height)


def _skip_scaling_list(b: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + b.se() + 256) % 256
        last = nxt or last


class _HevcSps(NamedTuple):
    max_sub_layers: int
    temporal_id_nested: int
    ptl: bytes  # general profile space/tier/idc, compatibility, constraints, level
    chroma: int
    luma_depth_minus8: int
    chroma_depth_minus8: int
    width: int
    height: int


def _hevc_sps(unit: bytes) -> _HevcSps:
    """The fields vstore needs from an H.265 SPS NAL unit (ITU-T H.265 7.3.2.2)."""
    sps = _unescape(unit[2:])
    if len(sps) < 13:
        raise CorruptSegment("H.265 SPS too short")
    max_sub_layers = ((sps[0] >> 1) & 0x7) + 1
    b = _Bits(sps)
    b.pos = 13 * 8
    sub = max_sub_layers - 1
    flags = [(b.u(1), b.u(1)) for _ in range(sub)]
    if sub > 0:
        b.u(2 * (8 - sub))
    for prof, lvl in flags:
        b.u(88 * prof + 8 * lvl)
    b.ue()  # sps_seq_parameter_set_id
    chroma = b.ue()
    separate = b.u(1) if chroma == 3 else 0
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance_window_flag: offsets in chroma samples
        array_type = 0 if separate else chroma
        sub_w = 2 if array_type in (1, 2) else 1
        sub_h = 2 if array_type == 1 else 1
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    luma, chroma_depth = b.ue(), b.ue()
    return _HevcSps(
        max_sub_layers, sps[0] & 1, sps[1:13], chroma, luma, chroma_depth, width, height
    )


def video_size(codec: str, params: bytes) -> tuple[int, int]:
    """Picture width and height (after cropping) from the SPS among Annex-B ``params``."""
    for u in annexb_units(params):
        if codec == "h264" and u[0] & 0x1F == 7:
            sps = _h264_sps(u)
            return sps.width, sps.height
        if codec == "hevc" and (u[0] >> 1) & 0x3F == 33:
            hsps = _hevc_sps(u)
            return hsps.width, hsps.height
    raise CorruptSegment(f"{codec} parameters without an SPS")


def avcc_record(params: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord from Annex-B SPS/PPS units."""
    units = annexb_units(params)
    sps = [u for u in units if u[0] & 0x1F == 7]
    pps = [u for u in units if u[0] & 0x1F == 8]
    if not sps or not pps or len(sps[0]) < 4:
        raise CorruptSegment("H.264 track has no SPS/PPS to describe it")
    out = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)])
    for u in sps:
        out += len(u).to_bytes(2, "big") + u
    out.append(len(pps))
    for u in pps:
        out += len(u).to_bytes(2, "big") + u
    if sps[0][1] in (100, 110, 122, 144):  # High profiles carry chroma format and bit depth
        f = _h264_sps(sps[0], size=False)
        out += bytes([0xFC | f.chroma, 0xF8 | f.luma_depth_minus8, 0xF8 | f.chroma_depth_minus8, 0])
    return bytes(out)


def hvcc_record(params: bytes) -> bytes:
    """An HEVCDecoderConfigurationRecord from Annex-B VPS/SPS/PPS units."""
    units = annexb_units(params)
    by_type: dict[int, list[bytes]] = {}
    for u in units:
        by_type.setdefault((u[0] >> 1) & 0x3F, []).append(u)
    if 33 not in by_type or 34 not in by_type:
        raise CorruptSegment("H.265 track has no SPS/PPS to describe it")
    f = _hevc_sps(by_type[33][0])
    out = bytearray([1, *f.ptl])
    out += struct.pack(
        ">HBBBBH",
        0xF000,
        0xFC,
        0xFC | f.chroma,
        0xF8 | f.luma_depth_minus8,
        0xF8 | f.chroma_depth_minus8,
        0,
    )
    out.append((f.max_sub_layers << 3) | (f.temporal_id_nested << 2) | 3)
    arrays = [(t, by_type[t]) for t in (32, 33, 34, 39) if t in by_type]
    out.append(len(arrays))
    for nal_type, us in arrays:
        out += bytes([0x80 | nal_type]) + len(us).to_bytes(2, "big")
        for u in us:
            out += len(u).to_bytes(2, "big") + u
    return bytes(out)


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


AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def adts_to_asc(frame: bytes) -> tuple[bytes, int] | None:
    """AudioSpecificConfig and header length from an ADTS frame header, or None."""
    if len(frame) < 7 or frame[0] != 0xFF or frame[1] & 0xF6 != 0xF0:
        return None
    profile = (frame[2] >> 6) & 0x3
    freq_idx = (frame[2] >> 2) & 0xF
    chan = ((frame[2] & 0x1) << 2) | (frame[3] >> 6)
    header = 7 if frame[1] & 0x01 else 9  # protection_absent
    asc = ((profile + 1) << 11) | (freq_idx << 7) | (chan << 3)
    return asc.to_bytes(2, "big"), header


def asc_sample_rate(asc: bytes) -> int:
    idx = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    return AAC_RATES[idx] if idx < len(AAC_RATES) else 0
