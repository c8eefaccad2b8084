# cython: boundscheck=False, wraparound=False
"""Compiled twin of ``vstore/_py/cliptab.py``: the per-packet arithmetic of a clip's sample
tables, in C integers. Products are taken in 128 bits; a value that does not fit 64 bits
(never met in footage: some 290 years of nanoseconds) hands the call to the pure twin, so
both give the same answer for every input.
"""

from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromLongLong, PyLong_FromSsize_t
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from vstore._py import cliptab as _pure

cdef extern from *:
    """
    #include <stdint.h>
    /* plus + v * m / d2, rounded half away from zero (half = d2 / 2); -1 when it does not fit
       64 bits. The same expression as the pure twin's, with m and d2 even. */
    static int vs_rescale(int64_t v, int64_t m, int64_t half, int64_t plus, int64_t *out) {
        __int128 x = (__int128)v * m, d2 = (__int128)half * 2, q;
        q = v >= 0 ? (x + half) / d2 : -(((__int128)half - x) / d2);
        q += plus;
        if (q > INT64_MAX || q < INT64_MIN) return -1;
        *out = (int64_t)q;
        return 0;
    }
    """
    int vs_rescale(int64_t v, int64_t m, int64_t half, int64_t plus, int64_t *out) nogil

cdef int64_t NS_PER_S = 1000000000
cdef int64_t MAX_FACTOR = 4000000000  # a tb_num, tb_den or timescale above this: the pure twin
cdef int64_t MAX_TIME = 1 << 62  # times past this: the pure twin (their sums must fit)


cdef list _ints(const int64_t *v, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    for i in range(n):
        o = PyLong_FromLongLong(v[i])
        Py_INCREF(o)
        PyList_SET_ITEM(out, i, o)
    return out


class _Overflow(Exception):
    pass


cdef int _fill(object seq, int64_t *out, Py_ssize_t n) except -1:
    cdef Py_ssize_t i
    try:
        for i in range(n):
            out[i] = seq[i]
    except OverflowError:
        raise _Overflow()
    return 0


cdef int _t2ns(const int64_t *v, Py_ssize_t n, int64_t tb_num, int64_t tb_den, int64_t plus,
               int64_t *out) except -1:
    cdef Py_ssize_t i
    cdef int64_t m = 2 * tb_num * NS_PER_S
    for i in range(n):
        if vs_rescale(v[i], m, tb_den, plus, &out[i]) < 0:
            raise _Overflow()
    return 0


cdef int _ns2t(const int64_t *v, Py_ssize_t n, int64_t timescale, int64_t *out) except -1:
    cdef Py_ssize_t i
    cdef int64_t m = 2 * timescale
    for i in range(n):
        if vs_rescale(v[i], m, NS_PER_S, 0, &out[i]) < 0:
            raise _Overflow()
    return 0


cdef bint _fits(object tb_num, object tb_den) except -1:
    return 0 < tb_num <= MAX_FACTOR and 0 < tb_den <= MAX_FACTOR


def ticks_to_ns_many(ticks, tb_num, tb_den, plus_ns=0):
    """See the pure twin."""
    cdef Py_ssize_t n = len(ticks)
    if not _fits(tb_num, tb_den) or not -MAX_TIME < plus_ns < MAX_TIME:
        return _pure.ticks_to_ns_many(ticks, tb_num, tb_den, plus_ns)
    cdef int64_t *buf = <int64_t *>malloc((n + 1) * sizeof(int64_t))
    if buf == NULL:
        raise MemoryError()
    try:
        _fill(ticks, buf, n)
        _t2ns(buf, n, tb_num, tb_den, plus_ns, buf)
        return _ints(buf, n)
    except _Overflow:
        return _pure.ticks_to_ns_many(ticks, tb_num, tb_den, plus_ns)
    finally:
        free(buf)


def ns_to_ticks_many(ns, timescale):
    """See the pure twin."""
    cdef Py_ssize_t n = len(ns)
    if not _fits(timescale, 1):
        return _pure.ns_to_ticks_many(ns, timescale)
    cdef int64_t *buf = <int64_t *>malloc((n + 1) * sizeof(int64_t))
    if buf == NULL:
        raise MemoryError()
    try:
        _fill(ns, buf, n)
        _ns2t(buf, n, timescale, buf)
        return _ints(buf, n)
    except _Overflow:
        return _pure.ns_to_ticks_many(ns, timescale)
    finally:
        free(buf)


def select_track(pts, dts, const unsigned char[::1] flags, const unsigned char[::1] track,
                 int tr, tb_num, tb_den, plus_ns, end_rel_ns, scale, bint video, bint first,
                 int key_flag, covering_ns=0):
    """See the pure twin."""
    if (not _fits(tb_num, tb_den) or not _fits(scale, 1)
            or not -MAX_TIME < plus_ns < MAX_TIME or not -MAX_TIME < end_rel_ns < MAX_TIME
            or not 0 <= covering_ns < MAX_TIME):
        return _pure.select_track(pts, dts, bytes(flags), bytes(track), tr, tb_num, tb_den,
                                  plus_ns, end_rel_ns, scale, video, first, key_flag, covering_ns)
    cdef Py_ssize_t n = track.shape[0]
    # idx | walls | pts | dts | cts, n each (one block)
    cdef int64_t *block = <int64_t *>malloc((5 * n + 1) * sizeof(int64_t))
    if block == NULL:
        raise MemoryError()
    try:
        return _select(pts, dts, flags, track, tr, tb_num, tb_den, plus_ns, end_rel_ns, scale,
                       video, first, key_flag, covering_ns, block)
    except _Overflow:
        return _pure.select_track(pts, dts, bytes(flags), bytes(track), tr, tb_num, tb_den,
                                  plus_ns, end_rel_ns, scale, video, first, key_flag, covering_ns)
    finally:
        free(block)


cdef object _select(object pts, object dts, const unsigned char[::1] flags,
                    const unsigned char[::1] track, int tr, int64_t tb_num, int64_t tb_den,
                    int64_t plus_ns, int64_t end_rel, int64_t scale, bint video, bint first,
                    int key_flag, int64_t covering_ns, int64_t *block):
    cdef Py_ssize_t n = track.shape[0], m = 0, k, j, kept = 0, last = -1, i
    cdef int64_t *idx = block
    cdef int64_t *walls = block + n
    cdef int64_t *p = block + 2 * n
    cdef int64_t *d = block + 3 * n
    cdef int64_t *c = block + 4 * n
    cdef int64_t w0, lo
    cdef bint any_cts = False
    for i in range(n):
        if track[i] == tr:
            idx[m] = i
            m += 1
    try:
        for k in range(m):
            p[k] = pts[idx[k]]
            d[k] = dts[idx[k]]
            if not (-MAX_TIME < p[k] < MAX_TIME and -MAX_TIME < d[k] < MAX_TIME):
                raise _Overflow()
    except OverflowError:
        raise _Overflow()
    _t2ns(p, m, tb_num, tb_den, plus_ns, walls)
    # Which to keep: compacted in place (idx, walls and the times move down to j).
    if video:
        for k in range(m):
            if walls[k] < end_rel:
                last = k
        w0 = walls[0] if m else 0
        j = 0
        for k in range(last + 1):
            if first and k and walls[k] < w0:
                continue  # a leading frame of the clip's first keyframe
            idx[j] = idx[k]; walls[j] = walls[k]; p[j] = p[k]; d[j] = d[k]
            j += 1
    else:
        lo = 1 - covering_ns if covering_ns > 0 else 0  # (covers the start: w + length > 0)
        j = 0
        for k in range(m):
            if lo <= walls[k] < end_rel:
                idx[j] = idx[k]; walls[j] = walls[k]; p[j] = p[k]; d[j] = d[k]
                j += 1
    kept = j
    if kept == 0:
        return None
    for k in range(kept):
        c[k] = p[k] - d[k]
        if c[k]:
            any_cts = True
    _ns2t(walls, kept, scale, p)  # p: presentation in ticks of 1/scale s
    if any_cts:
        _t2ns(c, kept, tb_num, tb_den, 0, c)
        _ns2t(c, kept, scale, c)
        for k in range(kept):
            d[k] = p[k] - c[k]
    else:
        for k in range(kept):
            d[k] = p[k]
    sel = _ints(idx, kept)
    keys = []
    for k in range(kept):
        if flags[idx[k]] & key_flag:
            keys.append(PyLong_FromSsize_t(k))
    return sel, _ints(d, kept), _ints(c, kept), keys


cdef int64_t *_take(object seq, Py_ssize_t n) except NULL:
    """The values of ``seq`` in a new C array (free() it), each within MAX_TIME."""
    cdef int64_t *buf = <int64_t *>malloc((n + 1) * sizeof(int64_t))
    cdef Py_ssize_t i
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            buf[i] = seq[i]
            if not -MAX_TIME < buf[i] < MAX_TIME:
                raise _Overflow()
    except OverflowError:
        free(buf)
        raise _Overflow()
    except BaseException:
        free(buf)
        raise
    return buf


def durations(dts, alone=1):
    """See the pure twin."""
    cdef Py_ssize_t n = len(dts), i
    cdef int64_t *d
    cdef int64_t x
    try:
        d = _take(dts, n)
    except _Overflow:
        return _pure.durations(dts, alone)
    try:
        for i in range(n - 1):
            x = d[i + 1] - d[i]
            d[i] = x if x >= 1 else 1
        if n:
            d[n - 1] = d[n - 2] if n > 1 else max(1, alone)
        return _ints(d, n)
    finally:
        free(d)


def presentation(dts, cts, durs):
    """See the pure twin."""
    cdef Py_ssize_t n = len(dts), i
    cdef int64_t *d = NULL
    cdef int64_t *c = NULL
    cdef int64_t *u = NULL
    cdef int64_t lo, hi, s
    if n == 0:
        return 0, 0
    if len(cts) != n or len(durs) != n:
        return _pure.presentation(dts, cts, durs)  # (its zip-like answer)
    try:
        d = _take(dts, n)
        c = _take(cts, n)
        u = _take(durs, n)
    except _Overflow:
        free(d); free(c); free(u)
        return _pure.presentation(dts, cts, durs)
    try:
        lo = d[0] + c[0]
        hi = lo + u[0]
        for i in range(n):
            s = d[i] + c[i]
            if s < lo:
                lo = s
            if s + u[i] > hi:
                hi = s + u[i]
        return lo, hi
    finally:
        free(d); free(c); free(u)


def runs(values):
    """See the pure twin."""
    cdef Py_ssize_t n = len(values), i, k = 0
    cdef int64_t *v
    cdef int64_t *out
    if n == 0:
        return []
    try:
        v = _take(values, n)
    except _Overflow:
        return _pure.runs(values)
    out = <int64_t *>malloc(2 * n * sizeof(int64_t))
    if out == NULL:
        free(v)
        raise MemoryError()
    try:
        out[0] = 1
        out[1] = v[0]
        for i in range(1, n):
            if v[i] == out[2 * k + 1]:
                out[2 * k] += 1
            else:
                k += 1
                out[2 * k] = 1
                out[2 * k + 1] = v[i]
        return _ints(out, 2 * k + 2)
    finally:
        free(v); free(out)


def sample_runs(payload, offset, size, idxs):
    """See the pure twin."""
    cdef Py_ssize_t n = len(idxs), k, i
    cdef long long o, s, run_start = -1, run_end = -1
    cdef list sizes = PyList_New(n)
    cdef list bufs = []
    for k in range(n):
        i = idxs[k]
        o = offset[i]
        s = size[i]
        v = PyLong_FromLongLong(s)
        Py_INCREF(v)
        PyList_SET_ITEM(sizes, k, v)
        if o != run_end:
            if run_end > run_start:
                bufs.append(payload[run_start:run_end])
            run_start = o
        run_end = o + s
    if run_end > run_start:
        bufs.append(payload[run_start:run_end])
    return sizes, bufs
