"""C library functions that Python's ``os`` module lacks (glibc's ``malloc_trim``, Linux's
``sync_file_range``): looked up once through ctypes, None where the C library has none.

ctypes is imported on the first lookup only, so commands that never need these do not load it.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def function(name: str, argtypes: tuple[str, ...], restype: str) -> Any | None:
    """The C function ``name`` with its ctypes signature (type names without the ``c_``
    prefix, such as ``"int64"``); None where this C library does not have it."""
    import ctypes  # lazily: a few ms of start-up that only the writer's cache hints need

    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = [getattr(ctypes, f"c_{t}") for t in argtypes]
    fn.restype = getattr(ctypes, f"c_{restype}")
    return fn
