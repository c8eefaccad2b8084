"""Workload 4, index: seek latency for a time range at 1 camera-hour, 1k camera-days and
1 camera-month of chunk rows (must stay flat), and index bytes per camera-day."""

from __future__ import annotations

import random

import pytest

from vstore.base import layout
from vstore.index.time_index import Batch, ChunkRow, TimeIndex

T0 = 1_737_075_600_000_000_000
GOP_NS = 2_000_000_000
SIZES = {"1cam-hour": (1, 1800), "1k-cam-day-sim": (1000, 1800), "1cam-month": (1, 1_296_000)}
_built: dict[str, tuple[TimeIndex, int, int]] = {}


def build(tmp_path_factory, name, smoke):
    if name in _built:
        return _built[name]
    cams, rows = SIZES[name]
    if smoke:  # `make test` runs benchmarks as smoke tests: same code, 1 % of the rows
        cams, rows = max(1, cams // 100), max(60, rows // 100)
    idx = TimeIndex(tmp_path_factory.mktemp(name) / "index")
    # 1k camera-days would be 43 M rows (too long to build in `make bench`): simulated with
    # 1000 cameras x 1 hour each, which gives the same seek depth across cameras.
    for cam in range(1, cams + 1):
        b = Batch()
        for i in range(rows):
            r = ChunkRow(
                cam,
                T0 + i * GOP_NS,
                T0 + (i + 1) * GOP_NS,
                i // 30,
                (i % 30) * 500_000,
                500_000,
                50,
                0xDEADBEEF,
                1,
            )
            b.put(r.key(), r.value())
            if b.count >= 50_000:
                idx.commit(b, sync=False)
                b = Batch()
        idx.commit(b, sync=False)
    idx._db.flush()
    idx._db.compact_range(None, None)
    # A recording server's index is warm: read every block once into the block cache.
    for _ in idx.all_chunk_rows():
        pass
    _built[name] = (idx, cams, rows)
    return _built[name]


@pytest.mark.parametrize("name", list(SIZES))
def test_index_seek(benchmark, tmp_path_factory, name):
    """One seek to the chunk at or before a random instant plus a 60 s scan (30 chunks)."""
    idx, cams, rows = build(tmp_path_factory, name, benchmark.disabled)
    rnd = random.Random(1)
    span = rows * GOP_NS

    def lookup():
        cam = rnd.randint(1, cams)
        t = T0 + rnd.randrange(0, span - 60_000_000_000)
        got = list(idx.chunks(cam, t, t + 60_000_000_000))
        assert 30 <= len(got) <= 31
        return got

    benchmark(lookup)
    benchmark.extra_info.update(rows=cams * rows)


@pytest.mark.parametrize("name", list(SIZES))
def test_index_seek_only(benchmark, tmp_path_factory, name):
    """One seek: the chunk that holds a random instant (what a clip or snapshot starts with)."""
    idx, cams, rows = build(tmp_path_factory, name, benchmark.disabled)
    rnd = random.Random(2)
    span = rows * GOP_NS

    def lookup():
        cam = rnd.randint(1, cams)
        t = T0 + rnd.randrange(0, span)
        got = idx.chunk_at(cam, t)
        assert got is not None and got.start_ns <= t < got.end_ns
        return got

    benchmark(lookup)


def test_index_bytes_per_camera_day(tmp_path_factory, benchmark):
    """On-disk index size for one camera-day of 2 s GOPs (43 200 chunk rows), compacted."""
    idx = TimeIndex(tmp_path_factory.mktemp("size") / "index")
    b = Batch()
    rnd = random.Random(3)
    off = 0
    for i in range(43_200):
        size = rnd.randint(800_000, 1_200_000)
        r = ChunkRow(
            1,
            T0 + i * GOP_NS,
            T0 + (i + 1) * GOP_NS,
            1 + i // 30,
            off,
            size,
            50,
            rnd.getrandbits(32),
            1,
        )
        off = 0 if i % 30 == 29 else off + size
        b.put(r.key(), r.value())
    idx.commit(b, sync=False)
    idx._db.flush()
    idx._db.compact_range(None, None)
    size = sum(p.stat().st_size for p in idx.path.iterdir() if p.suffix == ".sst")
    benchmark.extra_info.update(index_bytes_per_camera_day=size)
    benchmark(lambda: idx.get(layout.chunk_key(1, T0)))
    assert size > 0
    idx.close()
