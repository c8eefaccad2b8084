"""A recorder's freed GOP buffers go back to the OS: glibc keeps memory freed inside a
thread's arena (counted in RSS) until malloc_trim returns it (vstore.base.heap)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import threading
    from vstore.base import heap

    def rss_mb():
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmRSS"))
        return int(line.split()[1]) // 1024

    kept = []

    def writer():
        # 200 MB of 20 KB packets from a thread's arena; one in ten outlives the rest (the
        # next GOP's), so the freed memory is holes, which glibc never returns by itself.
        bufs = [bytes([i % 256]) * 20_000 for i in range(10_000)]
        kept.extend(bufs[::10])

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    before = rss_mb()
    ok = heap.release_free_memory()
    print(before, rss_mb(), ok)
    """
)


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018 - probing for the symbol
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc only")
def test_freed_packet_memory_kept_by_the_allocator_returns_to_the_os():
    r = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, ok = r.stdout.split()
    assert ok == "True"
    assert int(before) > 150  # the holes were still counted in RSS
    assert int(after) < int(before) - 100  # and were handed back


def test_a_recording_process_keeps_the_gc_off_the_packet_path():
    # A full collection walks every object the process holds; start-up's objects (modules,
    # config) are frozen out of it, and young collections run far less often than every
    # 700 allocations (a recorder allocates a tuple per packet, none in a cycle).
    child = textwrap.dedent(
        """
        import gc
        from vstore.base import heap
        before = gc.get_freeze_count()
        heap.settle_for_recording()
        print(before, gc.get_freeze_count(), gc.get_threshold()[0], heap.GC_YOUNG_ALLOCATIONS)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, young, wanted = map(int, r.stdout.split())
    assert before == 0 and frozen > 1000
    assert young == wanted > 700
