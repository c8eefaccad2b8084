"""The node's HTTP clip path: a 60 s clip from the hour, downloaded from `vstore serve`
(aiohttp) beside the library call in the same run (total time and time to first byte), the
same path on Starlette/uvicorn (why aiohttp was chosen), and what a Range request for the
last megabyte of the hour-long clip reads."""

from __future__ import annotations

import fcntl
import http.client
import os
import subprocess
import sys
import threading
import time

import pytest

from bench.conftest import NS, T0
from tests.service_helpers import free_port, make_token, start_node, wait_for_port
from vstore.api import open_store
from vstore.base.timebase import format_time
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip

ROUNDS = 7


@pytest.fixture(scope="module")
def footage(city_hour):
    return city_hour


def _path(start_s: float, end_s: float) -> str:
    a = format_time(T0 + int(start_s * NS)).replace("+", "%2B")
    b = format_time(T0 + int(end_s * NS)).replace("+", "%2B")
    return f"/api/v1/cameras/cam/clip.mp4?from={a}&to={b}"


def _download(
    host: str, port: int, path: str, token: str, headers=None
) -> tuple[float, float, int]:
    """(time to first body byte, total, bytes) of one GET, read as a client would."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    r = conn.getresponse()
    assert r.status in (200, 206), r.read()[:300]
    n = len(r.read(1))
    first = time.perf_counter() - t
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
    total = time.perf_counter() - t
    conn.close()
    return first, total, n


def _rounds(fn, rounds: int = ROUNDS) -> list[tuple[float, float, int]]:
    fn()  # warm: the page cache, the kept layout, the token file
    return [fn() for _ in range(rounds)]


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _io_read_chars(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.fixture(scope="module")
def token(footage):
    return make_token(footage["store"], "investigator", "*", name="bench")


def test_http_clip_library_baseline(benchmark, footage):
    """The library call the HTTP figures are compared with: plan and write the MP4."""
    st = open_store(footage["store"], read_only=True)
    s, e = T0 + int(footage["start"] * NS), T0 + int(footage["end"] * NS)
    out = footage["tmp"] / "http-lib.mp4"
    res = benchmark.pedantic(
        lambda: write_clip(st, plan_clip(st, "cam", s, e), out), rounds=ROUNDS, iterations=1
    )
    benchmark.extra_info["bytes"] = res.bytes_written
    st.close()


def test_http_clip_library_to_reader(benchmark, footage):
    """The library call streaming the MP4 to a reader, as the node's response does: into a
    pipe (1 MiB of buffer) that a thread drains in 1 MiB reads, as the HTTP client reads."""
    st = open_store(footage["store"], read_only=True)
    s, e = T0 + int(footage["start"] * NS), T0 + int(footage["end"] * NS)

    def run() -> int:
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        got: list[int] = []

        def drain() -> None:
            n = 0
            while b := os.read(r, 1 << 20):
                n += len(b)
            got.append(n)

        t = threading.Thread(target=drain)
        t.start()
        with os.fdopen(w, "wb", buffering=0) as f:
            write_clip(st, plan_clip(st, "cam", s, e), f)
        t.join()
        os.close(r)
        return got[0]

    n = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["bytes"] = n
    st.close()


def test_http_clip_aiohttp(benchmark, footage, token):
    """`vstore serve`: a 60 s MP4 clip over loopback HTTP, as a client downloads it."""
    node = start_node(footage["store"])
    try:
        path = _path(footage["start"], footage["end"])
        got = _rounds(lambda: _download(node.host, node.port, path, token))
        benchmark.pedantic(lambda: _download(node.host, node.port, path, token), rounds=1)
        benchmark.extra_info.update(
            first_byte_s_median=_median([g[0] for g in got]),
            total_s_median=_median([g[1] for g in got]),
            bytes=got[0][2],
        )
        # A Range of the last megabyte of the whole hour: after the player's first request
        # (which lays the file out), only the chunks it covers are read.
        hour = _path(0, footage["hour_s"])
        t = time.perf_counter()
        _download(node.host, node.port, hour, token, {"Range": "bytes=0-0"})
        cold = time.perf_counter() - t
        before = _io_read_chars(node.proc.pid)
        _first, total, n = _download(node.host, node.port, hour, token, {"Range": "bytes=-1048576"})
        read = _io_read_chars(node.proc.pid) - before
        assert n == 1048576
        benchmark.extra_info.update(
            range_last_mb_read_bytes=read, range_last_mb_s=total, hour_layout_s=cold
        )
    finally:
        assert node.stop() == 0


def test_http_clip_starlette(benchmark, footage, token):
    """The same clip path on Starlette served by uvicorn (bench/http_starlette.py)."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    port = free_port()
    env = {**os.environ, "VSTORE_BENCH_STORE": str(footage["store"])}
    cmd = [sys.executable, "-m", "uvicorn", "bench.http_starlette:app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    try:
        wait_for_port(port, proc)
        path = _path(footage["start"], footage["end"])
        got = _rounds(lambda: _download("127.0.0.1", port, path, token))
        benchmark.pedantic(lambda: _download("127.0.0.1", port, path, token), rounds=1)
        benchmark.extra_info.update(
            first_byte_s_median=_median([g[0] for g in got]),
            total_s_median=_median([g[1] for g in got]),
            bytes=got[0][2],
        )
    finally:
        proc.terminate()
        proc.wait(30)
