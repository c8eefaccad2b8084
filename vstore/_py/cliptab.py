"""Pure-Python twin of ``ext/cliptab.pyx``: the per-packet arithmetic of a clip's sample
tables. Media ticks become wall nanoseconds and MP4 ticks (rounded half away from zero),
and one track's packets of a chunk are picked for a clip.

Iterated in C where Python allows (map, compress): a 10 minute clip has some 40,000 packets.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import compress, count

NS_PER_S = 1_000_000_000


def ticks_to_ns_many(ticks: Sequence[int], tb_num: int, tb_den: int, plus_ns: int = 0) -> list[int]:
    """``plus_ns`` + each of ``ticks`` (in time base tb_num/tb_den) in nanoseconds, rounded
    half away from zero."""
    m, d2 = 2 * tb_num * NS_PER_S, 2 * tb_den
    return [
        plus_ns + ((v * m + tb_den) // d2 if v >= 0 else -((tb_den - v * m) // d2)) for v in ticks
    ]


def ns_to_ticks_many(ns: Sequence[int], timescale: int) -> list[int]:
    """Each of ``ns`` in ticks of 1/timescale s, rounded half away from zero."""
    m, d2 = 2 * timescale, 2 * NS_PER_S
    return [(v * m + NS_PER_S) // d2 if v >= 0 else -((NS_PER_S - v * m) // d2) for v in ns]


def select_track(
    pts: Sequence[int],
    dts: Sequence[int],
    flags: bytes,
    track: bytes,
    tr: int,
    tb_num: int,
    tb_den: int,
    plus_ns: int,
    end_rel_ns: int,
    scale: int,
    video: bool,
    first: bool,
    key_flag: int,
    covering_ns: int = 0,
) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """Track ``tr``'s packets of one chunk (its table's columns) that a clip holds, as
    ``(indices, dts, cts, keys)``: the packets' indices in the chunk, their decode times and
    composition offsets in ticks of 1/scale s from the clip's start, and the positions
    among them of keyframes. None when the clip holds none of them.

    Times are placed by ``plus_ns`` (the chunk's media-to-wall shift minus the clip's start)
    and kept before ``end_rel_ns``. Video is cut in decode order after the last frame shown
    before the end: with B-frames a reference shown after the end is decoded before frames
    shown before it, so it stays in (the edit list hides it) or they cannot decode. In the
    clip's ``first`` chunk the keyframe's leading frames (sent after it, shown before it)
    are left out: they refer to the GOP before, which the clip does not hold. Audio is kept
    from the start to the end; with ``covering_ns`` (an audio frame's length) a frame that
    begins before the start but still plays at it is kept too (the edit list trims it)."""
    one = all(t == tr for t in track)
    idx = range(len(track)) if one else list(compress(count(), map(tr.__eq__, track)))
    walls = ticks_to_ns_many(
        pts if one else list(map(pts.__getitem__, idx)), tb_num, tb_den, plus_ns
    )
    if not walls:
        return None
    keep: range | list[int]
    if video:
        if max(walls) < end_rel_ns:
            last = len(walls) - 1  # the whole GOP is inside: the usual case
        else:
            last = max((k for k, w in enumerate(walls) if w < end_rel_ns), default=-1)
        keep = range(last + 1)
        if first and last > 0:
            w0 = walls[0]
            keep = [k for k in keep if not k or walls[k] >= w0]
    else:
        lo = 1 - covering_ns if covering_ns > 0 else 0  # (covers the start: w + length > 0)
        if min(walls) >= lo and max(walls) < end_rel_ns:
            keep = range(len(walls))
        else:
            keep = [k for k, w in enumerate(walls) if lo <= w < end_rel_ns]
    if not keep:
        return None
    whole = len(keep) == len(walls)
    sel = list(idx) if whole else [idx[k] for k in keep]
    p_out = ns_to_ticks_many(walls if whole else [walls[k] for k in keep], scale)
    cts = list(map(operator.sub, map(pts.__getitem__, sel), map(dts.__getitem__, sel)))
    if any(cts):
        c_out = ns_to_ticks_many(ticks_to_ns_many(cts, tb_num, tb_den), scale)
        d_out = list(map(operator.sub, p_out, c_out))
    else:
        c_out, d_out = cts, p_out
    keys = list(compress(count(), map(key_flag.__and__, map(flags.__getitem__, sel))))
    return sel, d_out, c_out, keys


def durations(dts: Sequence[int], alone: int = 1) -> list[int]:
    """Each sample's duration: the next sample's dts minus its own, at least 1 (dts out of
    order, from a damaged source, still makes a valid table); the last lasts as long as the
    one before it (``alone`` if it is the only one)."""
    out = list(map(operator.sub, dts[1:], dts))
    if out and min(out) < 1:
        out = [max(1, x) for x in out]
    if len(dts):
        out.append(out[-1] if out else max(1, alone))
    return out


def presentation(dts: Sequence[int], cts: Sequence[int], durs: Sequence[int]) -> tuple[int, int]:
    """(the earliest time a sample is shown, the latest time one stops being shown) of
    samples with these decode times, composition offsets and durations; (0, 0) for none."""
    if not len(dts):
        return 0, 0
    shown = list(map(operator.add, dts, cts))
    return min(shown), max(map(operator.add, shown, durs))


def runs(values: Sequence[int]) -> list[int]:
    """Run-length pairs (count, value), flattened: with B-frames almost every ctts value
    is a run of its own."""
    n = len(values)
    if not n:
        return []
    starts = [0, *compress(range(1, n), map(operator.ne, values[1:], values[:-1]))]
    out = [0] * (2 * len(starts))
    out[0::2] = map(operator.sub, [*starts[1:], n], starts)
    out[1::2] = map(values.__getitem__, starts)
    return out


def sample_runs(
    payload: memoryview, offset: Sequence[int], size: Sequence[int], idxs: Sequence[int]
) -> tuple[list[int], list[memoryview]]:
    """Packets ``idxs`` of a chunk whose payload is ``payload`` (each at ``offset[i]``,
    ``size[i]`` bytes long), as they go into an MP4 unchanged: their sizes, and views of the
    payload holding them in order, adjacent packets sharing one view (no copy)."""
    sizes = [size[i] for i in idxs]
    bufs: list[memoryview] = []
    run_start = run_end = -1
    for i in idxs:
        if offset[i] != run_end:
            if run_end > run_start:
                bufs.append(payload[run_start:run_end])
            run_start = offset[i]
        run_end = offset[i] + size[i]
    if run_end > run_start:
        bufs.append(payload[run_start:run_end])
    return sizes, bufs
