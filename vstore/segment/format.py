"""Segment file format v1: constants and (un)packing shared by the segment writer and reader.

A segment file is ``header | chunk* | footer | trailer`` (docs/design/segment_format.md has the
grammar and a worked byte example). All integers are little-endian. A segment reads with
nothing but its own bytes: the header names the codecs and time bases, the footer lists the
chunks, the trailer holds the SHA-256 of everything before the footer.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import base64
import json
import struct
import sys
import threading
import zlib
from array import array
from itertools import accumulate
from typing import Any, NamedTuple

from vstore.base.errors import CorruptSegment
from vstore.base.jsonio import dumps_compact

# Version 2 added the sample-size column (CHUNK_SAMPLE_SIZES); version 1 files read as
# before. A reader that knows only version 1 refuses a version 2 file by its header.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# --- file header: magic, version, flags, meta_len, meta_crc32, then meta JSON -------------------
FILE_MAGIC = b"\x89VSEG\r\n\x1a"  # PNG-style: catches text-mode and 7-bit transfer damage
HEADER = struct.Struct("<8sHHII")  # 20 bytes
MAX_META_BYTES = 1 << 20

# --- chunk: header, packet table, payload, crc32 of all preceding chunk bytes ------------------
CHUNK_MAGIC = b"VCHK"
CHUNK_HEADER = struct.Struct("<4sIIIBBHqq")  # 36 bytes
CHUNK_CRC = struct.Struct("<I")
CHUNK_OVERHEAD = CHUNK_HEADER.size + CHUNK_CRC.size
MAX_CHUNK_BYTES = (1 << 32) - 1
TABLE_RAW = 0
TABLE_ZSTD = 1
ZSTD_MIN_PACKETS = 8  # smaller tables are stored raw: the zstd frame header would not pay
# Tables smaller than this share of their chunk's payload are stored raw: beside a video GOP
# (a 900-byte table, 1 MB of payload) compression saves a thousandth of the chunk for about
# 10 us of CPU per GOP; beside audio's small frames (18 bytes a row for ~300-byte frames) it
# saves a few percent of the disk.
ZSTD_MIN_TABLE_SHARE = 1 / 32
ZSTD_LEVEL = 3

# chunk flags
CHUNK_KEY_START = 0x01  # first video packet is a keyframe (a GOP start)
CHUNK_CONTINUATION = 0x02  # rest of an oversized GOP (see max_chunk_bytes)
CHUNK_AFTER_DISCONTINUITY = 0x04  # a discontinuity precedes this chunk
# The packet table has a sample-size column (SAMPLE_SIZE_BYTES a packet, after the others):
# each packet's size in MP4 sample form, where that differs from its stored size (Annex-B
# video rewritten with 4-byte lengths, AAC without its ADTS header). A clip's MP4 index then
# needs no payload.
CHUNK_SAMPLE_SIZES = 0x08
SAMPLE_SIZE_BYTES = 4

# packet flags (packet table flags column)
PKT_KEY = 0x01
PKT_TS_SYNTH = 0x02  # timestamp was missing at ingest and was synthesized
PKT_CORRUPT = 0x04  # source flagged the packet corrupt; kept, bytes untouched

PTABLE_ROW_BYTES = 18  # dts_delta i64 | cts i32 | size u32 | flags u8 | track u8 (columnar)

# --- footer: magic, chunk count, end_ns, then the chunk directory -----------------------------
FOOTER_MAGIC = b"VFTR"
FOOTER_HEAD = struct.Struct("<4sIq")  # 16 bytes
DIR_ENTRY = struct.Struct("<QIqqIII")  # offset, length, start, end, packets, crc32, flags: 40 B

# --- trailer: fixed size, last bytes of the file -----------------------------------------------
TRAILER_MAGIC = b"VSEGEND\x00"
TRAILER = struct.Struct("<QII32s8s")  # footer_offset, footer_len, footer_crc, sha256, magic
TRAILER_BYTES = TRAILER.size  # 56


class TrackInfo(NamedTuple):
    """One elementary stream of a segment, enough to remux it with no other source."""

    index: int
    kind: str  # "video" | "audio"
    codec: str  # FFmpeg codec name: h264, hevc, aac, pcm_mulaw, pcm_alaw, ...
    time_base: tuple[int, int]
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    bitstream: str = ""  # video: "annexb" or "avcc" (length-prefixed, 4-byte lengths)

    def to_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["time_base"] = list(self.time_base)
        d["extradata"] = base64.b64encode(self.extradata).decode()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrackInfo":
        d = dict(d)
        d["time_base"] = tuple(d["time_base"])
        d["extradata"] = base64.b64decode(d.get("extradata", ""))
        return cls(**d)


class SegmentMeta(NamedTuple):
    """Header metadata: who, which tracks, and how media time maps to wall time.

    wall_ns(ts) = anchor_wall_ns + ticks_to_ns(ts, tb) - anchor_media_ns (docs/design/time.md).
    """

    camera: str
    segment_id: int
    tracks: tuple[TrackInfo, ...]
    anchor_wall_ns: int
    anchor_media_ns: int
    created_ns: int
    store_uuid: str = ""
    extra: dict[str, Any] = {}  # noqa: RUF012 - shared default, never mutated

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT_VERSION,
            "camera": self.camera,
            "segment_id": self.segment_id,
            "tracks": [t.to_json() for t in self.tracks],
            "anchor_wall_ns": self.anchor_wall_ns,
            "anchor_media_ns": self.anchor_media_ns,
            "created_ns": self.created_ns,
            "store_uuid": self.store_uuid,
            "extra": self.extra,
        }
        return dumps_compact(doc, sort_keys=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SegmentMeta":
        doc = json.loads(raw)
        return cls(
            camera=doc["camera"],
            segment_id=doc["segment_id"],
            tracks=tuple(TrackInfo.from_json(t) for t in doc["tracks"]),
            anchor_wall_ns=doc["anchor_wall_ns"],
            anchor_media_ns=doc["anchor_media_ns"],
            created_ns=doc["created_ns"],
            store_uuid=doc.get("store_uuid", ""),
            extra=doc.get("extra", {}),
        )


def pack_header(meta: SegmentMeta) -> bytes:
    raw = meta.to_bytes()
    if len(raw) > MAX_META_BYTES:
        raise ValueError("segment metadata too large")
    return HEADER.pack(FILE_MAGIC, FORMAT_VERSION, 0, len(raw), zlib.crc32(raw)) + raw


def unpack_header(buf: bytes) -> tuple[SegmentMeta, int]:
    """Parse the file header from the first bytes of a file; returns (meta, header length)."""
    if len(buf) < HEADER.size:
        raise CorruptSegment("file too short for a segment header")
    magic, version, _flags, meta_len, meta_crc = HEADER.unpack_from(buf)
    if magic != FILE_MAGIC:
        raise CorruptSegment("not a vstore segment (bad magic)")
    if version not in READABLE_VERSIONS:
        raise CorruptSegment(f"unsupported segment format version {version}")
    if meta_len > MAX_META_BYTES or len(buf) < HEADER.size + meta_len:
        raise CorruptSegment("segment header truncated")
    raw = bytes(buf[HEADER.size : HEADER.size + meta_len])
    if zlib.crc32(raw) != meta_crc:
        raise CorruptSegment("segment header checksum mismatch")
    try:
        return SegmentMeta.from_bytes(raw), HEADER.size + meta_len
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptSegment(f"segment header unreadable: {exc}") from exc


# python-zstandard's (de)compressor objects must not be used by two threads at once (they
# release the GIL mid-call and share one context): every thread gets its own pair.
_zstd = threading.local()


def _codecs() -> tuple[Any, Any]:
    """This thread's (ZstdCompressor, ZstdDecompressor). zstandard is imported on first use:
    the tables of high-bitrate footage are stored raw, and a short command need not load it."""
    pair = getattr(_zstd, "pair", None)
    if pair is None:
        import zstandard

        pair = _zstd.pair = (
            zstandard.ZstdCompressor(level=ZSTD_LEVEL),
            zstandard.ZstdDecompressor(),
        )
    return pair


_CRC_BIG_BYTES = 4 * 1024
_crc32_big: Any = None


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32 with zlib's polynomial (every checksum in the format). Large buffers (chunk
    payloads) go through ISA-L, 3-4x faster than zlib here from a few KiB up; tiny ones
    (headers, tables) through zlib, so short commands never import ISA-L. Both give the same
    value (tested)."""
    if len(data) < _CRC_BIG_BYTES:
        return zlib.crc32(data, value)
    return (_crc32_big or _load_crc32_big())(data, value)


def crc32_parts(parts: list[bytes | bytearray | memoryview], value: int = 0) -> int:
    """``crc32`` over several buffers in order (a chunk's packets), all through ISA-L: it is
    faster than zlib from 1 KB up, and a loop without the size test per part is what the
    per-GOP path wants (about 50 parts a GOP)."""
    big = _crc32_big or _load_crc32_big()
    for p in parts:
        value = big(p, value)
    return value


def _load_crc32_big() -> Any:
    global _crc32_big
    try:  # imported on first use: short commands never load it
        from isal.isal_zlib import crc32 as big  # optional and heavy
    except ImportError:  # a platform without the wheel: zlib is only slower
        big = zlib.crc32
    _crc32_big = big
    return big


def encode_table(raw: bytes, packet_count: int, payload_bytes: int) -> tuple[bytes, int]:
    """Compress a packed packet table where it pays; returns (stored bytes, TABLE_* codec)."""
    if packet_count >= ZSTD_MIN_PACKETS and len(raw) >= payload_bytes * ZSTD_MIN_TABLE_SHARE:
        z = _codecs()[0].compress(raw)
        if len(z) < len(raw) * 0.8:
            return z, TABLE_ZSTD
    return raw, TABLE_RAW


class ChunkHeader(NamedTuple):
    chunk_len: int
    packet_count: int
    table_len: int
    table_codec: int
    flags: int
    start_ns: int
    end_ns: int

    @property
    def payload_offset(self) -> int:
        return CHUNK_HEADER.size + self.table_len

    @property
    def payload_len(self) -> int:
        return self.chunk_len - CHUNK_OVERHEAD - self.table_len


def pack_chunk_header(h: ChunkHeader) -> bytes:
    return CHUNK_HEADER.pack(
        CHUNK_MAGIC,
        h.chunk_len,
        h.packet_count,
        h.table_len,
        h.table_codec,
        h.flags,
        0,
        h.start_ns,
        h.end_ns,
    )


def unpack_chunk_header(buf: bytes | memoryview, offset: int = 0) -> ChunkHeader:
    if len(buf) - offset < CHUNK_HEADER.size:
        raise CorruptSegment("truncated chunk header")
    magic, clen, n, tlen, codec, flags, _r, start, end = CHUNK_HEADER.unpack_from(buf, offset)
    if magic != CHUNK_MAGIC:
        raise CorruptSegment(f"bad chunk magic at offset {offset}")
    if clen < CHUNK_OVERHEAD + tlen or codec not in (TABLE_RAW, TABLE_ZSTD):
        raise CorruptSegment(f"inconsistent chunk header at offset {offset}")
    return ChunkHeader(clen, n, tlen, codec, flags, start, end)


class PacketColumns(NamedTuple):
    """A chunk's decoded packet table as plain lists (one entry per packet), plus payload
    offsets. Lists, not arrays: readers walk them packet by packet, and leaving NumPy out of
    the read path keeps `vstore` commands quick to start."""

    dts: list[int]
    pts: list[int]
    size: list[int]
    flags: bytes
    track: bytes
    offset: list[int]  # offset of each packet within the chunk payload
    # Each packet's size in MP4 sample form (CHUNK_SAMPLE_SIZES), None in chunks without.
    sample_size: list[int] | None = None

    def __len__(self) -> int:
        return len(self.dts)


def _column(raw: bytes | memoryview, code: str, start: int, n: int) -> array:
    col = array(code)
    col.frombytes(raw[start : start + n * col.itemsize])
    if sys.byteorder != "little":
        col.byteswap()
    return col


def decode_table(
    stored: bytes | memoryview, codec: int, n: int, chunk_flags: int = 0
) -> PacketColumns:
    """Inverse of PacketTable.pack (+ the sample-size column the chunk's flags announce)
    + encode_table; validates sizes."""
    raw: bytes | memoryview
    row = PTABLE_ROW_BYTES + (SAMPLE_SIZE_BYTES if chunk_flags & CHUNK_SAMPLE_SIZES else 0)
    if codec == TABLE_ZSTD:
        decompressor = _codecs()[1]
        import zstandard  # loaded by _codecs(): only its error class is wanted here

        try:
            raw = decompressor.decompress(bytes(stored), max_output_size=n * row)
        except zstandard.ZstdError as exc:
            raise CorruptSegment(f"packet table does not decompress: {exc}") from exc
    else:
        raw = stored
    if len(raw) != n * row:
        raise CorruptSegment("packet table size does not match packet count")
    dts = list(accumulate(_column(raw, "q", 0, n)))
    cts = _column(raw, "i", 8 * n, n)
    size = _column(raw, "I", 12 * n, n).tolist()
    flags = bytes(raw[16 * n : 17 * n])
    track = bytes(raw[17 * n : 18 * n])
    offset = [0, *accumulate(size[:-1])] if n else []
    pts = [d + c for d, c in zip(dts, cts, strict=True)]
    sample_size = None
    if row != PTABLE_ROW_BYTES:
        sample_size = _column(raw, "I", PTABLE_ROW_BYTES * n, n).tolist()
    return PacketColumns(dts, pts, size, flags, track, offset, sample_size)


class DirEntry(NamedTuple):
    offset: int
    length: int
    start_ns: int
    end_ns: int
    packet_count: int
    crc32: int
    flags: int


def pack_footer(entries: list[DirEntry], end_ns: int) -> bytes:
    parts = [FOOTER_HEAD.pack(FOOTER_MAGIC, len(entries), end_ns)]
    parts.extend(
        DIR_ENTRY.pack(e.offset, e.length, e.start_ns, e.end_ns, e.packet_count, e.crc32, e.flags)
        for e in entries
    )
    return b"".join(parts)


def unpack_footer(buf: bytes) -> tuple[list[DirEntry], int]:
    if len(buf) < FOOTER_HEAD.size:
        raise CorruptSegment("footer truncated")
    magic, count, end_ns = FOOTER_HEAD.unpack_from(buf)
    if magic != FOOTER_MAGIC or len(buf) != FOOTER_HEAD.size + count * DIR_ENTRY.size:
        raise CorruptSegment("bad footer")
    entries = [
        DirEntry(*DIR_ENTRY.unpack_from(buf, FOOTER_HEAD.size + i * DIR_ENTRY.size))
        for i in range(count)
    ]
    return entries, end_ns


class Trailer(NamedTuple):
    footer_offset: int
    footer_len: int
    footer_crc: int
    sha256: bytes


def pack_trailer(t: Trailer) -> bytes:
    return TRAILER.pack(t.footer_offset, t.footer_len, t.footer_crc, t.sha256, TRAILER_MAGIC)


def unpack_trailer(buf: bytes) -> Trailer:
    if len(buf) != TRAILER_BYTES:
        raise CorruptSegment("trailer truncated")
    off, flen, fcrc, sha, magic = TRAILER.unpack(buf)
    if magic != TRAILER_MAGIC:
        raise CorruptSegment("segment has no trailer (not sealed or truncated)")
    return Trailer(off, flen, fcrc, sha)
