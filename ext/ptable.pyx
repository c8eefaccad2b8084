# cython: boundscheck=False, wraparound=False
"""Compiled twin of ``vstore/_py/ptable.py``: the open chunk's packet table.

Rows are appended into growable C arrays, so the per-packet path creates no Python objects;
``pack()`` emits the columnar layout documented in docs/design/segment_format.md.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
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
        # A few KiB at most: the GIL stays held (see nal_flags on why a short release costs).
        d[0] = self._dts[0]
        for i in range(1, n):
            d[i] = self._dts[i] - self._dts[i - 1]
        memcpy(p + 8 * n, self._cts, 4 * n)
        memcpy(p + 12 * n, self._size, 4 * n)
        memcpy(p + 16 * n, self._flags, n)
        memcpy(p + 17 * n, self._track, n)
        return bytes(out)


from _nalscan cimport NAL_KEY, scan_flags

cdef enum:
    MAX_TRACKS = 256

cdef int64_t WRAP_HALF = (<int64_t>1) << 32
NS = 1_000_000_000
SAME_JUMP_NS = NS  # (the pure twin's, tested)

# push() results: the packet was appended, or the Python slow path must handle it.
FAST_APPENDED = 0
FAST_SLOW = 1

WRAP_33 = 1 << 33
# normalise() notes (the same values as the pure twin's; tested).
TS_FILLED_DTS = 1
TS_FILLED_PTS = 2
TS_WRAPPED = 4
TS_JUMPED = 8
TS_REORDERED = 16
TS_PTS_CLAMPED = 32
TS_PTS_UNWRAPPED = 64


cdef class FastPath:
    """Per-camera timestamp state plus the common case of ``CameraWriter.write_raw``.

    It owns each track's timestamp state (the Python slow path reads and writes it through
    ``state``/``set_state``), and ``push`` appends an ordinary packet (timestamps present and
    increasing, no wrap, not a keyframe, writer started) to the packet table without creating
    a Python object. Anything else returns FAST_SLOW *before* changing any state.
    """
    cdef PacketTable table
    cdef int ntracks, video
    cdef int64_t last_dts[MAX_TRACKS]
    cdef int64_t last_raw[MAX_TRACKS]
    cdef int64_t wrap_off[MAX_TRACKS]
    cdef int64_t rebase_off[MAX_TRACKS]
    cdef int64_t last_delta[MAX_TRACKS]
    cdef int64_t max_jump[MAX_TRACKS]
    cdef bint has_last[MAX_TRACKS]
    cdef bint wrap_bits[MAX_TRACKS]
    cdef int nal_codec[MAX_TRACKS]
    cdef int length_size[MAX_TRACKS]
    cdef int64_t tb_num[MAX_TRACKS]
    cdef int64_t tb_den[MAX_TRACKS]
    cdef int64_t jump_seen[MAX_TRACKS]
    cdef object _jump
    cdef public bint enabled
    cdef public bint started
    cdef public long long chunk_last_vpts
    cdef public long long chunk_vdelta
    # The open chunk's longest time between two frames after its keyframe (ticks), and the
    # dts of the frame that ended it: a hole inside a GOP (the writer's T5).
    cdef public long long chunk_gap
    cdef public long long chunk_gap_end
    # The open chunk's longest time between two packets of a sound track (ticks) and that
    # track: sound lost with the pictures, or sound going on over their hole.
    cdef public long long chunk_sound_gap
    cdef public int chunk_sound_track
    # bind(): what write_raw needs to be a whole CameraWriter.write_raw for ordinary packets.
    cdef object _acquire, _release, _stats, _slow, _on_full
    cdef list _payload
    cdef long long _max_chunk

    def __init__(self, PacketTable table, int video, list tracks):
        """tracks: (max_jump_ticks, wrap_bits, nal_codec, length_size) per track."""
        self.table = table
        self.reset(video, tracks)

    def reset(self, int video, list tracks):
        """Start over with these tracks (a writer's new run): every track's timestamp state
        is new, enabled and not started; what ``bind`` set stays, so a caller holding the
        bound ``write_raw`` keeps the fast path."""
        cdef int i
        if not 0 < len(tracks) <= MAX_TRACKS:
            raise ValueError("1..256 tracks")
        self.ntracks = len(tracks)
        self.video = video
        self.enabled = True
        self.started = False
        self.chunk_last_vpts = 0
        self.chunk_vdelta = 0
        self.chunk_gap = 0
        self.chunk_gap_end = 0
        self.chunk_sound_gap = 0
        self.chunk_sound_track = -1
        self._jump = (0, 0, 0)
        for i in range(self.ntracks):
            mj, wb, nc, ls = tracks[i][:4]
            self.tb_num[i], self.tb_den[i] = tracks[i][4:6] if len(tracks[i]) > 5 else (0, 0)
            self.jump_seen[i] = 0
            self.max_jump[i] = mj
            self.wrap_bits[i] = wb
            self.nal_codec[i] = nc
            self.length_size[i] = ls
            self.has_last[i] = False
            self.last_dts[i] = 0
            self.last_raw[i] = 0
            self.wrap_off[i] = 0
            self.rebase_off[i] = 0
            self.last_delta[i] = 1

    cdef int64_t _rebase_step(self, int t, int64_t jump, int64_t own) except? -1:
        """The pure twin's ``_rebase_step`` (a jump's shift shared by every track), in
        Python integers: it runs once a jump."""
        num, den = <object>self.tb_num[t], <object>self.tb_den[t]
        if not den:
            return own
        seq, step_ns, shift_ns = self._jump
        jump_ns = <object>jump * num * NS // den
        if self.jump_seen[t] < seq and abs(jump_ns - step_ns) <= SAME_JUMP_NS:
            self.jump_seen[t] = seq
            return shift_ns * den // (num * NS)
        self._jump = (seq + 1, jump_ns, <object>own * num * NS // den)
        self.jump_seen[t] = seq + 1
        return own

    def state(self, int t):
        """(last_dts or None, last_raw or None, wrap_off, rebase_off, last_delta)."""
        if self.has_last[t]:
            return (self.last_dts[t], self.last_raw[t], self.wrap_off[t], self.rebase_off[t],
                    self.last_delta[t])
        return (None, None, self.wrap_off[t], self.rebase_off[t], self.last_delta[t])

    def set_state(self, int t, last_dts, last_raw, int64_t wrap_off, int64_t rebase_off,
                  int64_t last_delta):
        self.has_last[t] = last_dts is not None
        if last_dts is not None:
            self.last_dts[t] = last_dts
            self.last_raw[t] = last_raw
        self.wrap_off[t] = wrap_off
        self.rebase_off[t] = rebase_off
        self.last_delta[t] = last_delta

    def normalise(self, int t, pts, dts):
        """Track ``t``'s packet on the store's media time line: (dts, pts, notes, jump_ticks),
        the track's state advanced; None (state unchanged) when it has no timestamp and none
        can be synthesized. The same rules, in the same order, as the pure twin's."""
        cdef int64_t d, p, raw, upts, ndts, npts, delta, bump = 0, jump = 0
        cdef int64_t wrap_off, rebase_off, last_delta
        cdef int notes = 0
        if not 0 <= t < self.ntracks:
            raise IndexError(t)
        wrap_off = self.wrap_off[t]
        rebase_off = self.rebase_off[t]
        last_delta = self.last_delta[t]
        if dts is None:
            dts = pts
        if dts is None:
            if not self.has_last[t]:
                return None
            d = self.last_raw[t] + last_delta - wrap_off
            notes |= 1
        else:
            d = dts
        if pts is None:
            p = d
            notes |= 2
        else:
            p = pts
        raw = d + wrap_off
        if self.wrap_bits[t] and self.has_last[t] and raw < self.last_raw[t] - WRAP_HALF:
            wrap_off += (<int64_t>1) << 33
            raw += (<int64_t>1) << 33
            notes |= 4
        upts = p + wrap_off
        if self.wrap_bits[t]:
            if upts < raw - WRAP_HALF:
                upts += (<int64_t>1) << 33
                notes |= 64
            elif upts > raw + WRAP_HALF:
                upts -= (<int64_t>1) << 33
                notes |= 64
        ndts = raw + rebase_off
        if self.has_last[t]:
            delta = ndts - self.last_dts[t]
            if delta <= 0 and -delta <= last_delta * 4:
                bump = self.last_dts[t] + 1 - ndts
                notes |= 16
            elif delta <= 0 or delta > self.max_jump[t]:
                jump = delta
                if self.wrap_bits[t] and jump > WRAP_HALF:
                    jump -= (<int64_t>1) << 33  # (a step back past 0, as 33 bits wrap it)
                notes |= 8
                rebase_off += self._rebase_step(t, jump, self.last_dts[t] + last_delta - ndts)
                ndts = raw + rebase_off
                if ndts <= self.last_dts[t]:
                    bump = self.last_dts[t] + 1 - ndts
                    notes |= 16
            else:
                last_delta = delta
        ndts += bump
        npts = upts + rebase_off + bump
        if not (ndts <= npts and npts <= ndts + 0x7FFFFFFF):
            if npts > ndts:
                notes |= 32
            npts = ndts
        self.has_last[t] = True
        self.last_dts[t] = ndts
        self.last_raw[t] = raw
        self.wrap_off[t] = wrap_off
        self.rebase_off[t] = rebase_off
        self.last_delta[t] = last_delta
        return ndts, npts, notes, jump

    def bind(self, lock, stats, list payload, slow, on_full, long long max_chunk_bytes):
        """Let ``write_raw`` stand in for ``CameraWriter.write_raw``: it takes ``lock``,
        appends an ordinary packet to ``payload``, counts it in ``stats``, calls ``on_full()``
        when the chunk reaches ``max_chunk_bytes``, and hands anything else to ``slow`` (the
        writer's own write_raw) with the lock released."""
        self._acquire = lock.acquire
        self._release = lock.release
        self._stats = stats
        self._payload = payload
        self._slow = slow
        self._on_full = on_full
        self._max_chunk = max_chunk_bytes

    def write_raw(self, track, pts, dts, is_key, data, wall_ns=None, corrupt=False):
        """``CameraWriter.write_raw`` without a Python frame for the ordinary packet (a third
        of the per-packet cost with 1 KB packets); see ``bind``."""
        if not corrupt and type(data) is bytes and self._acquire is not None:
            self._acquire()
            try:
                if self._push(track, pts, dts, is_key, <bytes>data) == 0:
                    self._payload.append(data)
                    stats = self._stats
                    stats.packets += 1
                    stats.bytes += PyBytes_GET_SIZE(<bytes>data)
                    if self.table.payload_bytes >= self._max_chunk:
                        self._on_full()
                    return None
            finally:
                self._release()
        return self._slow(track, pts, dts, is_key, data, wall_ns, corrupt)

    def push(self, track, pts, dts, bint is_key, data, list payload):
        """Take one ``write_raw`` packet on the fast path, appending ``data`` to ``payload``:
        0 when taken, 1 when it needs the slow path (nothing changed then)."""
        if type(data) is not bytes or self._push(track, pts, dts, is_key, <bytes>data) != 0:
            return 1
        payload.append(data)
        return 0

    def push_many(self, list items, Py_ssize_t start, list payload, long long max_payload):
        """Push ``items[start:]`` (write_raw argument tuples: track, pts, dts, key, data,
        wall_ns, corrupt) while they take the fast path, appending their data to ``payload``.
        Stops before the first one that needs the slow path and after the one that fills the
        chunk to ``max_payload``. Returns (next index, packets appended, bytes appended)."""
        cdef Py_ssize_t i = start, n = len(items)
        cdef long long cnt = 0, nbytes = 0
        cdef tuple it
        while i < n:
            it = <tuple>items[i]
            data = it[4]
            if it[6] or type(data) is not bytes:
                break
            if self._push(it[0], it[1], it[2], it[3], <bytes>data) != 0:
                break
            payload.append(data)
            cnt += 1
            nbytes += len(<bytes>data)
            i += 1
            if self.table.payload_bytes >= max_payload:
                break
        return i, cnt, nbytes

    cdef int _push(self, object track, object pts, object dts, bint is_key, bytes data) except -1:
        # bytes only (the callers check): its buffer is read in place, with no buffer-protocol
        # round trip, and the GIL is kept: the scan stops at the first slice header.
        cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef int64_t p, d, raw, upts, ndts, delta, npts
        cdef Py_ssize_t size
        cdef int bits, t
        if type(track) is not int or pts is None or dts is None or not self.enabled:
            return 1
        if not 0 <= track < self.ntracks:
            return 1
        t = track
        if not self.started or not self.has_last[t]:
            return 1
        if t == self.video and is_key:
            return 1
        size = PyBytes_GET_SIZE(data)
        if size == 0 or size > 0xFFFFFFFF:
            return 1
        p = pts
        d = dts
        raw = d + self.wrap_off[t]
        if self.wrap_bits[t] and raw < self.last_raw[t] - WRAP_HALF:
            return 1
        upts = p + self.wrap_off[t]
        if self.wrap_bits[t] and (upts < raw - WRAP_HALF or upts > raw + WRAP_HALF):
            return 1
        ndts = raw + self.rebase_off[t]
        delta = ndts - self.last_dts[t]
        if delta <= 0 or delta > self.max_jump[t]:
            return 1
        npts = upts + self.rebase_off[t]
        if npts < ndts:
            npts = ndts
        if npts - ndts > 2147483647:
            return 1
        if t == self.video:
            if self.nal_codec[t] >= 0:
                bits = scan_flags(buf, size, self.nal_codec[t], self.length_size[t])
                if bits & NAL_KEY:
                    return 1
            # The chunk ends one frame after its latest-shown frame: with B-frames that is
            # not the last one in decode order.
            if npts > self.chunk_last_vpts:
                self.chunk_last_vpts = npts
            self.chunk_vdelta = delta
            if delta > self.chunk_gap:
                self.chunk_gap = delta
                self.chunk_gap_end = ndts
        elif delta > self.chunk_sound_gap:
            self.chunk_sound_gap = delta
            self.chunk_sound_track = t
        self.last_dts[t] = ndts
        self.last_raw[t] = raw
        self.last_delta[t] = delta
        self.table.append(ndts, npts, <uint32_t>size, 0, t)
        return 0
