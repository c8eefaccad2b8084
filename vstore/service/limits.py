"""Per-principal limits: a request rate (token bucket) and concurrent exports, so one client
cannot starve the others or the recorders."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TooMany(Exception):
    """Over a limit: retry after ``retry_after_s`` (429 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens, self.at = tokens, at


class Limits:
    """Request rate and concurrent exports per principal name. ``settings`` gives
    ``(rate_per_s, max_exports)`` as configured now: a reload of the configuration counts
    from the next request on."""

    def __init__(self, settings: Callable[[], tuple[float, int]]) -> None:
        self._settings = settings
        self._buckets: dict[str, _Bucket] = {}
        self._exports: dict[str, int] = {}
        self._lock = threading.Lock()

    def request(self, who: str) -> None:
        """Take one request from ``who``'s allowance, or raise TooMany."""
        now = time.monotonic()
        rate_per_s = self._settings()[0]
        burst = 2 * rate_per_s
        with self._lock:
            b = self._buckets.get(who)
            if b is None:
                if len(self._buckets) > 10_000:  # bounded: forget the idle ones
                    self._buckets = {k: v for k, v in self._buckets.items() if now - v.at < 60.0}
                b = self._buckets[who] = _Bucket(burst, now)
            b.tokens = min(burst, b.tokens + (now - b.at) * rate_per_s)
            b.at = now
            if b.tokens < 1.0:
                wait = (1.0 - b.tokens) / rate_per_s
                raise TooMany(f"more than {rate_per_s:g} requests per second", wait)
            b.tokens -= 1.0

    def begin_export(self, who: str) -> None:
        max_exports = self._settings()[1]
        with self._lock:
            n = self._exports.get(who, 0)
            if n >= max_exports:
                raise TooMany(
                    f"{max_exports} downloads already running for {who}; wait for one to finish",
                    1.0,
                )
            self._exports[who] = n + 1

    def end_export(self, who: str) -> None:
        with self._lock:
            n = self._exports.get(who, 1) - 1
            if n <= 0:
                self._exports.pop(who, None)
            else:
                self._exports[who] = n


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
