"""A long-running recorder's memory housekeeping: handing freed heap memory back to the
operating system (glibc's ``malloc_trim``) and keeping Python's cyclic garbage collector
off the packet path.

A recorder allocates and frees a GOP of packet buffers per camera every couple of seconds,
from a demuxing thread and many writer threads. glibc keeps what they free inside its
per-thread arenas, where a hole in the middle of an arena is never returned on its own: at
100 cameras the freed-but-kept memory was as large as the memory in use (about 100 MB) and
counted in the process's RSS. ``malloc_trim(0)`` releases the free pages of every arena; a
recorder calls it about once a second, at a cost of well under a millisecond.

On other C libraries (musl, macOS) there is no ``malloc_trim`` and this does nothing.

Python's cyclic collector runs a young collection every 700 container allocations, and now
and then a full one that walks every object the process holds, modules included. A
recorder allocates a tuple or two per packet, none of them in a cycle, so at 40 cameras the
collector took about 3 % of the CPU for nothing (``perf``). ``settle_for_recording`` moves
what start-up built out of the collector's view (``gc.freeze``) and collects the young
generation every GC_YOUNG_ALLOCATIONS instead: measured, 7 % less CPU at 40 cameras.
"""

from __future__ import annotations

import gc
import threading

from vstore.base import libc

TRIM_INTERVAL_S = 1.0
GC_YOUNG_ALLOCATIONS = 20_000


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS; False where the C library cannot."""
    fn = libc.function("malloc_trim", ("size_t",), "int")
    if fn is None:
        return False
    fn(0)
    return True


def keep_trimming(stop: threading.Event) -> threading.Thread:
    """A daemon thread that releases the free heap every TRIM_INTERVAL_S until ``stop``
    (recording frees GOP buffers all day; glibc keeps them unless asked to give them back)."""

    def trim() -> None:
        while not stop.wait(TRIM_INTERVAL_S):
            release_free_memory()

    t = threading.Thread(target=trim, name="vstore-heap", daemon=True)
    t.start()
    return t


def settle_for_recording() -> None:
    """For a process that is about to record for a long time, after its start-up: freeze
    what exists into the GC's permanent generation and collect young objects less often.
    Process-wide, so the process's owner calls it (``vstore record`` does), never the
    library on its own."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, older, oldest)
