"""Workload 3, disk limit: sustained fsynced recording rate vs a plain sequential fsynced
write of the same bytes to the same filesystem, in the same run."""

from __future__ import annotations

import os

import pytest

from bench.conftest import camera_packets
from vstore import TrackInfo
from vstore.store import open_store

VIDEO = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
T0 = 1_737_075_600_000_000_000
N, SIZE = 3000, 20000  # 2 minutes of one 4 Mbit/s... at bench speed: ~75 MB


def test_disk_plain_sequential_write(benchmark, tmp_path):
    """Baseline: dd-style 1 MiB writes of the same byte count, fsync every 1 MiB * 50."""
    packets = camera_packets(N, SIZE)
    total = sum(map(len, packets))
    block = os.urandom(1 << 20)
    state = {"i": 0}

    def run():
        state["i"] += 1
        fd = os.open(tmp_path / f"dd{state['i']}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        written = 0
        k = 0
        while written < total:
            written += os.write(fd, block)
            k += 1
            if k % 50 == 0:
                os.fsync(fd)
        os.fsync(fd)
        os.close(fd)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(bytes=total)


@pytest.mark.parametrize("fsync_interval_s", [0, 1], ids=["fsync-every-gop", "fsync-1s"])
def test_disk_recording(benchmark, tmp_path, fsync_interval_s):
    """vstore recording: default durability (fsync every chunk, i.e. every 2 s GOP of
    footage), and fsync at most once a second of wall time."""
    packets = camera_packets(N, SIZE)
    state = {"i": 0}

    def setup():
        state["i"] += 1
        d = tmp_path / f"s{state['i']}"
        d.mkdir()
        (d / "vstore.toml").write_text(f"[store]\nfsync_interval_s = {fsync_interval_s}\n")
        st = open_store(d)
        return (st, st.writer("cam", [VIDEO], start_ns=T0)), {}

    def run(st, w):
        for i, data in enumerate(packets):
            w.write_raw(0, i * 3600, i * 3600, False, data)
        w.close()
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info.update(bytes=sum(map(len, packets)))
