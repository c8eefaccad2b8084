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

import av
import pytest

from tests.conftest import bucket, etcd, moto_endpoint, s3_env, seaweed  # noqa: F401 - shared
from tools.camsim import StreamSpec, write_file
from vstore import _native
from vstore.api import open_store
from vstore.ingest.file_import import import_file

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


# --- an hour of footage, for the clip and HTTP benchmarks -------------------------------------

T0 = 1_737_075_600_000_000_000
NS = 1_000_000_000


def _hour_mp4(base: Path, loop_s: int, loops: int, spec: StreamSpec) -> Path:
    """Encode loop_s seconds once, then remux it `loops` times back to back (same bytes)."""
    one = base / "loop.ts"
    write_file(str(one), spec, loop_s)
    out = base / "hour.mp4"
    with av.open(str(one)) as src, av.open(str(out), "w") as dst:
        vs = src.streams.video[0]
        os_ = dst.add_stream_from_template(vs)
        pkts = [p for p in src.demux(vs) if p.size]
        first = pkts[0].dts
        span = loop_s * vs.time_base.denominator // vs.time_base.numerator
        for k in range(loops):
            for p in pkts:
                q = av.Packet(bytes(p))
                q.pts, q.dts = p.pts - first + k * span, p.dts - first + k * span
                q.time_base, q.stream, q.is_keyframe = vs.time_base, os_, p.is_keyframe
                dst.mux(q)
    return out


@pytest.fixture(scope="session")
def footage(request, tmp_path_factory):
    """An hour of 1080p H.264 (a minute encoded once, then looped), imported into a store;
    smoke runs (`make test`) use two minutes of 320x240. Shared by the clip and HTTP rows."""
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    base = tmp_path_factory.mktemp("clipbench")
    if smoke:
        spec, loop_s, loops, clip_at = StreamSpec(gop_frames=50), 10, 12, 30
    else:  # 1080p, 25 fps, ~4 Mbit/s, 2 s GOP, one hour
        spec = StreamSpec(width=1920, height=1080, gop_frames=50, bitrate=4_000_000)
        loop_s, loops, clip_at = 60, 60, 1800
    mp4 = _hour_mp4(base, loop_s, loops, spec)
    store_dir = base / "store"
    with open_store(store_dir) as st:
        import_file(st, mp4, "cam", T0)
    clip_s = 60 if not smoke else 20
    return {"mp4": mp4, "store": store_dir, "start": clip_at, "end": clip_at + clip_s, "tmp": base}


@pytest.fixture(scope="session")
def city_hour(request, tmp_path_factory):
    """An hour of footage as a city camera records it: the real-footage benchmark's 20
    minutes of 1080p H.264 at 4 Mbit/s with 2 B-frames and AAC, imported three times back to
    back (smoke runs: its 18 s of 180p, three times). Clips start between frames. Shared by
    the node's HTTP rows and the evidence rows."""
    from bench.bench_real_footage import _smoke, make_footage

    smoke = _smoke(request.config)
    src = make_footage("h264", smoke)
    base = tmp_path_factory.mktemp("cityhour")
    store = base / "store"
    with open_store(store) as st:
        at = T0
        for _ in range(3):
            at = import_file(st, src, "cam", at).end_ns
    length_s = (at - T0) / NS
    start = 1800.017 if not smoke else 20.017
    return {"store": store, "tmp": base, "start": start, "end": start + (60 if not smoke else 6),
            "hour_s": length_s}  # fmt: skip
