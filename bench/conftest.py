"""Benchmark fixtures: synthetic camera packets, temporary stores, and the impl parameter.

Benchmarks run as smoke tests inside `make test` (timing disabled); `make bench` runs them
for real and tools/bench_report.py turns the JSON into bench/results/latest.{md,json}.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import bucket, moto_endpoint, s3_env  # noqa: F401 - S3 fixtures shared
from vstore import _native

IMPL_IDS = sorted(_native.implementations())
SPS = b"\x00\x00\x00\x01\x67\x64\x00\x28\xac\xd9\x40\x78\x02\x27\xe5\x84"
PPS = b"\x00\x00\x00\x01\x68\xeb\xe3\xcb\x22\xc0"


def camera_packets(n: int, packet_bytes: int, gop: int = 50, seed: int = 7) -> list[bytes]:
    """Access units shaped like a camera's: keyframes 5x the average, P slices the rest."""
    rnd = os.urandom if seed is None else __import__("random").Random(seed).randbytes
    body_key = rnd(packet_bytes * 5)
    body_p = rnd(packet_bytes)
    key = SPS + PPS + b"\x00\x00\x00\x01\x65" + body_key
    p = b"\x00\x00\x00\x01\x41" + body_p
    return [key if i % gop == 0 else p for i in range(n)]


@pytest.fixture(params=IMPL_IDS)
def impl(request: pytest.FixtureRequest):
    with _native.use(request.param):
        yield request.param


@pytest.fixture
def page_cache_store(tmp_path: Path) -> Path:
    """A store whose writers fsync at most once a minute: measures the write path itself."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nfsync_interval_s = 60\n")
    return d
