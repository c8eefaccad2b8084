# cython: language_level=3
# Declaration-only helpers shared by nal.pyx and ptable.pyx (inline, so no runtime module):
# H.264/H.265 NAL unit scanning over a raw byte pointer, without the GIL.

from libc.string cimport memchr

cdef enum:
    CODEC_H264 = 0
    NAL_KEY = 1
    NAL_SPS = 2
    NAL_PPS = 4
    NAL_VPS = 8
    NAL_VCL = 16


cdef inline int _classify(int codec, unsigned char header, bint *vcl) noexcept nogil:
    cdef int t
    vcl[0] = False
    if codec == CODEC_H264:
        t = header & 0x1F
        if t == 5:
            vcl[0] = True
            return NAL_KEY | NAL_VCL
        if 1 <= t <= 4:
            vcl[0] = True
            return NAL_VCL
        if t == 7:
            return NAL_SPS
        if t == 8:
            return NAL_PPS
        return 0
    t = (header >> 1) & 0x3F
    if 16 <= t <= 21:
        vcl[0] = True
        return NAL_KEY | NAL_VCL
    if t <= 9:
        vcl[0] = True
        return NAL_VCL
    if t == 32:
        return NAL_VPS
    if t == 33:
        return NAL_SPS
    if t == 34:
        return NAL_PPS
    return 0


cdef inline Py_ssize_t _find_start(const unsigned char *p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """Index of the next 00 00 01 at or after pos, or -1."""
    cdef const unsigned char *hit
    while pos + 3 <= n:
        hit = <const unsigned char *>memchr(p + pos, 0, n - pos)
        if hit == NULL:
            return -1
        pos = hit - p
        if pos + 3 > n:
            return -1
        if p[pos + 1] == 0 and p[pos + 2] == 1:
            return pos
        pos += 1
    return -1


cdef inline int _next_unit(const unsigned char *p, Py_ssize_t n, int length_size,
                           Py_ssize_t *cursor, Py_ssize_t *start, Py_ssize_t *end) noexcept nogil:
    """Advance to the next NAL unit; returns 1 when one was found, 0 at the end."""
    cdef Py_ssize_t pos = cursor[0], size, nxt
    cdef int k
    if length_size:
        if pos + length_size > n:
            return 0
        size = 0
        for k in range(length_size):
            size = (size << 8) | p[pos + k]
        start[0] = pos + length_size
        end[0] = start[0] + size
        if size == 0 or end[0] > n:
            return 0
        cursor[0] = end[0]
        return 1
    if pos < 0:
        return 0
    start[0] = pos + 3
    nxt = _find_start(p, start[0], n)
    if nxt < 0:
        end[0] = n
        cursor[0] = -1
    else:
        end[0] = nxt
        while end[0] > start[0] and p[end[0] - 1] == 0:
            end[0] -= 1
        cursor[0] = nxt
    return 1 if start[0] < n else 0


cdef inline int scan_flags(const unsigned char *p, Py_ssize_t n, int codec,
                           int length_size) noexcept nogil:
    """NAL_* bits of the units before (and including) the first slice."""
    cdef Py_ssize_t cursor, start = 0, end = 0
    cdef int flags = 0
    cdef bint vcl = False
    if n == 0:
        return 0
    if length_size:
        cursor = 0
        while _next_unit(p, n, length_size, &cursor, &start, &end):
            flags |= _classify(codec, p[start], &vcl)
            if vcl:
                break
        return flags
    # Annex-B: classify at each start code; a slice's (large) body is never scanned.
    cursor = _find_start(p, 0, n)
    while cursor >= 0 and cursor + 3 < n:
        flags |= _classify(codec, p[cursor + 3], &vcl)
        if vcl:
            break
        cursor = _find_start(p, cursor + 3, n)
    return flags
