"""Writer pool: a few threads run every recording camera's writer work, in place of a writer
thread per camera.

A recorder puts packets (or the TS hub's batches) on its camera's bounded queue and
schedules the camera here; a pool thread then drains that queue into the camera's writer.
One thread at most works for a camera at a time, so each camera's packets are written in
order, and a camera with a long queue yields after a bounded number of items, so the others
are served fairly.

Why: with a writer thread per camera, every hand-over woke a thread that then fought hundreds
of others for the GIL. At 500 cameras a quarter of the recording core went to those wake-ups
and GIL hand-offs (futex wake, context switch).

The pool keeps MIN_THREADS threads that are not held: a thread whose current turn has run
for HELD_S (a write stuck on a slow or dead disk) no longer counts, and a new one is started
while work waits, up to MAX_THREADS; a thread idle for IDLE_EXIT_S leaves. So a slow or hung
disk, which holds its cameras' threads, never holds up cameras whose writes can proceed:
they get new threads, as they had threads of their own before.

Why 8, on 2 cores too: the interpreter lock is shared out per thread, and recording shares
it with the node's API and jobs. Measured, 100 cameras under 200 clients downloading clips
kept 1.00 of their recording with 8 threads, 0.82 with 2. Flat out with nothing else to
share with, fewer threads would record more (20 KB packets of 8 cameras into the page cache
on 2 cores: 8 threads 886 MB/s at 1.63 CPU s/GB, 2 threads 1114 MB/s at 1.43), but a
recorder process kept to one core records the same with either (837 and 847 MB/s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

log = logging.getLogger(__name__)

MIN_THREADS = 8  # threads free to write (see the module notes)
MAX_THREADS = 1024  # as many cameras as may wait on their disks at once, and then some
HELD_S = 0.5  # a turn this long is a thread held by its disk, not CPU work
CHECK_S = 0.1  # how often held threads are looked for while work waits
IDLE_EXIT_S = 30.0


class Job(Protocol):
    """A camera's writer work, as the pool sees it."""

    def run_some(self) -> bool:
        """Do a bounded amount of queued work; True if work may remain."""
        ...

    def has_work(self) -> bool: ...


class WriterPool:
    """Threads, started on first use, that run scheduled jobs one job per thread at a time."""

    def __init__(
        self,
        min_threads: int = MIN_THREADS,
        max_threads: int = MAX_THREADS,
        idle_exit_s: float = IDLE_EXIT_S,
    ) -> None:
        if not 1 <= min_threads <= max_threads:
            raise ValueError("a writer pool needs 1 <= min_threads <= max_threads")
        self.min_threads = min_threads
        self.max_threads = max_threads
        self.idle_exit_s = idle_exit_s
        self._cv = threading.Condition()
        self._ready: deque[Job] = deque()
        self._scheduled: set[Any] = set()  # queued or running: never two threads on one job
        self._threads = 0
        self._idle = 0  # threads waiting for work
        self._started = 0  # for thread names
        self._check_armed = False
        self._turns: dict[int, float] = {}  # thread id -> when its current turn began

    @property
    def threads(self) -> int:
        """Threads alive now."""
        with self._cv:
            return self._threads

    def schedule(self, job: Job) -> None:
        """Have ``job.run_some()`` called soon, and again while it has work. Call after putting
        work where the job finds it (the check that ends a job's turn runs under the same
        lock, so work put before this call is never left behind)."""
        with self._cv:
            if job in self._scheduled:
                return
            self._scheduled.add(job)
            self._ready.append(job)
            if self._idle:
                self._cv.notify()
            elif self._threads < self.min_threads:
                self._spawn_locked()
            else:
                self._arm_check_locked()

    def _spawn_locked(self) -> None:
        self._threads += 1
        self._started += 1
        threading.Thread(
            target=self._loop, name=f"vstore-writer-{self._started}", daemon=True
        ).start()

    def _arm_check_locked(self) -> None:
        """Look for held threads in CHECK_S (while work waits and no thread is idle)."""
        if not self._check_armed:
            self._check_armed = True
            t = threading.Timer(CHECK_S, self._check)
            t.daemon = True
            t.start()

    def _check(self) -> None:
        with self._cv:
            self._check_armed = False
            if not self._ready or self._idle:
                return
            now = time.monotonic()
            held = sum(1 for began in self._turns.values() if now - began >= HELD_S)
            free = self._threads - held
            for _ in range(min(self.min_threads - free, len(self._ready))):
                if self._threads >= self.max_threads:
                    break
                self._spawn_locked()
            self._arm_check_locked()

    def _next_job(self, me: int) -> Job | None:
        """The next job, its turn started for thread ``me``; None when this thread should leave
        (idle too long)."""
        with self._cv:
            while not self._ready:
                self._idle += 1
                try:
                    woke = self._cv.wait(self.idle_exit_s)
                finally:
                    self._idle -= 1
                if not woke and not self._ready:
                    self._threads -= 1
                    return None
            self._turns[me] = time.monotonic()
            return self._ready.popleft()

    def _loop(self) -> None:
        me = threading.get_ident()
        while True:
            job = self._next_job(me)
            if job is None:
                return
            try:
                more = job.run_some()
            except BaseException:  # a job handles its own errors; this keeps the thread alive
                log.exception("writer pool: a camera's writer work failed")
                more = False
            with self._cv:
                del self._turns[me]
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
