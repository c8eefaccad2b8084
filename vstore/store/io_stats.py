"""Statistics of this process's storage work that a metrics face reads (the engine counts,
it does not export): the latency of footage fsyncs as cumulative histograms, the footage
deleted by reason, and what the last tiering run left for later."""

from __future__ import annotations

import bisect
import threading

# Upper bounds in seconds (Prometheus' default latency buckets, tightened at the low end,
# where a healthy disk's fsyncs fall).
FSYNC_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Counts of observations per bucket (cumulative on reading), their sum and count."""

    def __init__(self, bounds_s: tuple[float, ...]) -> None:
        self.bounds_s = bounds_s
        self._counts = [0] * (len(bounds_s) + 1)  # the last: above every bound
        self._sum_s = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds_s, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum_s += seconds

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """([(upper bound, cumulative count)...] ending with +inf, sum, count)."""
        with self._lock:
            counts, total_s = list(self._counts), self._sum_s
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds_s, float("inf")), counts, strict=True):
            running += n
            out.append((bound, running))
        return out, total_s, running


FSYNC = LatencyHistogram(FSYNC_BUCKETS_S)


class Tally:
    """Events and their bytes per label (say, a deletion's reason), cumulative."""

    def __init__(self) -> None:
        self._by: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def add(self, label: str, nbytes: int) -> None:
        with self._lock:
            n, b = self._by.get(label, (0, 0))
            self._by[label] = (n + 1, b + nbytes)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._by)


class Backlog:
    """(segments, bytes) set by the last run of a job that works through a backlog."""

    def __init__(self) -> None:
        self.value = (0, 0)

    def set(self, segments: int, nbytes: int) -> None:
        self.value = (segments, nbytes)


DELETED = Tally()  # footage segments deleted, by reason (retention's rule, a replacement...)
TIER_BACKLOG = Backlog()  # segments the last tiering run planned and did not move
