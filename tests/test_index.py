"""Index lookups against a brute-force reference: the chunk holding an instant, and the
chunks of a range preceded by those back to their GOP start (continuations, gaps, other
cameras' rows next to the searched camera's)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vstore.index.time_index import Batch, ChunkRow, TimeIndex
from vstore.segment import format as fmt

CONT = fmt.CHUNK_CONTINUATION


@st.composite
def layouts(draw):
    rows = []
    for cam in (1, 2, 3):
        t = draw(st.integers(0, 50))
        for _ in range(draw(st.integers(0, 25))):
            t += draw(st.sampled_from([0, 0, 0, 7]))  # gaps
            dur = draw(st.integers(1, 9))
            cont = bool(rows) and rows[-1].camera_num == cam and draw(st.booleans())
            rows.append(ChunkRow(cam, t, t + dur, 1, 0, 10, 1, 0, CONT if cont else 0))
            t += dur
    return rows


def reference(rows, cam, start, end):
    mine = [r for r in rows if r.camera_num == cam]
    i = next((k for k, r in enumerate(mine) if r.end_ns > start), len(mine))
    if i == len(mine) or mine[i].start_ns >= end:
        # Nothing overlaps; a decoder still needs nothing.
        return [r for r in mine[i:] if r.start_ns < end]
    while i > 0 and mine[i].flags & CONT:
        i -= 1
    return [r for r in mine[i:] if r.start_ns < end]


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(0, 400), st.integers(1, 100))
def test_lookups_match_a_brute_force_reference(tmp_path_factory, rows, start, span):
    idx = TimeIndex(tmp_path_factory.mktemp("idx") / "index")
    try:
        b = Batch()
        for r in rows:
            b.put(r.key(), r.value())
        idx.commit(b, sync=False)
        for cam in (1, 2, 3):
            got = idx.chunks_from_keyframe(cam, start, start + span, CONT)
            assert got == reference(rows, cam, start, start + span)
            holding = [r for r in rows if r.camera_num == cam and r.start_ns <= start < r.end_ns]
            assert idx.chunk_at(cam, start) == (holding[0] if holding else None)
            assert list(idx.chunks(cam, start, start + span)) == [
                r
                for r in rows
                if r.camera_num == cam and r.start_ns < start + span and r.end_ns > start
            ]
    finally:
        idx.close()


def test_segment_ids_stay_unique_across_a_crash_mid_block(tmp_path):
    """Ids come from blocks reserved with one synchronous write each; a process that dies
    mid-block must never let the next one hand out an id it gave."""
    import subprocess
    import sys

    from vstore.base import layout
    from vstore.index.time_index import SEGMENT_ID_BLOCK

    path = tmp_path / "index"
    with TimeIndex(path) as idx:
        first = [idx.new_segment_id() for _ in range(5)]
        # One reservation for the whole block: the stored counter is past it already.
        stored = int.from_bytes(idx.get(layout.NEXT_SEGMENT_ID_KEY), "big")
        assert stored == first[0] + SEGMENT_ID_BLOCK
    assert first == list(range(first[0], first[0] + 5))
    # A process killed mid-block (os._exit: no close, no flush beyond the synced writes).
    child = (
        "import os, sys; from vstore.index.time_index import TimeIndex; "
        f"i = TimeIndex({str(path)!r}); print(*[i.new_segment_id() for _ in range(3)]); "
        "sys.stdout.flush(); os._exit(9)"
    )
    r = subprocess.run(
        [sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=60
    )
    crashed = [int(x) for x in r.stdout.split()]
    assert r.returncode == 9 and len(crashed) == 3, r.stderr
    with TimeIndex(path) as idx:
        later = [idx.new_segment_id() for _ in range(SEGMENT_ID_BLOCK + 2)]  # crosses a block
    seen = first + crashed + later
    assert len(set(seen)) == len(seen)
    assert min(later) > max(first + crashed)


def test_reserving_foreign_ids_moves_past_the_block_in_hand(tmp_path):
    with TimeIndex(tmp_path / "index") as idx:
        a = idx.new_segment_id()
        idx.reserve_segment_ids(a + 10)  # inside the block in hand
        b = idx.new_segment_id()
        assert b > a + 10
        idx.reserve_segment_ids(b + 10_000)  # beyond it
        assert idx.new_segment_id() > b + 10_000
