"""Issue 6 workloads: tier throughput vs a plain boto3 upload of the same files to the same
S3 endpoint (moto over HTTP on 127.0.0.1) in the same run, and a cold clip's time to first
byte vs the same clip hot."""

from __future__ import annotations

import time

import boto3
import pytest

from tools.camsim import StreamSpec, write_file
from vstore.clip import clip_bytes
from vstore.ingest import import_file
from vstore.store import open_store
from vstore.tiering import plan_tiering, tier_segment

T0 = 1_737_075_600_000_000_000
S = 10**9


@pytest.fixture(scope="module")
def source(request, tmp_path_factory):
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    base = tmp_path_factory.mktemp("tierbench")
    spec = (
        StreamSpec(gop_frames=50)
        if smoke
        else StreamSpec(width=1280, height=720, gop_frames=50, bitrate=4_000_000)
    )
    src = base / "src.ts"
    write_file(str(src), spec, 8 if smoke else 40)
    return src, base


def _store(base, src, name):
    d = base / name
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    st = open_store(d)
    import_file(st, src, "cam", T0)
    return st


def test_tier_throughput(benchmark, source, s3_env, bucket):
    """vstore tiering (verify, upload, check, index flip, local delete) of every segment."""
    src, base = source
    runs = iter(range(100))

    def setup():
        st = _store(base, src, f"t{next(runs)}")
        return (st, st.tier(f"s3://{bucket}/bench"), plan_tiering(st, 0)), {}

    def run(st, tier, rows):
        for r in rows:
            tier_segment(st, tier, r, "cam")
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    st = _store(base, src, "size")
    benchmark.extra_info["bytes"] = sum(r.size_bytes for r in plan_tiering(st, 0))
    st.close()


def test_tier_baseline_plain_boto3_upload(benchmark, source, s3_env, bucket):
    """Baseline: boto3 put_object of the same segment files to the same endpoint."""
    src, base = source
    st = _store(base, src, "plain")
    files = [st.layout.path(r.path) for r in plan_tiering(st, 0)]
    st.close()
    s3 = boto3.client("s3", endpoint_url=s3_env)

    def run():
        for i, f in enumerate(files):
            with open(f, "rb") as fh:
                s3.put_object(Bucket=bucket, Key=f"plain/{i}", Body=fh)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["bytes"] = sum(f.stat().st_size for f in files)


@pytest.mark.parametrize("where", ["hot", "cold"])
def test_clip_first_byte_hot_vs_cold(benchmark, source, s3_env, bucket, where):
    """Time to first byte of a streamed (fMP4) 4 s clip, from local disk or from S3."""
    src, base = source
    st = _store(base, src, f"ttfb-{where}")
    if where == "cold":
        tier = st.tier(f"s3://{bucket}/ttfb")
        for r in plan_tiering(st, 0):
            tier_segment(st, tier, r, "cam")
    firsts = []

    def run():
        t = time.perf_counter()
        it = clip_bytes(st, "cam", T0 + 2 * S, T0 + 6 * S, format="fmp4")
        next(it)
        firsts.append(time.perf_counter() - t)
        for _ in it:
            pass

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["first_byte_s_median"] = sorted(firsts)[len(firsts) // 2]
    st.close()
