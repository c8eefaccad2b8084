"""Pure-Python twin of ``ext/nal.pyx``: NAL unit scanning for H.264/H.265 keyframes and
parameter sets, over Annex-B (start codes) or AVCC/HVCC (length-prefixed) packets.

The scan stops at the first VCL (slice) NAL unit: parameter sets and SEI precede the slices of
an access unit, so the tail of a large packet is never touched.
"""

from __future__ import annotations

import sys
from array import array

CODEC_H264 = 0
CODEC_HEVC = 1

NAL_KEY = 1  # IDR (H.264) / IRAP (H.265) slice
NAL_SPS = 2
NAL_PPS = 4
NAL_VPS = 8
NAL_VCL = 16  # some slice was seen


# (flag bits, is a slice) by NAL unit type; types not listed are (0, False).
_H264_TYPES = {5: (NAL_KEY | NAL_VCL, True), 7: (NAL_SPS, False), 8: (NAL_PPS, False)}
_H264_TYPES.update(dict.fromkeys(range(1, 5), (NAL_VCL, True)))
_HEVC_TYPES = {32: (NAL_VPS, False), 33: (NAL_SPS, False), 34: (NAL_PPS, False)}
_HEVC_TYPES.update(dict.fromkeys(range(10), (NAL_VCL, True)))
_HEVC_TYPES.update(dict.fromkeys(range(16, 22), (NAL_KEY | NAL_VCL, True)))  # IRAP slices
_OTHER = (0, False)


def _classify(codec: int, header: int) -> tuple[int, bool]:
    """Return (flag bits, is_vcl) for one NAL unit's first header byte."""
    if codec == CODEC_H264:
        return _H264_TYPES.get(header & 0x1F, _OTHER)
    return _HEVC_TYPES.get((header >> 1) & 0x3F, _OTHER)


def _units(data: bytes, length_size: int):
    """Yield (start, end) of each NAL unit payload (header byte first)."""
    n = len(data)
    if length_size:
        pos = 0
        while pos + length_size <= n:
            size = int.from_bytes(data[pos : pos + length_size], "big")
            start = pos + length_size
            end = start + size
            if size == 0 or end > n:
                return
            yield start, end
            pos = end
        return
    # Annex-B: units are separated by 00 00 01 (optionally preceded by another 00).
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        if nxt < 0:
            end = n
        else:
            end = nxt
            # A 4-byte start code's leading zero belongs to the separator, not the payload.
            while end > start and data[end - 1] == 0:
                end -= 1
        if start < n:
            yield start, end
        i = nxt


def nal_flags(data: bytes, codec: int, length_size: int) -> int:
    """Bitmask of NAL_* flags for the units before (and including) the first slice."""
    mv = bytes(data)
    flags = 0
    if length_size:
        for start, _end in _units(mv, length_size):
            bits, vcl = _classify(codec, mv[start])
            flags |= bits
            if vcl:
                break
        return flags
    # Annex-B: classify at each start code; a slice's body is never scanned.
    i = mv.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(mv):
        bits, vcl = _classify(codec, mv[i + 3])
        flags |= bits
        if vcl:
            break
        i = mv.find(b"\x00\x00\x01", i + 3)
    return flags


def first_key(packets: list, track: int, codec: int) -> int:
    """Index of the first packet tuple ``(track, pts, dts, key, data, ...)`` of ``packets``
    on ``track`` that is a keyframe by its NAL units (Annex-B data), -1 if none."""
    for i, p in enumerate(packets):
        if p[0] == track and nal_flags(p[4], codec, 0) & NAL_KEY:
            return i
    return -1


def parameter_sets(data: bytes, codec: int, length_size: int) -> bytes:
    """The VPS/SPS/PPS units before the first slice, re-emitted in Annex-B form."""
    mv = bytes(data)
    out = bytearray()
    for start, end in _units(mv, length_size):
        bits, vcl = _classify(codec, mv[start])
        if vcl:
            break
        if bits & (NAL_SPS | NAL_PPS | NAL_VPS):
            out += b"\x00\x00\x00\x01"
            out += mv[start:end]
    return bytes(out)


# How a track's packets become MP4 samples (the ``forms`` of sample_sizes, one per track).
FORM_STORED = 0  # as stored
FORM_ANNEXB = 1  # Annex-B video, rewritten with 4-byte lengths
FORM_ADTS = 2  # AAC with ADTS headers, which MP4 samples do not have


def sample_sizes(payload: list, tracks: bytes, forms: bytes) -> bytes:
    """The sample-size column of a chunk (u32 little-endian, one per packet): each packet's
    size in MP4 sample form, by its track's form. Annex-B: rewritten with 4-byte lengths
    (what ``codec.annexb.annexb_to_length_prefixed`` makes: bytes before the first start
    code and zeros before a start code dropped, empty units skipped). ADTS: without its
    header, when it has one (``codec.aac.adts_to_asc``'s test). ``payload`` holds the
    chunk's packets, one buffer each, in table order; a track past ``forms`` is stored."""
    out = array("I")
    for data, tr in zip(payload, tracks, strict=True):
        form = forms[tr] if tr < len(forms) else FORM_STORED
        n = len(data)
        if form == FORM_ANNEXB:
            n = 0
            for start, end in _units(bytes(data), 0):
                if end > start:
                    n += 4 + end - start
        elif form == FORM_ADTS and n >= 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
            n -= 7 if data[1] & 0x01 else 9  # protection_absent: no CRC
        out.append(n)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()
