"""H.264 and H.265 parameter sets: the picture size from an SPS, and the avcC/hvcC decoder
configuration records that MP4 sample entries carry, built from recorded parameter sets (bit
fields only, no decoder)."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import struct
from typing import NamedTuple

from vstore.base.errors import CorruptSegment
from vstore.codec.annexb import annexb_units

# Profiles whose SPS carries chroma_format_idc and bit depths (as FFmpeg's h264_ps.c reads).
_H264_CHROMA_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135, 144)


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
