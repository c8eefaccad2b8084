"""Pure-Python twin of ``ext/ptable.pyx``: builds one chunk's packet table.

The table is columnar (all dts, then all cts, sizes, flags, tracks) so that zstandard finds the
regularity of camera timestamps; dts is delta-coded (first value absolute).
Layout, n packets, little-endian: dts_delta i64[n] | cts i32[n] | size u32[n] | flags u8[n] |
track u8[n]  (18 bytes per packet).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from vstore._py.nal import NAL_KEY, nal_flags

ROW_BYTES = 18


class PacketTable:
    """Accumulates packet rows for the open chunk; ``pack()`` returns the raw table bytes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._dts = array("q")
        self._cts = array("i")
        self._size = array("I")
        self._flags = array("B")
        self._track = array("B")
        self.payload_bytes = 0

    def __len__(self) -> int:
        return len(self._dts)

    def append(self, dts: int, pts: int, size: int, flags: int, track: int) -> None:
        cts = pts - dts
        if not -(2**31) <= cts < 2**31:
            raise OverflowError("pts - dts does not fit 32 bits")
        self._dts.append(dts)
        self._cts.append(cts)
        self._size.append(size)
        self._flags.append(flags)
        self._track.append(track)
        self.payload_bytes += size

    def pack(self) -> bytes:
        n = len(self._dts)
        deltas = array("q", self._dts)
        for i in range(n - 1, 0, -1):
            deltas[i] -= deltas[i - 1]
        parts = [deltas, self._cts, self._size, self._flags, self._track]
        if array("H", [1]).tobytes() != b"\x01\x00":  # big-endian host
            for p in parts:
                p.byteswap()
        return b"".join(p.tobytes() for p in parts)


FAST_APPENDED = 0
FAST_SLOW = 1

WRAP_33 = 1 << 33  # MPEG-TS timestamps are 33 bits
WRAP_HALF = 1 << 32
NS = 1_000_000_000
# Two tracks' jumps this close (ns) are one jump of the source's clock, seen on each.
SAME_JUMP_NS = NS

# normalise() notes: what happened to a packet's timestamps (the writer counts and reports).
TS_FILLED_DTS = 1  # no dts nor pts: synthesized from the track's last step
TS_FILLED_PTS = 2  # no pts: shown at its dts
TS_WRAPPED = 4  # the 33-bit clock wrapped: the wrap offset grew
TS_JUMPED = 8  # a jump past max_jump (or backwards): rebased to continue, a discontinuity
TS_REORDERED = 16  # a small reorder or repeat: bumped one tick past the last dts
TS_PTS_CLAMPED = 32  # pts far after dts: shown at dts
TS_PTS_UNWRAPPED = 64  # pts on the other side of a 33-bit wrap from its dts


class FastPath:
    """Per-camera timestamp state and normalisation; the compiled twin does the same work.

    ``normalise`` is the whole rule set of docs/design/time.md (fill, unwrap, rebase, keep
    dts strictly increasing) for any packet; ``push`` is its common case (timestamps present
    and increasing, no wrap, not a keyframe, writer started), appending to the packet table
    at once, and answers FAST_SLOW *before* changing any state for anything else.
    """

    def __init__(self, table: PacketTable, video: int, tracks: list[tuple[int, bool, int, int]]):
        self.table = table
        self._acquire: Callable[[], object] | None = None
        self.reset(video, tracks)

    def reset(self, video: int, tracks: list[tuple[int, bool, int, int]]) -> None:
        """Start over with these tracks: (max_jump_ticks, wrap_bits, nal_codec, length_size)
        each; every track's timestamp state is new, enabled and not started; what ``bind``
        set stays, so a caller holding the bound ``write_raw`` keeps the fast path."""
        if not 0 < len(tracks) <= 256:
            raise ValueError("1..256 tracks")
        self.video = video
        self.enabled = True
        self.started = False
        self.chunk_last_vpts = 0
        self.chunk_vdelta = 0
        # The open chunk's longest time between two frames after its keyframe (ticks), and
        # the dts of the frame that ended it: a hole inside a GOP (the writer's T5).
        self.chunk_gap = 0
        self.chunk_gap_end = 0
        # The open chunk's longest time between two packets of a sound track (ticks) and
        # that track: sound lost with the pictures, or sound going on over their hole.
        self.chunk_sound_gap = 0
        self.chunk_sound_track = -1
        self._tracks = [(int(x[0]), bool(x[1]), int(x[2]), int(x[3])) for x in tracks]
        # Each track's time base (num, den), when given: (0, 0) shares no jump.
        self._tb = [(int(x[4]), int(x[5])) if len(x) > 5 else (0, 0) for x in tracks]
        self._state: list[tuple[int | None, int | None, int, int, int]] = [
            (None, None, 0, 0, 1) for _ in tracks
        ]
        # The latest jump of the source's clock: its number, raw step and the shift that
        # continued the first track to see it (ns); each track's last jump number.
        self._jump = (0, 0, 0)
        self._jump_seen = [0] * len(tracks)

    def state(self, t: int) -> tuple[int | None, int | None, int, int, int]:
        """(last_dts or None, last_raw or None, wrap_off, rebase_off, last_delta)."""
        return self._state[t]

    def set_state(
        self,
        t: int,
        last_dts: int | None,
        last_raw: int | None,
        wrap_off: int,
        rebase_off: int,
        last_delta: int,
    ) -> None:
        self._state[t] = (last_dts, last_raw, wrap_off, rebase_off, last_delta)

    def normalise(
        self, t: int, pts: int | None, dts: int | None
    ) -> tuple[int, int, int, int] | None:
        """Track ``t``'s packet on the store's media time line: (dts, pts, notes, jump_ticks),
        and the track's state advanced; None (state unchanged) when it has no timestamp and
        none can be synthesized. ``jump_ticks`` is the raw step of a TS_JUMPED packet."""
        max_jump, wrap_bits, _nc, _ls = self._tracks[t]
        last_dts, last_raw, wrap_off, rebase_off, last_delta = self._state[t]
        notes = 0
        jump = 0
        if dts is None:
            dts = pts
        if dts is None:
            if last_raw is None:
                return None
            dts = last_raw + last_delta - wrap_off
            notes |= TS_FILLED_DTS
        if pts is None:
            pts = dts
            notes |= TS_FILLED_PTS
        raw = dts + wrap_off
        if wrap_bits and last_raw is not None and raw < last_raw - WRAP_HALF:
            wrap_off += WRAP_33
            raw += WRAP_33
            notes |= TS_WRAPPED
        upts = pts + wrap_off
        if wrap_bits:
            if upts < raw - WRAP_HALF:
                upts += WRAP_33
                notes |= TS_PTS_UNWRAPPED
            elif upts > raw + WRAP_HALF:
                upts -= WRAP_33
                notes |= TS_PTS_UNWRAPPED
        ndts = raw + rebase_off
        bump = 0  # ticks added to this packet alone to keep dts strictly increasing
        if last_dts is not None:
            delta = ndts - last_dts
            if delta <= 0 and -delta <= last_delta * 4:
                bump = last_dts + 1 - ndts  # a small reorder or a repeated dts: keep order
                notes |= TS_REORDERED
            elif delta <= 0 or delta > max_jump:
                # A clock step, camera reboot or spliced file: continue media time without
                # a hole (the writer records the raw jump as a discontinuity).
                jump = delta
                if wrap_bits and jump > WRAP_HALF:
                    jump -= WRAP_33  # a step back past 0, as 33-bit timestamps wrap it
                notes |= TS_JUMPED
                rebase_off += self._rebase_step(t, jump, last_dts + last_delta - ndts)
                ndts = raw + rebase_off
                if ndts <= last_dts:  # (the shared shift puts its first packet at or behind
                    bump = last_dts + 1 - ndts  # its last: that one only is bumped past it)
                    notes |= TS_REORDERED
            else:
                last_delta = delta
        ndts += bump
        npts = upts + rebase_off + bump
        if not ndts <= npts <= ndts + 0x7FFFFFFF:
            # pts before dts, or hours after it: not a real reorder delay; show it at dts.
            if npts > ndts:
                notes |= TS_PTS_CLAMPED
            npts = ndts
        self._state[t] = (ndts, raw, wrap_off, rebase_off, last_delta)
        return ndts, npts, notes, jump

    def _rebase_step(self, t: int, jump: int, own: int) -> int:
        """Ticks to add to track ``t``'s rebase at a jump of ``jump`` raw ticks: ``own`` (its
        next packet one step after its last) for the first track to see a jump of the
        source's clock; for the others, the same shift in time, so that sound and pictures
        keep the offset the source gave them (each continued on its own, they came out as
        far apart as their last packets before the jump were)."""
        num, den = self._tb[t]
        if not den:
            return own
        seq, step_ns, shift_ns = self._jump
        jump_ns = jump * num * NS // den
        if self._jump_seen[t] < seq and abs(jump_ns - step_ns) <= SAME_JUMP_NS:
            self._jump_seen[t] = seq
            return int(shift_ns * den // (num * NS))
        self._jump = (seq + 1, jump_ns, own * num * NS // den)
        self._jump_seen[t] = seq + 1
        return own

    def bind(
        self,
        lock: Any,
        stats: Any,
        payload: list,
        slow: Callable[..., None],
        on_full: Callable[[], None],
        max_chunk_bytes: int,
    ) -> None:
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

    def write_raw(
        self,
        track: int,
        pts: int | None,
        dts: int | None,
        is_key: bool,
        data: object,
        wall_ns: int | None = None,
        corrupt: bool = False,
    ) -> None:
        """``CameraWriter.write_raw`` for the ordinary packet; see ``bind``."""
        if not corrupt and type(data) is bytes and self._acquire is not None:
            self._acquire()
            try:
                if self._push(track, pts, dts, is_key, data) == FAST_APPENDED:
                    self._payload.append(data)
                    self._stats.packets += 1
                    self._stats.bytes += len(data)
                    if self.table.payload_bytes >= self._max_chunk:
                        self._on_full()
                    return
            finally:
                self._release()
        self._slow(track, pts, dts, is_key, data, wall_ns, corrupt)

    def push(
        self, t: int, pts: int | None, dts: int | None, is_key: bool, data: object, payload: list
    ) -> int:
        """Take one packet on the fast path, appending ``data`` to ``payload``: FAST_APPENDED
        when taken, FAST_SLOW when it needs the slow path (nothing changed then)."""
        if type(data) is not bytes or self._push(t, pts, dts, is_key, data) != FAST_APPENDED:
            return FAST_SLOW
        payload.append(data)
        return FAST_APPENDED

    def push_many(
        self, items: list[tuple], start: int, payload: list, max_payload: int
    ) -> tuple[int, int, int]:
        """Push ``items[start:]`` (write_raw argument tuples: track, pts, dts, key, data,
        wall_ns, corrupt) while they take the fast path, appending their data to ``payload``.
        Stops before the first one that needs the slow path and after the one that fills the
        chunk to ``max_payload``. Returns (next index, packets appended, bytes appended)."""
        i, n, count, nbytes = start, len(items), 0, 0
        while i < n:
            track, pts, dts, key, data, _wall, corrupt = items[i]
            if corrupt or type(data) is not bytes:
                break
            if self._push(track, pts, dts, key, data) != FAST_APPENDED:
                break
            payload.append(data)
            count += 1
            nbytes += len(data)
            i += 1
            if self.table.payload_bytes >= max_payload:
                break
        return i, count, nbytes

    def _push(self, t: Any, pts: Any, dts: Any, is_key: bool, data: bytes) -> int:
        """``normalise`` of an ordinary packet, appended; FAST_SLOW (state as it was) for
        anything ``normalise`` has a note about, a keyframe, or an unstarted writer."""
        if type(t) is not int or pts is None or dts is None or not self.enabled:
            return FAST_SLOW
        if not 0 <= t < len(self._tracks) or not self.started:
            return FAST_SLOW
        before = self._state[t]
        size = len(data)
        if before[0] is None or (t == self.video and is_key) or not 0 < size <= 0xFFFFFFFF:
            return FAST_SLOW
        ndts, npts, notes, _jump = self.normalise(t, pts, dts)  # type: ignore[misc]
        _mj, _wb, nal_codec, length_size = self._tracks[t]
        if notes or (
            t == self.video and nal_codec >= 0 and nal_flags(data, nal_codec, length_size) & NAL_KEY
        ):
            self._state[t] = before
            return FAST_SLOW
        if t == self.video:
            # The chunk ends one frame after its latest-shown frame: with B-frames that is
            # not the last one in decode order.
            self.chunk_last_vpts = max(self.chunk_last_vpts, npts)
            self.chunk_vdelta = delta = self._state[t][4]
            if delta > self.chunk_gap:
                self.chunk_gap, self.chunk_gap_end = delta, ndts
        elif (delta := self._state[t][4]) > self.chunk_sound_gap:
            self.chunk_sound_gap, self.chunk_sound_track = delta, t
        self.table.append(ndts, npts, size, 0, t)
        return FAST_APPENDED
