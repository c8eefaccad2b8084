"""An upload bandwidth cap shared by all concurrent uploads (a token bucket), so tiering
never takes the disk or the uplink that live recording needs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``bytes_per_s`` on average, with a burst of one second's worth."""

    def __init__(
        self,
        bytes_per_s: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        self.bytes_per_s = bytes_per_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(bytes_per_s)
        self._last = clock()

    def consume(self, n: int) -> None:
        """Block until n bytes may pass (a request larger than the burst waits its share)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.bytes_per_s), self._tokens + (now - self._last) * self.bytes_per_s
            )
            self._last = now
            self._tokens -= n  # may go negative: the debt is paid by waiting below
            wait = -self._tokens / self.bytes_per_s if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
