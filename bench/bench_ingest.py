"""Workload 2, ingest end to end: N cameras as MPEG-TS over loopback TCP recorded at once,
by `vstore record` and by one `ffmpeg -c copy -f segment` recorder per camera, on the same
streams in the same run: CPU seconds per camera-minute, and packets dropped."""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools.camsim import StreamSpec, write_file

ROOT = Path(__file__).resolve().parents[1]


class PacedTsServer:
    """Serves one pre-encoded MPEG-TS file to every client, paced to real time (no encoding
    in the loop, so the server costs little next to the recorders)."""

    def __init__(self, data: bytes, duration_s: float, loop_s: float) -> None:
        self.data, self.duration_s, self.loop_s = data, duration_s, loop_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        step = 188 * 70
        rate = len(self.data) / self.loop_s  # bytes per second of media
        t0 = time.monotonic()
        sent = 0
        try:
            while not self.stop.is_set() and time.monotonic() - t0 < self.duration_s:
                pos = sent % len(self.data)
                chunk = self.data[pos : pos + step]
                conn.sendall(chunk)
                sent += len(chunk)
                delay = t0 + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def ts_stream(request, tmp_path_factory):
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    spec = (
        StreamSpec(gop_frames=50)
        if smoke
        else StreamSpec(width=1920, height=1080, gop_frames=50, bitrate=4_000_000)
    )
    path = tmp_path_factory.mktemp("ingest") / "cam.ts"
    loop_s = 4 if smoke else 20
    write_file(str(path), spec, loop_s)
    cams, seconds = (2, 4.0) if smoke else (10, 20.0)
    return path.read_bytes(), loop_s, cams, seconds


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def test_ingest_vstore_record(benchmark, ts_stream, tmp_path):
    """`vstore record` of N loopback cameras: CPU s per camera-minute (a fresh process)."""
    data, loop_s, cams, seconds = ts_stream
    result = {}

    def run():
        srv = PacedTsServer(data, seconds + 5, loop_s)
        try:
            args = [
                sys.executable,
                "-m",
                "vstore.cli.main",
                "record",
                "--json",
                "--duration",
                str(seconds),
                "--store",
                str(tmp_path / f"s{time.time_ns()}"),
            ]
            args += [srv.url] * cams  # URLs first, then one --camera each, in order
            for i in range(cams):
                args += ["--camera", f"cam{i}"]
            cpu0 = _children_cpu()
            r = subprocess.run(args, capture_output=True, text=True, check=True)
            result["cpu_s"] = _children_cpu() - cpu0
            doc = json.loads(r.stdout)
            result["dropped"] = sum(c["dropped_queue_full"] for c in doc["cameras"])
            result["packets"] = sum(c["writer"].get("packets", 0) for c in doc["cameras"])
        finally:
            srv.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    per_cam_min = result["cpu_s"] / (cams * seconds / 60)
    benchmark.extra_info.update(
        cpu_s_per_camera_minute=per_cam_min,
        cameras=cams,
        seconds=seconds,
        dropped=result["dropped"],
        packets=result["packets"],
    )
    assert result["packets"] > 0 and result["dropped"] == 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ingest_ffmpeg_segment_recorders(benchmark, ts_stream, tmp_path):
    """Baseline: one `ffmpeg -i tcp://... -c copy -f segment` recorder per camera."""
    data, loop_s, cams, seconds = ts_stream
    result = {}

    def run():
        srv = PacedTsServer(data, seconds + 5, loop_s)
        try:
            cpu0 = _children_cpu()
            procs = []
            for i in range(cams):
                out = tmp_path / f"ff{i}-{time.time_ns()}"
                out.mkdir()
                procs.append(
                    subprocess.Popen(
                        [
                            "ffmpeg",
                            "-v",
                            "error",
                            "-i",
                            srv.url,
                            "-t",
                            str(seconds),
                            "-c",
                            "copy",
                            "-f",
                            "segment",
                            "-segment_time",
                            "60",
                            str(out / "seg%03d.ts"),
                        ]
                    )
                )
            for p in procs:
                p.wait(timeout=seconds + 60)
            result["cpu_s"] = _children_cpu() - cpu0
        finally:
            srv.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        cpu_s_per_camera_minute=result["cpu_s"] / (cams * seconds / 60),
        cameras=cams,
        seconds=seconds,
    )
