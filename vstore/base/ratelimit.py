"""A bandwidth cap shared by all of a bulk job's threads (a token bucket), so that tiering,
imports and checks never take the disk or the uplink that live recording needs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_S = 0.1
"""The bucket holds this much time's worth of bytes. A small burst keeps the pace even: with a
one-second burst a 30 MB job at 40 MB/s ran unthrottled from start to end (measured in the
recording-while-tiering benchmark), which is exactly when live recording needs the disk."""


class RateLimiter:
    """At most ``bytes_per_s`` on average, with a burst of ``burst_s`` seconds' worth."""

    def __init__(
        self,
        bytes_per_s: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_s: float = BURST_S,
    ) -> None:
        if bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        if burst_s <= 0:
            raise ValueError("burst must be positive")
        self.bytes_per_s = bytes_per_s
        self._burst = float(bytes_per_s) * burst_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._last = clock()

    def consume(self, n: int) -> None:
        """Block until n bytes may pass (a request larger than the burst waits its share)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self.bytes_per_s)
            self._last = now
            self._tokens -= n  # may go negative: the debt is paid by waiting below
            wait = -self._tokens / self.bytes_per_s if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
