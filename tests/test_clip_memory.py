"""Bounded memory: a 24-hour clip streams in (nearly) the memory of a 1-hour clip.

A day of footage at a frame every 2 s (real H.264 access units, replayed with advancing timestamps) is
recorded, then a child process streams 1 h and 24 h clips and reports its peak RSS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from tests.conftest import START_NS
from tools.camsim import StreamSpec, write_file
from vstore import Packet
from vstore.api import open_store
from vstore.ingest.tracks import tracks_from_av

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def day_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("day")
    src = tmp_path / "two.ts"
    write_file(str(src), StreamSpec(width=64, height=64, fps=1, gop_frames=2), 2)
    with av.open(str(src)) as c:
        tracks = tracks_from_av(c)
        vs = c.streams.video[0]
        pk = [(bytes(p), p.is_keyframe) for p in c.demux(vs) if p.size]
    assert [k for _, k in pk] == [True, False]
    store_dir = tmp_path / "store"
    with open_store(store_dir) as st, st.writer("cam", tracks, start_ns=START_NS) as w:
        for i in range(43_200):  # a frame every 2 s for a day
            data, key = pk[i % 2]
            w.write(Packet(0, i * 180_000, i * 180_000, key, data))
    return store_dir


def peak_rss_kib(store_dir: Path, hours: float, fmt: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.clip_memory_child", str(store_dir), str(hours), fmt],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=600,
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("fmt", ["fmp4", "mp4"])
def test_day_long_clip_streams_in_bounded_memory(day_store, fmt):
    store_dir = day_store
    size_1h, rss_1h = peak_rss_kib(store_dir, 1, fmt)
    size_24h, rss_24h = peak_rss_kib(store_dir, 24, fmt)
    assert size_24h > 20 * size_1h
    # The output is ~24x larger; memory may grow only by the muxer's per-frame index
    # (tens of bytes a frame for moov-first MP4): far below the clip's own size.
    growth_kib = rss_24h - rss_1h
    print(f"{fmt}: 1 h {size_1h} B peak {rss_1h} KiB; 24 h {size_24h} B peak {rss_24h} KiB")
    assert growth_kib < max(16 * 1024, size_24h // 1024 // 4), (rss_1h, rss_24h, size_24h)
