"""Pure-Python twin of ``ext/ptable.pyx``: builds one chunk's packet table.

The table is columnar (all dts, then all cts, sizes, flags, tracks) so that zstandard finds the
regularity of camera timestamps; dts is delta-coded (first value absolute).
Layout, n packets, little-endian: dts_delta i64[n] | cts i32[n] | size u32[n] | flags u8[n] |
track u8[n]  (18 bytes per packet).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

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


class FastPath:
    """Pure twin of the compiled FastPath: it holds the same per-track timestamp state but
    leaves every packet to the Python slow path (``push`` always answers FAST_SLOW), which
    is the reference behaviour the compiled fast path reproduces for ordinary packets."""

    def __init__(self, table: PacketTable, video: int, tracks: list[tuple[int, bool, int, int]]):
        self.table = table
        self.reset(video, tracks)

    def reset(self, video: int, tracks: list[tuple[int, bool, int, int]]) -> None:
        """Start over with these tracks (see the compiled twin)."""
        if not 0 < len(tracks) <= 256:
            raise ValueError("1..256 tracks")
        self.video = video
        self.enabled = True
        self.started = False
        self.chunk_last_vpts = 0
        self.chunk_vdelta = 0
        self._state: list[tuple[int | None, int | None, int, int, int]] = [
            (None, None, 0, 0, 1) for _ in tracks
        ]

    def state(self, t: int) -> tuple[int | None, int | None, int, int, int]:
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

    def bind(
        self,
        lock: object,
        stats: object,
        payload: list,
        slow: Callable[..., None],
        on_full: Callable[[], None],
        max_chunk_bytes: int,
    ) -> None:
        """Same interface as the compiled twin's; here every packet goes to ``slow``."""
        self._slow = slow

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
        """The pure twin takes no packet on the fast path: every one goes the slow way."""
        self._slow(track, pts, dts, is_key, data, wall_ns, corrupt)

    def push(
        self, t: int, pts: int | None, dts: int | None, is_key: bool, data: object, payload: list
    ) -> int:
        """The pure twin takes no packet on the fast path: every one goes the slow way."""
        return FAST_SLOW

    def push_many(
        self, items: list[tuple], start: int, payload: list, max_payload: int
    ) -> tuple[int, int, int]:
        """The pure twin takes no packet on the fast path: every one goes the slow way."""
        return start, 0, 0
