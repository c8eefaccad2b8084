"""Injected clocks: jobs read time through a Clock so tests can drive it (FakeClock), and
the judgement of whether the wall clock can be trusted against what it last read."""

import threading
import time
from typing import NamedTuple, Protocol

from vstore.base.timebase import format_duration, format_time


class Clock(Protocol):
    def wall_ns(self) -> int:
        """UTC wall clock, nanoseconds since the epoch (may step)."""
        ...

    def monotonic_ns(self) -> int:
        """A clock that never steps, for measuring intervals."""
        ...

    def boot_ns(self) -> int:
        """Time since boot, suspend included (CLOCK_BOOTTIME): the same for every process
        of one boot, so a store can compare what the wall clock did between two runs."""
        ...

    def boot_id(self) -> str:
        """Names this boot (boot_ns restarts at every boot)."""
        ...


_BOOT_ID: str | None = None


class SystemClock:
    def wall_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def boot_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def boot_id(self) -> str:
        global _BOOT_ID
        if _BOOT_ID is None:
            try:
                with open("/proc/sys/kernel/random/boot_id") as f:
                    _BOOT_ID = f.read().strip()
            except OSError:  # not Linux: the wall clock at boot names it well enough
                _BOOT_ID = str(round((time.time_ns() - self.boot_ns()) / 1e9))
        return _BOOT_ID


class FakeClock:
    """A clock that moves only when told; ``step_wall`` simulates an NTP step."""

    def __init__(self, wall_ns: int = 1_700_000_000 * 10**9, monotonic_ns: int = 10**12) -> None:
        self._wall = wall_ns
        self._mono = monotonic_ns
        self._boot = 0
        self._lock = threading.Lock()

    def boot_ns(self) -> int:
        with self._lock:
            return self._mono

    def boot_id(self) -> str:
        with self._lock:
            return f"fake-boot-{self._boot}"

    def reboot(self, down_ns: int = 0) -> None:
        """A restart of the host: the boot clock starts over, the wall clock moves on."""
        with self._lock:
            self._boot += 1
            self._wall += down_ns
            self._mono = 10**9

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


# --- is the wall clock to be trusted? ---------------------------------------------------------

# How far the wall clock may run from what the boot clock says it should read before it is
# called a step (NTP slews at most 500 ppm; a step of minutes or more is an accident).
MAX_WALL_SKEW_NS = 10 * 60 * 10**9
SLEW_PPM = 1000
# Across a reboot there is no boot clock to compare with: a wall clock more than this past
# the last time the store saw it and past its newest footage is not trusted on its word.
MAX_UNSEEN_NS = 2 * 86400 * 10**9


class ClockMark(NamedTuple):
    """What a store read of the clocks (persisted; see Store.clock_verdict): the wall and
    boot clocks as first read in this boot (the reference every later reading of the boot
    is judged against, so errors never add up run by run), and the latest wall time it
    trusted (what a later boot is judged against)."""

    wall_ns: int
    boot_ns: int
    boot_id: str
    last_wall_ns: int = 0

    def seen_ns(self) -> int:
        return max(self.wall_ns, self.last_wall_ns)


class ClockVerdict(NamedTuple):
    """Whether the wall clock is trusted, and the time to act on: ``now_ns`` is the wall
    clock when trusted, else the latest time it can be shown to be (never later)."""

    trusted: bool
    now_ns: int
    message: str = ""


def judge_wall_clock(
    wall_ns: int,
    boot_ns: int,
    boot_id: str,
    last: ClockMark | None,
    newest_footage_ns: int | None = None,
) -> ClockVerdict:
    """Pure: trust ``wall_ns`` or cap it. In the boot of ``last``, the boot clock says how
    much time really passed, so a wall clock ahead of that by more than the skew allowed
    stepped forward: act on ``last.wall_ns`` plus the time that passed. After a reboot, a
    wall clock that is more than MAX_UNSEEN_NS past both the last time seen and the newest
    footage cannot be told from a step: act on the later of those two. A clock behind is
    trusted (acting on an earlier time only keeps more)."""
    if last is None:
        return ClockVerdict(True, wall_ns)
    if boot_id == last.boot_id and boot_ns >= last.boot_ns:
        elapsed = boot_ns - last.boot_ns
        expected = last.wall_ns + elapsed
        skew = wall_ns - expected
        if skew <= MAX_WALL_SKEW_NS + elapsed * SLEW_PPM // 10**6:
            return ClockVerdict(True, wall_ns)
        return ClockVerdict(
            False,
            expected,
            f"the host clock reads {format_time(wall_ns)}, {format_duration(skew)} ahead of "
            f"the time that passed since this store first read it in this boot "
            f"({format_time(last.wall_ns)}, {format_duration(elapsed)} ago by the boot "
            f"clock): acting on {format_time(expected)} instead",
        )
    seen = max(last.seen_ns(), newest_footage_ns or 0)
    if wall_ns - seen <= MAX_UNSEEN_NS:
        return ClockVerdict(True, wall_ns)
    return ClockVerdict(
        False,
        seen,
        f"the host clock reads {format_time(wall_ns)}, {format_duration(wall_ns - seen)} past "
        f"the last time this store saw it or recorded footage ({format_time(seen)}), across "
        f"a restart where no boot clock can vouch for it: acting on {format_time(seen)}",
    )
