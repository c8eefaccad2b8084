"""Pure-Python twin of ``ext/keycodec.pyx``: fixed-width, order-preserving index keys.

A key is ``prefix(1) | camera u32 BE | time i64 as offset-binary BE``: byte order equals
(camera, time) order, so one RocksDB seek finds a time in a camera's range.
"""

from __future__ import annotations

import struct

_KEY = struct.Struct(">cIQ")
KEY_BYTES = _KEY.size  # 13
_BIAS = 1 << 63


def encode_key(prefix: bytes, camera: int, t_ns: int) -> bytes:
    if not -_BIAS <= t_ns < _BIAS:  # as the compiled twin: never a key that wraps around
        raise OverflowError(f"time {t_ns} ns does not fit an index key")
    return _KEY.pack(prefix, camera, t_ns + _BIAS)


def decode_key(key: bytes) -> tuple[bytes, int, int]:
    if len(key) < KEY_BYTES:
        raise ValueError(f"index key too short: {len(key)} bytes")
    prefix, camera, biased = _KEY.unpack_from(key)
    return prefix, camera, biased - _BIAS


_CRC_FLAGS = struct.Struct("<IB")


def encode_chunk_value(
    segment_id: int,
    offset: int,
    length: int,
    packets: int,
    duration_ns: int,
    crc32: int,
    flags: int,
) -> bytes:
    """Chunk row value: uvarints (segment id, offset, length, packets, duration) + crc32 u32 LE
    + flags u8."""
    buf = bytearray()
    for v in (segment_id, offset, length, packets, duration_ns):
        if v < 0:
            raise ValueError("chunk row fields must be non-negative")
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)
    buf += _CRC_FLAGS.pack(crc32, flags)
    return bytes(buf)


def decode_chunk_row(
    key: bytes, value: bytes
) -> tuple[int, int, int, int, int, int, int, int, int]:
    """(camera, start_ns, end_ns, segment_id, offset, length, packets, crc32, flags)."""
    _, camera, start = decode_key(key)
    out = []
    pos = 0
    try:
        for _ in range(5):
            shift = result = 0
            while True:
                b = value[pos]
                pos += 1
                result |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 63:
                    raise ValueError("varint too long")
            out.append(result)
        crc, flags = _CRC_FLAGS.unpack_from(value, pos)
    except (IndexError, struct.error) as exc:
        raise ValueError("truncated chunk row value") from exc
    seg, off, length, n, dur = out
    return camera, start, start + dur, seg, off, length, n, crc, flags
