# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""MPEG-TS demuxing, compiled twin of ``vstore/_py/tsdemux.py`` (same behaviour, tested
side by side): the per-transport-packet loop runs in C with per-stream PES buffers, so a
recording costs a memcpy per 188 bytes instead of a demuxer and parser per frame."""

from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

cdef enum:
    TS_PACKET = 188
    SYNC = 0x47
    MAX_SLOTS = 16
    # C constants (a module-level Python name would be a dictionary lookup per TS packet).
    PES_LIMIT_BYTES = 64 * 1024 * 1024
    # A PID's assembly buffer starts at this size and returns to it after a larger PES (a
    # keyframe): kept at its high-water mark it would hold a keyframe's worth of memory per
    # camera for good (~0.4 MB at 4 Mbit/s 1080p, a fifth of a recorder's budget), and the
    # rare regrowth costs a few reallocs per GOP.
    SLOT_KEEP_BYTES = 64 * 1024

STREAM_H264 = 0x1B
STREAM_HEVC = 0x24
STREAM_AAC_ADTS = 0x0F
MAX_PES_BYTES = PES_LIMIT_BYTES  # a PES larger than this is damage, not a frame

cdef int64_t NO_TS = -1


cdef inline int64_t _ts(const uint8_t* b) nogil:
    return (
        (<int64_t>((b[0] >> 1) & 0x07)) << 30
        | (<int64_t>b[1]) << 22
        | (<int64_t>(b[2] >> 1)) << 15
        | (<int64_t>b[3]) << 7
        | (<int64_t>(b[4] >> 1))
    )


cdef struct Slot:
    int pid
    uint8_t* buf
    Py_ssize_t size
    Py_ssize_t cap
    Py_ssize_t length  # declared payload length (0: until the next start)
    int64_t pts
    int64_t dts
    bint rai
    bint corrupt
    bint active
    int cc


cdef class TsDemuxer:
    cdef Slot slots[MAX_SLOTS]
    cdef int nslots
    cdef short slot_of[8192]
    cdef bytes _rest
    cdef public int pmt_pid
    cdef public dict streams
    cdef public dict program
    cdef public int pmt_version
    cdef public long resyncs, cc_errors, tei_errors, oversize

    def __cinit__(self):
        cdef int k
        for k in range(8192):
            self.slot_of[k] = -1
        self.nslots = 0
        for k in range(MAX_SLOTS):
            self.slots[k].buf = NULL
            self.slots[k].cap = 0

    def __init__(self):
        self._rest = b""
        self.pmt_pid = -1
        self.streams = {}
        self.program = {}
        self.pmt_version = -1
        self.resyncs = self.cc_errors = self.tei_errors = self.oversize = 0

    def __dealloc__(self):
        cdef int k
        for k in range(MAX_SLOTS):
            if self.slots[k].buf != NULL:
                free(self.slots[k].buf)
                self.slots[k].buf = NULL

    @property
    def held_bytes(self):
        """Memory the PES assembly buffers hold (their capacity), for memory accounting."""
        cdef Py_ssize_t total = 0
        cdef int k
        for k in range(MAX_SLOTS):
            total += self.slots[k].cap
        return total

    def feed(self, data):
        cdef bytes buf = data if type(data) is bytes else bytes(data)
        cdef bytes rest = self._rest
        cdef bytes head
        cdef Py_ssize_t n = len(buf), need, start = 0
        cdef list out = []
        if rest:
            # Finish the packet split across reads from a small head, rather than copying
            # rest + data (a whole read) each time; a resync or a short read takes the old way.
            need = TS_PACKET - len(rest)
            if 0 < need <= n and (<const uint8_t*>rest)[0] == SYNC and (
                need == n or (<const uint8_t*>buf)[need] == SYNC
            ):
                head = rest + buf[:need]
                self._packet(head, 0, head, out)
                start = need
            else:
                buf = rest + buf
                n = len(buf)
        start = self._run(buf, start, out)
        self._rest = buf[start:]
        return out

    cdef Py_ssize_t _run(self, bytes buf, Py_ssize_t i, list out) except -1:
        """Demux the whole packets of ``buf`` from ``i``; returns where the rest starts."""
        cdef const uint8_t* b = buf
        cdef Py_ssize_t n = len(buf), j
        cdef int k
        while i + TS_PACKET <= n:
            if b[i] != SYNC or (i + TS_PACKET < n and b[i + TS_PACKET] != SYNC):
                j = i + 1
                while j + TS_PACKET <= n and not (
                    b[j] == SYNC and (j + TS_PACKET >= n or b[j + TS_PACKET] == SYNC)
                ):
                    j += 1
                self.resyncs += 1
                for k in range(self.nslots):
                    if self.slots[k].active:
                        self.slots[k].corrupt = True
                i = j
                continue
            self._packet(b, i, buf, out)
            i += TS_PACKET
        return i

    def flush(self):
        cdef list out = []
        cdef int k
        for k in range(self.nslots):
            self._emit(k, out)
        return out

    cdef int _packet(self, const uint8_t* b, Py_ssize_t i, bytes buf, list out) except -1:
        cdef const uint8_t* p = b + i
        cdef int pid = (p[1] & 0x1F) << 8 | p[2]
        cdef bint tei = p[1] & 0x80
        cdef bint pusi = p[1] & 0x40
        cdef int afc = (p[3] >> 4) & 3
        cdef int cc = p[3] & 0x0F
        cdef Py_ssize_t pos = 4
        cdef bint rai = False
        cdef int alen, k
        cdef Slot* s
        if afc & 2:
            alen = p[4]
            if alen and 5 < TS_PACKET:
                rai = (p[5] & 0x40) != 0
            pos += 1 + alen
        cdef bint has_payload = (afc & 1) and pos < TS_PACKET
        if pid == 0:
            if has_payload and pusi:
                self._pat(buf, i + pos, i + TS_PACKET)
            return 0
        if pid == self.pmt_pid:
            if has_payload and pusi:
                self._pmt(buf, i + pos, i + TS_PACKET)
            return 0
        k = self.slot_of[pid]
        if k < 0:
            return 0
        s = &self.slots[k]
        if tei:
            self.tei_errors += 1
        if afc & 1:
            if s.cc >= 0 and cc != ((s.cc + 1) & 0x0F) and cc != s.cc:
                self.cc_errors += 1
                if s.active:
                    s.corrupt = True
            elif s.cc >= 0 and cc == s.cc:
                return 0
            s.cc = cc
        if not has_payload:
            return 0
        if pusi:
            self._emit(k, out)
            self._start(k, p, pos, rai, tei, out)
            return 0
        if not s.active:
            return 0
        if tei:
            s.corrupt = True
        self._append(s, p + pos, TS_PACKET - pos)
        if s.size > PES_LIMIT_BYTES:
            self.oversize += 1
            s.active = False
            s.size = 0
            free(s.buf)  # damage, not a frame: do not keep 64 MiB for it
            s.buf = NULL
            s.cap = 0
        elif s.length and s.size >= s.length:
            self._emit(k, out)
        return 0

    cdef int _append(self, Slot* s, const uint8_t* src, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        cdef uint8_t* nb
        if s.size + n > s.cap:
            cap = s.cap * 2 if s.cap else SLOT_KEEP_BYTES
            while cap < s.size + n:
                cap *= 2
            nb = <uint8_t*>realloc(s.buf, cap)
            if nb == NULL:
                raise MemoryError()
            s.buf = nb
            s.cap = cap
        memcpy(s.buf + s.size, src, n)
        s.size += n
        return 0

    cdef int _start(
        self, int k, const uint8_t* p, Py_ssize_t pos, bint rai, bint bad, list out
    ) except -1:
        cdef Slot* s = &self.slots[k]
        cdef int plen, flags, hlen
        cdef Py_ssize_t start, length
        s.active = False
        s.size = 0
        if TS_PACKET - pos < 9 or p[pos] != 0 or p[pos + 1] != 0 or p[pos + 2] != 1:
            return 0
        plen = p[pos + 4] << 8 | p[pos + 5]
        flags = p[pos + 7] >> 6
        hlen = p[pos + 8]
        start = pos + 9 + hlen
        if start > TS_PACKET:
            return 0
        s.pts = s.dts = NO_TS
        if flags & 2 and hlen >= 5:
            s.pts = _ts(p + pos + 9)
            s.dts = s.pts
            if flags == 3 and hlen >= 10:
                s.dts = _ts(p + pos + 14)
        length = plen - 3 - hlen if plen else 0
        s.length = length if length > 0 else 0
        s.rai = rai
        s.corrupt = bad
        s.active = True
        self._append(s, p + start, TS_PACKET - start)
        if s.length and s.size >= s.length:
            self._emit(k, out)
        return 0

    cdef int _emit(self, int k, list out) except -1:
        cdef Slot* s = &self.slots[k]
        cdef Py_ssize_t n
        if not s.active:
            return 0
        s.active = False
        n = s.size
        if s.length and n > s.length:
            n = s.length
        s.size = 0
        if n > 0:
            out.append((
                s.pid,
                None if s.pts == NO_TS else s.pts,
                None if s.dts == NO_TS else s.dts,
                bool(s.rai),
                (<char*>s.buf)[:n],
                bool(s.corrupt),
            ))
        if s.cap > SLOT_KEEP_BYTES:
            free(s.buf)
            s.buf = NULL
            s.cap = 0
        return 0

    cdef object _section(self, bytes buf, Py_ssize_t pos, Py_ssize_t end):
        cdef const uint8_t* b = buf
        cdef Py_ssize_t s = pos + 1 + b[pos]
        cdef Py_ssize_t length, send
        if s + 8 > end:
            return None
        length = (b[s + 1] & 0x0F) << 8 | b[s + 2]
        send = s + 3 + length - 4
        if send > end or length < 9:
            return None
        return s, send, b[s + 5]

    cdef int _pat(self, bytes buf, Py_ssize_t pos, Py_ssize_t end) except -1:
        cdef const uint8_t* b = buf
        cdef Py_ssize_t s, send, j
        cdef int program, pid
        sec = self._section(buf, pos, end)
        if sec is None or b[sec[0]] != 0x00:
            return 0
        s, send = sec[0], sec[1]
        j = s + 8
        while j + 4 <= send:
            program = b[j] << 8 | b[j + 1]
            pid = (b[j + 2] & 0x1F) << 8 | b[j + 3]
            if program != 0:
                self.pmt_pid = pid
                return 0
            j += 4
        return 0

    cdef int _pmt(self, bytes buf, Py_ssize_t pos, Py_ssize_t end) except -1:
        cdef const uint8_t* b = buf
        cdef Py_ssize_t s, send, j
        cdef int ver, info_len, stype, pid, es_len, k
        sec = self._section(buf, pos, end)
        if sec is None or b[sec[0]] != 0x02:
            return 0
        s, send, ver = sec
        if ver == self.pmt_version:
            return 0
        info_len = (b[s + 10] & 0x0F) << 8 | b[s + 11]
        j = s + 12 + info_len
        program = {}
        while j + 5 <= send:
            stype = b[j]
            pid = (b[j + 1] & 0x1F) << 8 | b[j + 2]
            es_len = (b[j + 3] & 0x0F) << 8 | b[j + 4]
            program[pid] = stype
            j += 5 + es_len
        self.program = program
        self.streams = {
            p: t for p, t in program.items() if t in (STREAM_H264, STREAM_HEVC, STREAM_AAC_ADTS)
        }
        self.pmt_version = ver
        # Re-map the slots: streams that stay keep their state (and partial PES).
        for k in range(self.nslots):
            if self.slots[k].pid not in self.streams:
                self.slot_of[self.slots[k].pid] = -1
                self.slots[k].active = False
                self.slots[k].pid = -1
        for pid in self.streams:
            if self.slot_of[pid] >= 0:
                continue
            for k in range(MAX_SLOTS):
                if k >= self.nslots or self.slots[k].pid == -1:
                    break
            else:
                continue  # more streams than slots: the extra ones are not assembled
            if k >= self.nslots:
                self.nslots = k + 1
            self.slots[k].pid = pid
            self.slots[k].size = 0
            self.slots[k].active = False
            self.slots[k].corrupt = False
            self.slots[k].cc = -1
            self.slot_of[pid] = k
        return 0
