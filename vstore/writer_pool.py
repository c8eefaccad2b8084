"""Writer pool: a few threads run every recording camera's writer work, in place of a writer
thread per camera.

A recorder puts packets (or the TS hub's batches) on its camera's bounded queue and
schedules the camera here; a pool thread then drains that queue into the camera's writer.
One thread at most works for a camera at a time, so each camera's packets are written in
order, and a camera with a long queue yields after a bounded number of items, so the others
are served fairly.

Why: with a writer thread per camera, every hand-over woke a thread that then fought about
100 others for the GIL. At 100 cameras a third of the recording process's CPU went to those
wake-ups and GIL hand-offs (futex wake, context switch). A pool of WRITER_THREADS threads
still lets that many cameras wait on an fsync at once while the others are written.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Protocol

log = logging.getLogger(__name__)

WRITER_THREADS = 8  # cameras whose writers can wait on the disk (fsync) at the same time


class Job(Protocol):
    """A camera's writer work, as the pool sees it."""

    def run_some(self) -> bool:
        """Do a bounded amount of queued work; True if work may remain."""
        ...

    def has_work(self) -> bool: ...


class WriterPool:
    """Threads, started on first use, that run scheduled jobs one job per thread at a time."""

    def __init__(self, threads: int = WRITER_THREADS) -> None:
        if threads < 1:
            raise ValueError("a writer pool needs at least one thread")
        self.threads = threads
        self._cv = threading.Condition()
        self._ready: deque[Job] = deque()
        self._scheduled: set[Any] = set()  # queued or running: never two threads on one job
        self._workers: list[threading.Thread] = []

    def schedule(self, job: Job) -> None:
        """Have ``job.run_some()`` called soon, and again while it has work. Call after putting
        work where the job finds it (the check that ends a job's turn runs under the same
        lock, so work put before this call is never left behind)."""
        with self._cv:
            if job in self._scheduled:
                return
            self._scheduled.add(job)
            self._ready.append(job)
            if len(self._workers) < self.threads:
                t = threading.Thread(
                    target=self._loop, name=f"vstore-writer-{len(self._workers)}", daemon=True
                )
                self._workers.append(t)
                t.start()
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._ready:
                    self._cv.wait()
                job = self._ready.popleft()
            try:
                more = job.run_some()
            except BaseException:  # a job handles its own errors; this keeps the thread alive
                log.exception("writer pool: a camera's writer work failed")
                more = False
            with self._cv:
                if more or job.has_work():
                    self._ready.append(job)  # to the back: the other cameras come first
                    self._cv.notify()
                else:
                    self._scheduled.discard(job)


_shared: WriterPool | None = None
_shared_lock = threading.Lock()


def shared() -> WriterPool:
    """The process's pool (one for every recorder of every store)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WriterPool()
        return _shared
