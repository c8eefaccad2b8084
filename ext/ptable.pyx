# cython: boundscheck=False, wraparound=False
"""Compiled twin of ``vstore/_py/ptable.py``: the open chunk's packet table.

Rows are appended into growable C arrays, so the per-packet path creates no Python objects;
``pack()`` emits the columnar layout documented in docs/design/segment_format.md.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

ROW_BYTES = 18


cdef class PacketTable:
    cdef int64_t *_dts
    cdef int32_t *_cts
    cdef uint32_t *_size
    cdef uint8_t *_flags
    cdef uint8_t *_track
    cdef Py_ssize_t _n, _cap
    cdef public long long payload_bytes

    def __cinit__(self):
        self._n = 0
        self._cap = 0
        self.payload_bytes = 0

    def __dealloc__(self):
        free(self._dts); free(self._cts); free(self._size); free(self._flags); free(self._track)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self._cap * 2 if self._cap else 256
        cdef void *a = realloc(self._dts, cap * sizeof(int64_t))
        if a == NULL: raise MemoryError()
        self._dts = <int64_t *>a
        a = realloc(self._cts, cap * sizeof(int32_t))
        if a == NULL: raise MemoryError()
        self._cts = <int32_t *>a
        a = realloc(self._size, cap * sizeof(uint32_t))
        if a == NULL: raise MemoryError()
        self._size = <uint32_t *>a
        a = realloc(self._flags, cap)
        if a == NULL: raise MemoryError()
        self._flags = <uint8_t *>a
        a = realloc(self._track, cap)
        if a == NULL: raise MemoryError()
        self._track = <uint8_t *>a
        self._cap = cap
        return 0

    def reset(self):
        self._n = 0
        self.payload_bytes = 0

    def __len__(self):
        return self._n

    cpdef append(self, int64_t dts, int64_t pts, uint32_t size, uint8_t flags, uint8_t track):
        cdef int64_t cts = pts - dts
        if cts < -2147483648 or cts > 2147483647:
            raise OverflowError("pts - dts does not fit 32 bits")
        if self._n == self._cap:
            self._grow()
        self._dts[self._n] = dts
        self._cts[self._n] = <int32_t>cts
        self._size[self._n] = size
        self._flags[self._n] = flags
        self._track[self._n] = track
        self._n += 1
        self.payload_bytes += size

    def pack(self):
        cdef Py_ssize_t n = self._n, i
        out = bytearray(n * 18)
        if n == 0:
            return bytes(out)
        cdef unsigned char[::1] buf = out
        cdef unsigned char *p = &buf[0]
        cdef int64_t *d = <int64_t *>p
        # Little-endian hosts only (x86_64, aarch64); the pure twin handles the others.
        with nogil:
            d[0] = self._dts[0]
            for i in range(1, n):
                d[i] = self._dts[i] - self._dts[i - 1]
            memcpy(p + 8 * n, self._cts, 4 * n)
            memcpy(p + 12 * n, self._size, 4 * n)
            memcpy(p + 16 * n, self._flags, n)
            memcpy(p + 17 * n, self._track, n)
        return bytes(out)
