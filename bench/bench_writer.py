"""Workload 1, writer only: pre-demuxed H.264 packets into the segment writer with index
commits, compiled vs pure-Python twins, 1 KB and 20 KB packets (25 fps, 2 s GOP)."""

from __future__ import annotations

import pytest

from bench.conftest import camera_packets
from vstore import TrackInfo
from vstore.store import open_store

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
    benchmark.extra_info.update(packets=n, bytes=sum(map(len, packets)), impl=impl)


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
