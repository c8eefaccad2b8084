"""Handing freed heap memory back to the operating system (glibc's ``malloc_trim``).

A recorder allocates and frees a GOP of packet buffers per camera every couple of seconds,
from a demuxing thread and many writer threads. glibc keeps what they free inside its
per-thread arenas, where a hole in the middle of an arena is never returned on its own: at
100 cameras the freed-but-kept memory was as large as the memory in use (about 100 MB) and
counted in the process's RSS. ``malloc_trim(0)`` releases the free pages of every arena; a
recorder calls it about once a second, at a cost of well under a millisecond.

On other C libraries (musl, macOS) there is no ``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

from vstore import libc

TRIM_INTERVAL_S = 1.0


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS; False where the C library cannot."""
    fn = libc.function("malloc_trim", ("size_t",), "int")
    if fn is None:
        return False
    fn(0)
    return True
