"""Workload 1, writer only: pre-demuxed H.264 packets into the segment writer with index
commits, compiled vs pure-Python twins, 1 KB and 20 KB packets (25 fps, 2 s GOP)."""

from __future__ import annotations

import hashlib
import os

import pytest

from bench.conftest import camera_packets
from vstore import TrackInfo
from vstore.api import open_store
from vstore.base.fsutil import Fs
from vstore.segment import format as fmt
from vstore.segment.writer import JOIN_MAX_BYTES

VIDEO = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
T0 = 1_737_075_600_000_000_000


@pytest.mark.parametrize("packet_bytes,n", [(1000, 20000), (20000, 4000)], ids=["1KB", "20KB"])
def test_writer_packets(benchmark, impl, page_cache_store, packet_bytes, n):
    """Packets/s and MB/s through CameraWriter.write_raw, including chunk writes and index."""
    packets = camera_packets(n, packet_bytes)
    state = {"round": 0}

    def setup():
        state["round"] += 1
        st = open_store(page_cache_store)
        w = st.writer(f"cam{state['round']}", [VIDEO], start_ns=T0)
        return (st, w), {}

    def run(st, w):
        wr = w.write_raw
        for i, data in enumerate(packets):
            wr(0, i * 3600, i * 3600, False, data)
        w.close()
        assert w.stats.packets == n
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info.update(
        packets=n,
        bytes=sum(map(len, packets)),
        impl=impl,
        tmpfs=page_cache_store.is_relative_to("/dev/shm"),  # where this run wrote
    )


@pytest.mark.parametrize("packet_bytes,n", [(1000, 20000), (20000, 4000)], ids=["1KB", "20KB"])
def test_writer_packets_batched(benchmark, page_cache_store, packet_bytes, n):
    """The same packets through CameraWriter.write_many in batches of 32 (what the native
    MPEG-TS path hands over per socket read), compiled path."""
    packets = camera_packets(n, packet_bytes)
    items = [(0, i * 3600, i * 3600, False, data, None, False) for i, data in enumerate(packets)]
    batches = [items[k : k + 32] for k in range(0, n, 32)]
    state = {"round": 0}

    def setup():
        state["round"] += 1
        st = open_store(page_cache_store)
        w = st.writer(f"batch{state['round']}", [VIDEO], start_ns=T0)
        return (st, w), {}

    def run(st, w):
        wm = w.write_many
        for b in batches:
            wm(b)
        w.close()
        assert w.stats.packets == n
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info.update(packets=n, bytes=sum(map(len, packets)))


@pytest.mark.parametrize("packet_bytes,n", [(1000, 20000), (20000, 4000)], ids=["1KB", "20KB"])
def test_writer_floor(benchmark, page_cache_store, packet_bytes, n):
    """The floor under any writer that proves its bytes: each GOP SHA-256'd, CRC-32'd and
    written once to a file in the same directory, with no format, timestamps or index (the
    baseline for the writer's MB/s). Like the writer, a GOP up to 256 KiB is joined first
    (fewer calls) and a longer one goes as its packets' own buffers (no copy)."""
    packets = camera_packets(n, packet_bytes)
    gops = [packets[k : k + 50] for k in range(0, n, 50)]
    setup = _new_file_each_round(page_cache_store, "floor")

    def run(fd):
        sha = hashlib.sha256()
        crc = 0
        for gop in gops:
            parts = [b"".join(gop)] if sum(map(len, gop)) <= JOIN_MAX_BYTES else gop
            for p in parts:
                sha.update(p)
            crc = fmt.crc32_parts(parts, crc)
            Fs().writev(fd, parts)
        os.fsync(fd)
        os.close(fd)
        assert sha.digest() and crc >= 0

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info.update(packets=n, bytes=sum(map(len, packets)))


@pytest.mark.parametrize("part", ["sha256", "write"])
@pytest.mark.parametrize("packet_bytes,n", [(1000, 20000), (20000, 4000)], ids=["1KB", "20KB"])
def test_writer_floor_part(benchmark, page_cache_store, packet_bytes, n, part):
    """The floor's two big parts alone, on the same GOPs: SHA-256 only, or the writes only
    (new pages of a new file). No writer that hashes each byte with SHA-256 on its own core
    can beat 1 / (1 / sha256 + 1 / write) bytes/s here."""
    packets = camera_packets(n, packet_bytes)
    gops = [packets[k : k + 50] for k in range(0, n, 50)]
    gops = [[b"".join(g)] if sum(map(len, g)) <= JOIN_MAX_BYTES else g for g in gops]
    setup = _new_file_each_round(page_cache_store, f"floor-{part}")

    def run(fd):
        if part == "sha256":
            sha = hashlib.sha256()
            for parts in gops:
                for p in parts:
                    sha.update(p)
            assert sha.digest()
        else:
            for parts in gops:
                os.writev(fd, parts)
            os.fsync(fd)
        os.close(fd)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info.update(packets=n, bytes=sum(map(len, packets)))


def _new_file_each_round(directory, stem: str):
    """A pytest-benchmark setup that opens a new file for each round (new page-cache pages,
    as a segment file gets), passed to the timed function as its descriptor."""
    state = {"round": 0}

    def setup():
        state["round"] += 1
        path = directory / f"{stem}{state['round']}"
        return (os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),), {}

    return setup
