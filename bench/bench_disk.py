"""Workload 3, disk limit: sustained fsynced recording rate vs a plain sequential fsynced
write of the same bytes to the same filesystem, in the same run; one camera, and eight
cameras recording at once on their own threads (a recording server's case)."""

from __future__ import annotations

import os
import threading

import pytest

from bench.conftest import camera_packets
from vstore import TrackInfo
from vstore.store import open_store

VIDEO = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
T0 = 1_737_075_600_000_000_000
N, SIZE = 6000, 20000  # 4 minutes of 25 fps video at bench speed: ~125 MB a round
WARM_PACKETS = 50  # one GOP per camera, written in setup


@pytest.mark.parametrize("cache", ["kept", "dropped", "fsync-every-mib"])
def test_disk_plain_sequential_write(benchmark, tmp_path, cache):
    """Baseline: dd-style 1 MiB writes of the same byte count, fsync every 50 MiB; "dropped"
    also drops the fsynced pages from the page cache, as vstore's writer does (the faster of
    the two is the disk's rate on this machine); "fsync-every-mib" fsyncs each 1 MiB write,
    the floor for a recorder that makes every GOP durable before it takes the next."""
    packets = camera_packets(N, SIZE)
    total = sum(map(len, packets))
    block = os.urandom(1 << 20)
    state = {"i": 0}
    every = 1 if cache == "fsync-every-mib" else 50

    def run():
        state["i"] += 1
        fd = os.open(tmp_path / f"dd{state['i']}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        written = 0
        k = 0
        while written < total:
            written += os.write(fd, block)
            k += 1
            if k % every == 0:
                os.fsync(fd)
                if cache == "dropped":
                    os.posix_fadvise(fd, 0, written, os.POSIX_FADV_DONTNEED)
        os.fsync(fd)
        os.close(fd)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(bytes=total)


@pytest.mark.parametrize(
    "fsync_interval_s,cameras",
    [(0, 1), (1, 1), (0, 8), (0, 32)],
    ids=["fsync-every-gop", "fsync-1s", "fsync-every-gop-8cams", "fsync-every-gop-32cams"],
)
def test_disk_recording(benchmark, tmp_path, fsync_interval_s, cameras):
    """vstore recording: default durability (fsync every chunk, i.e. every 2 s GOP of
    footage) and fsync at most once a second, one camera; and default durability with the
    same bytes spread over eight cameras, each writer on its own thread."""
    # Each camera's first GOP is written before the clock starts: a camera's first segment
    # creates its day's directories (four directory fsyncs, once a day in a real recording)
    # and its first segment (a synced index batch, the file, a directory fsync), which with
    # 32 cameras of a few GOPs each was most of what the figure measured. Still timed: every
    # later segment's start and seal, at bench speed (with 32 cameras each writes 7.5 s of
    # footage, so its seal weighs eight times what a 60 s segment's does in real time).
    packets = camera_packets(N // cameras + WARM_PACKETS, SIZE)
    state = {"i": 0}

    def setup():
        state["i"] += 1
        d = tmp_path / f"s{state['i']}"
        d.mkdir()
        (d / "vstore.toml").write_text(f"[store]\nfsync_interval_s = {fsync_interval_s}\n")
        st = open_store(d)
        writers = [st.writer(f"cam{c}", [VIDEO], start_ns=T0) for c in range(cameras)]
        for w in writers:
            for i in range(WARM_PACKETS):
                w.write_raw(0, i * 3600, i * 3600, False, packets[i])
            w.flush()
        return (st, writers), {}

    def one(w):
        wr = w.write_raw
        for i in range(WARM_PACKETS, len(packets)):
            wr(0, i * 3600, i * 3600, False, packets[i])
        w.close()

    def run(st, writers):
        if len(writers) == 1:
            one(writers[0])
        else:
            threads = [threading.Thread(target=one, args=(w,)) for w in writers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    timed = sum(map(len, packets[WARM_PACKETS:]))
    benchmark.extra_info.update(bytes=timed * cameras, cameras=cameras)
