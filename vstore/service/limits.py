"""Per-principal limits: a request rate (token bucket) and concurrent exports, so one client
cannot starve the others or the recorders."""

from __future__ import annotations

import math
import threading
import time


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
    """Request rate and concurrent exports per principal name."""

    def __init__(self, rate_per_s: float, max_exports: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = 2 * rate_per_s
        self.max_exports = max_exports
        self._buckets: dict[str, _Bucket] = {}
        self._exports: dict[str, int] = {}
        self._lock = threading.Lock()

    def request(self, who: str) -> None:
        """Take one request from ``who``'s allowance, or raise TooMany."""
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(who)
            if b is None:
                if len(self._buckets) > 10_000:  # bounded: forget the idle ones
                    self._buckets = {k: v for k, v in self._buckets.items() if now - v.at < 60.0}
                b = self._buckets[who] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate_per_s)
            b.at = now
            if b.tokens < 1.0:
                wait = (1.0 - b.tokens) / self.rate_per_s
                raise TooMany(f"more than {self.rate_per_s:g} requests per second", wait)
            b.tokens -= 1.0

    def begin_export(self, who: str) -> None:
        with self._lock:
            n = self._exports.get(who, 0)
            if n >= self.max_exports:
                raise TooMany(
                    f"{self.max_exports} downloads already running for {who}; wait for one to "
                    "finish",
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
