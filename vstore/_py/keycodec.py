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
    return _KEY.pack(prefix, camera, (t_ns + _BIAS) & 0xFFFFFFFFFFFFFFFF)


def decode_key(key: bytes) -> tuple[bytes, int, int]:
    if len(key) < KEY_BYTES:
        raise ValueError(f"index key too short: {len(key)} bytes")
    prefix, camera, biased = _KEY.unpack_from(key)
    return prefix, camera, biased - _BIAS
