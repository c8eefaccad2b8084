"""The writer pool: every camera's items are written in order by one thread at a time, a
camera with a long queue yields to the others, and a failing camera stops only itself."""

from __future__ import annotations

import queue
import threading
import time

from vstore.ingest.writer_pool import WriterPool


class FakeCamera:
    """A job like Recorder's: a queue drained a few items per turn."""

    def __init__(self, name: str, per_turn: int = 4, delay_s: float = 0.0, fail_at=None):
        self.name, self.per_turn, self.delay_s, self.fail_at = name, per_turn, delay_s, fail_at
        self.q: queue.Queue[int] = queue.Queue()
        self.written: list[int] = []
        self.running = 0
        self.overlaps = 0
        self.turns = 0

    def put(self, pool: WriterPool, item: int) -> None:
        self.q.put(item)
        pool.schedule(self)

    def has_work(self) -> bool:
        return not self.q.empty()

    def run_some(self) -> bool:
        self.running += 1
        self.overlaps += self.running > 1
        self.turns += 1
        try:
            for _ in range(self.per_turn):
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    return False
                if item == self.fail_at:
                    raise RuntimeError("disk on fire")
                time.sleep(self.delay_s)
                self.written.append(item)
            return True
        finally:
            self.running -= 1


def wait_until(cond, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_each_cameras_items_are_written_in_order_by_one_thread_at_a_time():
    pool = WriterPool(min_threads=4, max_threads=4)
    cams = [FakeCamera(f"c{i}", delay_s=0.0005) for i in range(6)]

    def feed(cam):
        for k in range(200):
            cam.put(pool, k)

    feeders = [threading.Thread(target=feed, args=(c,)) for c in cams]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    wait_until(lambda: all(len(c.written) == 200 for c in cams))
    for c in cams:
        assert c.written == list(range(200))
        assert c.overlaps == 0


def test_a_camera_with_a_long_queue_yields_to_the_others():
    pool = WriterPool(min_threads=1, max_threads=1)
    busy, quiet = FakeCamera("busy", per_turn=4, delay_s=0.001), FakeCamera("quiet")
    for k in range(400):
        busy.q.put(k)
    pool.schedule(busy)
    wait_until(lambda: len(busy.written) >= 8)
    quiet.put(pool, 1)
    wait_until(lambda: quiet.written == [1])
    # The quiet camera was served long before the busy one finished its 400 items.
    assert len(busy.written) < 200
    wait_until(lambda: len(busy.written) == 400)


def test_one_failing_camera_does_not_stop_the_pool():
    pool = WriterPool(min_threads=1, max_threads=1)
    bad, good = FakeCamera("bad", fail_at=3), FakeCamera("good")
    for k in range(6):
        bad.put(pool, k)
    wait_until(lambda: not bad.has_work())
    for k in range(5):
        good.put(pool, k)
    wait_until(lambda: good.written == list(range(5)))
    # The pool went on with that camera's later items too: dropping them after a failure is
    # the job's decision (Recorder drops and counts them), not the pool's.
    assert bad.written == [0, 1, 2, 4, 5]


def test_cameras_held_by_a_hung_disk_do_not_hold_up_the_others():
    """Threads stuck in a camera's write (an fsync on a dead disk) are replaced: a camera
    whose writes can proceed still gets a thread."""
    pool = WriterPool()
    disk = threading.Event()

    class Hung(FakeCamera):
        def run_some(self) -> bool:
            disk.wait(30)
            return super().run_some()

    hung = [Hung(f"hung{i}") for i in range(12)]
    for cam in hung:
        cam.put(pool, 1)
    well = FakeCamera("well")
    well.put(pool, 1)
    wait_until(lambda: well.written == [1])
    assert pool.threads > len(hung)
    disk.set()
    wait_until(lambda: all(c.written == [1] for c in hung))
