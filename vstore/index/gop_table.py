"""A sealed segment's GOP table, as its index row carries it: the wall-clock start and end of
each GOP (a chunk and its continuation chunks), so that a long playlist is read from one
row per segment instead of one row per chunk.

Encoding: the GOPs' times interleaved (start, end, start, end, ...) as int64, the first
value absolute and each next one the difference from the one before, little-endian, in
base64. A minute of 2 s GOPs is 60 values: 640 characters, mostly repeated patterns that
the index's block compression takes back. Derived data: it always equals the GOPs of the
segment's chunk rows (`vstore check` compares them), and a row without one, or whose chunks
changed after sealing (``damaged``), is read from its chunk rows instead.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vstore.segment.format import CHUNK_CONTINUATION

if TYPE_CHECKING:
    import numpy as np

# numpy is imported by the readers only: every command opens the index, and numpy's import
# would weigh on the start-up of each (a clip's is a benchmarked target); sealing encodes a
# minute's table in plain Python.


def gop_bounds(chunks: Sequence[Any]) -> tuple[list[int], list[int]]:
    """(starts, ends) of the GOPs of chunks in time order (directory entries or chunk rows:
    ``start_ns``, ``end_ns``, ``flags``); a continuation chunk extends the GOP before it."""
    starts: list[int] = []
    ends: list[int] = []
    for c in chunks:
        if c.flags & CHUNK_CONTINUATION and starts:
            ends[-1] = c.end_ns
        else:
            starts.append(c.start_ns)
            ends.append(c.end_ns)
    return starts, ends


def encode(chunks: Sequence[Any]) -> str:
    starts, ends = gop_bounds(chunks)
    if not starts:
        return ""
    both = [v for pair in zip(starts, ends, strict=True) for v in pair]
    deltas = [both[0]] + [b - a for a, b in itertools.pairwise(both)]
    return base64.b64encode(struct.pack(f"<{len(deltas)}q", *deltas)).decode()


def decode(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) as int64 arrays; ValueError for a table that is not one."""
    starts, ends, _counts = decode_many([text])
    return starts, ends


def decode_many(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Many tables at once, in one array pass (a day is 1,440): every GOP's start and end,
    the tables one after another, and how many GOPs each table holds."""
    import numpy as np

    try:  # (binascii itself: base64.b64decode's wrapper is a third of the time at 1,440)
        raws = [binascii.a2b_base64(t, strict_mode=True) for t in texts]
    except binascii.Error as exc:
        raise ValueError(f"not a GOP table: {exc}") from None
    lengths = [len(r) // 8 for r in raws]
    if any(n % 2 for n in lengths) or any(len(r) % 8 for r in raws):
        raise ValueError("a GOP table is pairs of int64")
    values = np.frombuffer(b"".join(raws), dtype="<i8")
    total = np.cumsum(values)
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    # Each table's first value is absolute: take off what the tables before it summed to.
    before = np.where(firsts > 0, total[np.maximum(firsts - 1, 0)], 0)
    both = total - np.repeat(before, lengths)
    return both[0::2], both[1::2], [n // 2 for n in lengths]
