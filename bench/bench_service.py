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

        t = time.perf_counter()
        segments = get()  # the first: every segment row's GOP table is read and laid out
        cold_s = time.perf_counter() - t
        assert segments == day["hours"] * 3600 // GOP_S
        benchmark.pedantic(get, rounds=7, iterations=1)
        conn.close()
        with open_store(store, read_only=True) as st:
            t = time.perf_counter()
            text = hls.Playlists().playlist(st, "cam", T0, T0 + day["hours"] * 3600 * 10**9, False)
            lib_s = time.perf_counter() - t
        benchmark.extra_info.update(
            segments=segments, library_s=lib_s, cold_s=cold_s, bytes=len(text)
        )
    finally:
        assert node.stop() == 0


# --- many cameras recording, many clips downloading --------------------------------------------

CLIENT = r"""
import http.client, json, random, sys, threading, time
host, port, token, clients, seconds, first_ns, span_s = sys.argv[1:8]
port, clients, seconds, first_ns, span_s = int(port), int(clients), float(seconds), int(first_ns), float(span_s)
lat, errors, done = [], [], []
stop = time.monotonic() + seconds
def fmt(ns):
    import datetime
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).isoformat().replace("+", "%2B")
def run(k):
    rnd = random.Random(k)
    conn = http.client.HTTPConnection(host, port, timeout=120)
    while time.monotonic() < stop:
        a = first_ns + int(rnd.uniform(0, span_s - 11) * 1e9)
        path = f"/api/v1/cameras/archive/clip.mp4?from={fmt(a)}&to={fmt(a + 10 * 10**9)}"
        t = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Authorization": "Bearer " + token})
            r = conn.getresponse()
            n = len(r.read())
            if r.status != 200:
                errors.append(r.status)
                time.sleep(0.2)
                continue
            lat.append(time.perf_counter() - t)
            done.append(n)
        except Exception as e:
            errors.append(str(e)[:60])
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=120)
threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
lat.sort()
print(json.dumps({"downloads": len(done), "bytes": sum(done), "errors": len(errors),
                  "error_kinds": sorted(set(map(str, errors)))[:5],
                  "p50_s": lat[len(lat) // 2] if lat else None,
                  "p99_s": lat[int(len(lat) * 0.99)] if lat else None}))
"""


def _recording(node, tok) -> tuple[int, int]:
    """(packets written, packets dropped) over every camera recording now."""
    import re

    text = node.get("/metrics", tok).body.decode()
    packets = sum(
        float(v)
        for v in re.findall(r"^vstore_packets_written_total\{[^}]*\} (\S+)", text, re.MULTILINE)
    )
    dropped = sum(
        float(v)
        for v in re.findall(
            r"^vstore_ingest_dropped_packets_total\{[^}]*\} (\S+)", text, re.MULTILINE
        )
    )
    return int(packets), int(dropped)


def retention(store) -> None:
    """`vstore retention run`, through the socket of the process that holds the store."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "vstore.cli.main", "retention", "run", "--json", "--store"]
    subprocess.run([*cmd, str(store)], capture_output=True, text=True, check=True, timeout=120)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS")).split()[1]) / 1024


def test_service_under_load(benchmark, tmp_path, request):
    """100 cameras recording into `vstore serve` for a while alone, then as long again while
    200 clients download 10 s MP4 clips of an archive camera at random offsets (in another
    process): recording's packets and drops in each phase, downloads per second and p99
    latency, and the idle node's memory beside `vstore record` with the same cameras."""
    import json
    import os
    import subprocess
    import sys
    import threading

    from bench.bench_ingest import PacedTsServer, _vstore
    from bench.bench_real_footage import make_footage
    from tools.camsim import StreamSpec as Spec
    from tools.camsim import write_file
    from vstore.ingest.file_import import import_file

    smoke = request.config.getoption("benchmark_disable") and not request.config.getoption(
        "benchmark_enable"
    )
    cams, clients, phase_s = (2, 4, 2.0) if smoke else (100, 200, 20.0)
    spec = Spec(gop_frames=50) if smoke else Spec(width=1920, height=1080, gop_frames=50,
                                                    bitrate=4_000_000, noise=24)  # fmt: skip
    ts = tmp_path / "cam.ts"
    write_file(str(ts), spec, 4 if smoke else 20)
    data = ts.read_bytes()
    store = tmp_path / "store"
    store.mkdir()
    with open_store(store) as st:
        end = import_file(st, make_footage("h264", smoke), "archive", T0).end_ns
    srv = PacedTsServer(data, 3 * phase_s + 60, 4 if smoke else 20)
    try:
        lines = ["[service]", "rate_per_s = 100000", f"max_exports = {clients}"]
        for i in range(cams):
            lines += [f"[cameras.cam{i}]", f'url = "{srv.url}"']
        (store / "vstore.toml").write_text("\n".join(lines) + "\n")
        tok = make_token(store, "investigator", "*", name="load")
        node = start_node(store)
        try:
            time.sleep(3.0)  # every camera connected and past its first GOP
            # Memory is compared with both processes doing the same duties: a retention run
            # (the node's schedule runs one every few minutes; beside `vstore record` an
            # operator's cron runs `vstore retention run`, which it serves through its
            # socket), so what planning loads (NumPy) counts on both sides.
            retention(store)
            rss: list[float] = []
            p0 = _recording(node, tok)
            t0 = ta0 = time.monotonic()
            while time.monotonic() - t0 < phase_s:
                rss.append(_rss_mb(node.proc.pid))
                time.sleep(0.5)
            p1 = _recording(node, tok)
            alone_s = time.monotonic() - ta0
            out: dict = {}

            def load() -> None:
                # The clients stand in for investigators' own machines: niced, so that what
                # is measured is the node's recording beside the node's serving, not beside
                # 200 client threads parsing HTTP on the same two cores.
                r = subprocess.run(
                    [sys.executable, "-c", CLIENT, node.host, str(node.port), tok, str(clients),
                     str(phase_s), str(T0), str((end - T0) / 1e9)],
                    capture_output=True, text=True, check=True, preexec_fn=lambda: os.nice(19),
                )  # fmt: skip
                out.update(json.loads(r.stdout))

            def both() -> None:
                th = threading.Thread(target=load)
                th.start()
                th.join()

            pa = _recording(node, tok)
            tb0 = time.monotonic()
            benchmark.pedantic(both, rounds=1, iterations=1)
            pb = _recording(node, tok)
            loaded_s = time.monotonic() - tb0
        finally:
            assert node.stop() == 0
        record_store = tmp_path / "record-store"

        def record_retention() -> None:
            time.sleep(3.0)  # (as for the node: cameras connected first)
            retention(record_store)

        record = _vstore(srv.url, cams, phase_s, record_store, during=record_retention)
    finally:
        srv.close()
    # (each phase over the time between its two readings: the load's process start-up and
    # its last downloads count too)
    alone_pps = (p1[0] - p0[0]) / alone_s
    loaded_pps = (pb[0] - pa[0]) / loaded_s
    steady = rss[len(rss) // 2 :]
    rec_rss = record["rss_samples_mb"]
    rec_steady = rec_rss[len(rec_rss) // 2 :]
    benchmark.extra_info.update(
        cameras=cams,
        clients=clients,
        seconds=phase_s,
        recording_alone_packets_per_s=alone_pps,
        recording_loaded_packets_per_s=loaded_pps,
        dropped_alone=p1[1] - p0[1],
        dropped_loaded=pb[1] - pa[1],
        downloads=out["downloads"],
        downloads_per_s=out["downloads"] / phase_s,
        download_errors=out["errors"],
        download_error_kinds=out["error_kinds"],
        p50_s=out["p50_s"],
        p99_s=out["p99_s"],
        serve_idle_rss_mb=sum(steady) / max(1, len(steady)),
        record_rss_mb=sum(rec_steady) / max(1, len(rec_steady)),
        server_max_lag_s=srv.max_lag_s,
    )
    assert out["downloads"] > 0 and alone_pps > 0
