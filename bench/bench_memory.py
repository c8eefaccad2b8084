"""Workload 6, memory: resident memory per recording camera with 100 cameras recording
(each holding an open 2 s GOP of 4 Mbit/s video, the writer's in-memory state)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_memory_per_camera(benchmark):
    """RSS growth / cameras, measured in a fresh process."""
    cams = 100 if not benchmark.disabled else 5
    out = {}

    def run():
        r = subprocess.run(
            [sys.executable, "-m", "bench.memory_child", str(cams)],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        before, after = (int(x) for x in r.stdout.split())
        out["per_camera_kib"] = (after - before) / cams
        return out

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["per_camera_kib"] = out["per_camera_kib"]
    benchmark.extra_info["cameras"] = cams
    assert out["per_camera_kib"] > 0
