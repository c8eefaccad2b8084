"""Fragmented MP4 (ISO/IEC 14496-12, 8.8) for HLS: an initialization segment (``ftyp`` and a
``moov`` with ``mvex``, no samples) and media segments (``moof`` + ``mdat``), each one GOP.

Like ``mp4``, this module knows boxes, not footage: ``hls`` decides which samples go in a
fragment, with their decode times, durations, sizes and bytes.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads.

import struct
from collections.abc import Sequence
from typing import NamedTuple

from vstore.export.mp4 import box, full_box

_SYNC_FLAGS = 0x02000000  # sample_depends_on = 2: a sync sample
_NON_SYNC_FLAGS = 0x01010000  # depends on others, sample_is_non_sync_sample
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset, dur, size, flags, cts
_DEFAULT_BASE_IS_MOOF = 0x020000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


class InitTrack(NamedTuple):
    track_id: int
    kind: str  # "video" | "audio"
    timescale: int
    sample_entry: bytes  # avc1 / hvc1 / mp4a, from mp4.visual_entry / mp4.aac_entry
    width: int = 0
    height: int = 0


class Fragment(NamedTuple):
    """One track's samples in a media segment."""

    track_id: int
    base_dts: int  # decode time of the first sample, timescale units
    durations: Sequence[int]
    sizes: Sequence[int]
    sync: Sequence[bool]
    cts: Sequence[int]  # presentation minus decode time
    data: Sequence[bytes | memoryview]  # the samples' bytes, in order


def _trak(t: InitTrack) -> bytes:
    tkhd = full_box(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, t.track_id, 0, 0),
        struct.pack(">IIhhHH", 0, 0, 0, 0, 0x0100 if t.kind == "audio" else 0, 0),
        _MATRIX,
        struct.pack(">II", t.width << 16, t.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, t.timescale, 0), b"\x55\xc4\0\0")
    handler, name = (b"vide", b"VideoHandler") if t.kind == "video" else (b"soun", b"SoundHandler")
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\x00")
    media_header = (
        full_box(b"vmhd", 0, 1, bytes(8))
        if t.kind == "video"
        else full_box(b"smhd", 0, 0, bytes(4))
    )
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    empty = struct.pack(">I", 0)
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), t.sample_entry),
        full_box(b"stts", 0, 0, empty),
        full_box(b"stsc", 0, 0, empty),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, empty),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def init_segment(tracks: Sequence[InitTrack]) -> bytes:
    brands = [b"iso6", b"isom", b"mp41"]
    if any(t.sample_entry[4:8] == b"avc1" for t in tracks):
        brands.append(b"avc1")
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), *brands)
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH10x", 0x10000, 0x0100),
        _MATRIX,
        bytes(24),
        struct.pack(">I", max((t.track_id for t in tracks), default=0) + 1),
    )
    trex = [full_box(b"trex", 0, 0, struct.pack(">IIIII", t.track_id, 1, 0, 0, 0)) for t in tracks]
    return ftyp + box(b"moov", mvhd, *(_trak(t) for t in tracks), box(b"mvex", *trex))


def _moof(sequence: int, frags: Sequence[Fragment], data_offsets: Sequence[int]) -> bytes:
    trafs = []
    for f, offset in zip(frags, data_offsets, strict=True):
        tfhd = full_box(b"tfhd", 0, _DEFAULT_BASE_IS_MOOF, struct.pack(">I", f.track_id))
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", max(0, f.base_dts)))
        n = len(f.sizes)
        entries = bytearray()
        for d, s, k, c in zip(f.durations, f.sizes, f.sync, f.cts, strict=True):
            entries += struct.pack(">IIIi", d, s, _SYNC_FLAGS if k else _NON_SYNC_FLAGS, c)
        trun = full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", n, offset), bytes(entries))
        trafs.append(box(b"traf", tfhd, tfdt, trun))
    return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)


def media_segment(sequence: int, frags: Sequence[Fragment]) -> list[bytes | memoryview]:
    """``moof | mdat`` for the fragments, as buffers (the samples' bytes are not copied).
    Each track's data offset counts from the start of the moof (default-base-is-moof)."""
    probe = _moof(sequence, frags, [0] * len(frags))  # offsets do not change its size
    at = len(probe) + 8
    offsets = []
    for f in frags:
        offsets.append(at)
        at += sum(f.sizes)
    moof = _moof(sequence, frags, offsets)
    mdat_header = struct.pack(">I4s", at - len(moof), b"mdat")
    out: list[bytes | memoryview] = [moof + mdat_header]
    for f in frags:
        out.extend(f.data)
    return out
