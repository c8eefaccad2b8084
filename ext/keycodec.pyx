# cython: boundscheck=False, wraparound=False
"""Compiled twin of ``vstore/_py/keycodec.py``: fixed-width order-preserving index keys."""

from libc.stdint cimport int64_t, uint32_t, uint64_t

KEY_BYTES = 13
cdef uint64_t _BIAS = (<uint64_t>1) << 63


def encode_key(bytes prefix, uint32_t camera, int64_t t_ns):
    cdef unsigned char buf[13]
    cdef uint64_t v = (<uint64_t>t_ns) ^ _BIAS
    cdef int i
    if len(prefix) != 1:
        raise ValueError("prefix must be one byte")
    buf[0] = prefix[0]
    for i in range(4):
        buf[1 + i] = (camera >> (24 - 8 * i)) & 0xFF
    for i in range(8):
        buf[5 + i] = (v >> (56 - 8 * i)) & 0xFF
    return (<char *>buf)[:13]


def decode_key(const unsigned char[::1] key):
    cdef uint32_t camera = 0
    cdef uint64_t v = 0
    cdef int i
    if key.shape[0] < 13:
        raise ValueError(f"index key too short: {key.shape[0]} bytes")
    for i in range(4):
        camera = (camera << 8) | key[1 + i]
    for i in range(8):
        v = (v << 8) | key[5 + i]
    return bytes([key[0]]), camera, <int64_t>(v ^ _BIAS)
