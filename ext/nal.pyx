# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``vstore/_py/nal.py``: H.264/H.265 NAL scanning over a byte buffer.

Inputs are ``const unsigned char[::1]`` memoryviews so read-only ``bytes`` are accepted without a
copy (the anchors aiohttp/PyAV take raw pointers or a Buffer class instead); the scan runs
without the GIL and allocates nothing. The scanning itself lives in ``_nalscan.pxd`` so the
writer's fast path (ptable.pyx) shares it.
"""

import sys
from array import array

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from _nalscan cimport (
    NAL_KEY, NAL_PPS, NAL_SPS, NAL_VPS, _classify, _find_start, _next_unit, scan_flags
)


def nal_flags(const unsigned char[::1] data, int codec, int length_size):
    """Bitmask of NAL_* flags for the units before (and including) the first slice."""
    cdef Py_ssize_t n = data.shape[0]
    cdef int flags
    if n == 0:
        return 0
    # The GIL stays held: the scan stops at the first slice header (well under a
    # microsecond), and releasing it hands the GIL to a waiting sync thread for its whole
    # Python stretch (a convoy: 4 % of the 1 KB writer benchmark, once per keyframe).
    flags = scan_flags(&data[0], n, codec, length_size)
    return flags


def first_key(list packets, int track, int codec):
    """Index of the first packet tuple ``(track, pts, dts, key, data, ...)`` of ``packets``
    on ``track`` that is a keyframe by its NAL units (Annex-B data), -1 if none: one call for
    a batch of the TS hub instead of a call per packet. The scan is short (it stops at the
    first slice), so it keeps the GIL: releasing it would invite a thread switch per packet."""
    cdef object p, data
    cdef const unsigned char[::1] mv
    cdef Py_ssize_t i = -1
    for p in packets:
        i += 1
        if p[0] != track:
            continue
        data = p[4]
        if type(data) is bytes:
            if scan_flags(
                <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), codec, 0
            ) & NAL_KEY:
                return i
        else:
            mv = data
            if mv.shape[0] and scan_flags(&mv[0], mv.shape[0], codec, 0) & NAL_KEY:
                return i
    return -1


def parameter_sets(const unsigned char[::1] data, int codec, int length_size):
    """The VPS/SPS/PPS units before the first slice, re-emitted in Annex-B form."""
    cdef Py_ssize_t n = data.shape[0], cursor, start = 0, end = 0
    cdef bint vcl = False
    cdef int bits
    out = bytearray()
    if n == 0:
        return b""
    cdef const unsigned char *p = &data[0]
    cursor = 0 if length_size else _find_start(p, 0, n)
    while _next_unit(p, n, length_size, &cursor, &start, &end):
        bits = _classify(codec, p[start], &vcl)
        if vcl:
            break
        if bits & (NAL_SPS | NAL_PPS | NAL_VPS):
            out += b"\x00\x00\x00\x01"
            out += bytes(data[start:end])
    return bytes(out)


cdef Py_ssize_t _lp_size(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """An Annex-B access unit's size rewritten with 4-byte lengths (see sample_sizes)."""
    cdef Py_ssize_t cursor, start = 0, end = 0, total = 0
    if n == 0:
        return 0
    cursor = _find_start(p, 0, n)
    while _next_unit(p, n, 0, &cursor, &start, &end):
        if end > start:
            total += 4 + end - start
    return total


cdef Py_ssize_t _mp4_size(const unsigned char *p, Py_ssize_t n, int form) noexcept nogil:
    if form == 1:  # FORM_ANNEXB
        return _lp_size(p, n)
    if form == 2 and n >= 7 and p[0] == 0xFF and (p[1] & 0xF6) == 0xF0:  # FORM_ADTS
        return n - (7 if p[1] & 0x01 else 9)
    return n


def sample_sizes(list payload, const unsigned char[::1] tracks, const unsigned char[::1] forms):
    """The sample-size column of a chunk (u32 little-endian, one per packet): each packet's
    size in MP4 sample form, by its track's form (see the pure twin). ``payload`` holds the
    chunk's packets, one buffer each."""
    cdef Py_ssize_t i, n = len(payload)
    cdef int form
    cdef object data
    cdef const unsigned char[::1] mv
    if tracks.shape[0] != n:
        raise ValueError("one track per packet")
    out = array("I", bytes(4 * n))
    cdef unsigned int[::1] col = out
    for i in range(n):
        data = payload[i]
        form = forms[tracks[i]] if tracks[i] < forms.shape[0] else 0
        if form == 0:
            col[i] = <unsigned int>len(data)
        elif type(data) is bytes:
            col[i] = <unsigned int>_mp4_size(
                <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), form
            )
        else:
            mv = data
            col[i] = <unsigned int>(_mp4_size(&mv[0], mv.shape[0], form) if mv.shape[0] else 0)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()
