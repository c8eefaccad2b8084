"""Benchmark fixtures: synthetic camera packets, temporary stores, and the impl parameter.

Benchmarks run as smoke tests inside `make test` (timing disabled); `make bench` runs them
for real and tools/bench_report.py turns the JSON into bench/results/latest.{md,json}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
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


def tmpfs_root() -> Path | None:
    """``/dev/shm`` when it is a tmpfs with 2 GiB free, else None."""
    shm = Path("/dev/shm")
    try:
        mounts = Path("/proc/mounts").read_text().split("\n")
        st = os.statvfs(shm)
    except OSError:
        return None
    is_tmpfs = any(f.split()[1:3] == [str(shm), "tmpfs"] for f in mounts if f.strip())
    return shm if is_tmpfs and st.f_bavail * st.f_frsize >= 2 << 30 else None


@pytest.fixture
def page_cache_store(tmp_path: Path) -> Iterator[Path]:
    """A store in the page cache itself: on a tmpfs when there is one, where no byte goes to a
    disk, so a writer's figure is its own cost. On a disk filesystem, the fsync at each
    segment's seal would put the disk into the figure (a 1 GB/s writer cannot show on a
    500 MB/s disk). Writers fsync at most once a minute either way."""
    shm = tmpfs_root()
    base = Path(tempfile.mkdtemp(prefix="vstore-bench-", dir=shm)) if shm else tmp_path
    d = base / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nfsync_interval_s = 60\n")
    try:
        yield d
    finally:
        if shm:
            shutil.rmtree(base, ignore_errors=True)
