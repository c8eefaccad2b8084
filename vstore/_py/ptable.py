"""Pure-Python twin of ``ext/ptable.pyx``: builds one chunk's packet table.

The table is columnar (all dts, then all cts, sizes, flags, tracks) so that zstandard finds the
regularity of camera timestamps; dts is delta-coded (first value absolute).
Layout, n packets, little-endian: dts_delta i64[n] | cts i32[n] | size u32[n] | flags u8[n] |
track u8[n]  (18 bytes per packet).
"""

from __future__ import annotations

from array import array

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
