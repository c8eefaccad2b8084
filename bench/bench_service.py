"""The node beyond clips: an HLS playlist of a whole day of one camera, from `vstore serve`
over HTTP (the library building it in the same run for reference)."""

from __future__ import annotations

import http.client
import time

import pytest

from bench.conftest import PPS, SPS, T0
from tests.service_helpers import make_token, start_node
from vstore import TrackInfo
from vstore.api import open_store
from vstore.base.timebase import format_time
from vstore.export import hls

VIDEO = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
GOP_S = 2


@pytest.fixture(scope="module")
def day(request, tmp_path_factory):
    """24 hours of one camera (a 2 s GOP of two tiny frames: the index is what counts), or
    one hour in the smoke run."""
    smoke = request.config.getoption("benchmark_disable") and not request.config.getoption(
        "benchmark_enable"
    )
    hours = 1 if smoke else 24
    store = tmp_path_factory.mktemp("day") / "store"
    store.mkdir()
    (store / "vstore.toml").write_text("[store]\nfsync_interval_s = 60\n")
    key = SPS + PPS + b"\x00\x00\x00\x01\x65" + bytes(200)
    p = b"\x00\x00\x00\x01\x41" + bytes(50)
    with open_store(store) as st, st.writer("cam", [VIDEO], start_ns=T0) as w:
        wr = w.write_raw
        for i in range(hours * 3600):  # one frame a second: a keyframe every other
            wr(0, i * 90000, i * 90000, i % GOP_S == 0, key if i % GOP_S == 0 else p)
    return {"store": store, "hours": hours}


def test_hls_playlist_of_a_day(benchmark, day):
    """GET hls.m3u8 for 24 h of one camera (43,200 GOPs): request to last byte."""
    store = day["store"]
    tok = make_token(store, "viewer", "*", name="bench")
    a = format_time(T0).replace("+", "%2B")
    b = format_time(T0 + day["hours"] * 3600 * 10**9).replace("+", "%2B")
    path = f"/api/v1/cameras/cam/hls.m3u8?from={a}&to={b}"
    node = start_node(store)
    try:
        conn = http.client.HTTPConnection(node.host, node.port, timeout=60)

        def get() -> int:
            conn.request("GET", path, headers={"Authorization": f"Bearer {tok}"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, body[:200]
            return body.count(b"#EXTINF")

        segments = get()  # warm
        assert segments == day["hours"] * 3600 // GOP_S
        benchmark.pedantic(get, rounds=7, iterations=1)
        conn.close()
        with open_store(store, read_only=True) as st:
            t = time.perf_counter()
            text = hls.playlist(hls.gops(st, "cam", T0, T0 + day["hours"] * 3600 * 10**9), False)
            lib_s = time.perf_counter() - t
        benchmark.extra_info.update(segments=segments, library_s=lib_s, bytes=len(text))
    finally:
        assert node.stop() == 0
