"""Injected clocks: jobs read time through a Clock so tests can drive it (FakeClock)."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def wall_ns(self) -> int:
        """UTC wall clock, nanoseconds since the epoch (may step)."""
        ...

    def monotonic_ns(self) -> int:
        """A clock that never steps, for measuring intervals."""
        ...


class SystemClock:
    def wall_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock that moves only when told; ``step_wall`` simulates an NTP step."""

    def __init__(self, wall_ns: int = 1_700_000_000 * 10**9, monotonic_ns: int = 10**12) -> None:
        self._wall = wall_ns
        self._mono = monotonic_ns
        self._lock = threading.Lock()

    def wall_ns(self) -> int:
        with self._lock:
            return self._wall

    def monotonic_ns(self) -> int:
        with self._lock:
            return self._mono

    def advance(self, ns: int) -> None:
        with self._lock:
            self._wall += ns
            self._mono += ns

    def step_wall(self, ns: int) -> None:
        with self._lock:
            self._wall += ns
