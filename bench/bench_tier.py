"""Issue 6 workloads: tier throughput (one and two uploads at a time) vs a plain boto3 upload
of the same files to the same S3 endpoint (moto over HTTP on 127.0.0.1) in the same run; a
cold clip's time to first byte (uncached, and through the read cache) vs the same clip hot;
and live recording's throughput while a tier job runs vs alone."""

from __future__ import annotations

import time

import boto3
import pytest

from tools.camsim import StreamSpec, write_file
from vstore.api import open_store
from vstore.export.clip import clip_bytes
from vstore.ingest.file_import import import_file
from vstore.lifecycle.tiering import plan_tiering, run_tiering, tier_segment

T0 = 1_737_075_600_000_000_000
S = 10**9


@pytest.fixture(scope="module")
def source(request, tmp_path_factory):
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    base = tmp_path_factory.mktemp("tierbench")
    # Full runs: 720p at 4 Mbit/s in 20 s segments (about 10 MB objects, the size of a
    # real camera's one-minute segments at a lower bitrate).
    spec = (
        StreamSpec(gop_frames=50)
        if smoke
        else StreamSpec(width=1280, height=720, gop_frames=50, bitrate=4_000_000, noise=24)
    )
    src = base / "src.ts"
    write_file(str(src), spec, 8 if smoke else 60)
    return src, base, 4 if smoke else 20


def _store(base, src, name, seg_s=4, extra=""):
    d = base / name
    d.mkdir()
    (d / "vstore.toml").write_text(f"[store]\nsegment_duration_s = {seg_s}\n{extra}")
    st = open_store(d)
    import_file(st, src, "cam", T0)
    return st


@pytest.mark.parametrize("parallel", [1, 2])
def test_tier_throughput(benchmark, source, s3_env, bucket, parallel):
    """vstore tiering (verify, upload, check, index flip, local delete) of every segment."""
    src, base, seg_s = source
    runs = iter(range(100))

    def setup():
        st = _store(base, src, f"t{parallel}-{next(runs)}", seg_s)
        return (st, st.tier(f"s3://{bucket}/bench")), {}

    def run(st, tier):
        # Uncapped: this measures how fast tiering can go, not the default pace.
        res = run_tiering(st, tier, 0, parallel=parallel, max_rate_bytes=0)
        assert res.tiered == res.planned > 0
        st.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    st = _store(base, src, f"size{parallel}", seg_s)
    rows = plan_tiering(st, 0)
    benchmark.extra_info.update(
        bytes=sum(r.size_bytes for r in rows), objects=len(rows), parallel=parallel
    )
    st.close()


def test_tier_baseline_plain_boto3_upload(benchmark, source, s3_env, bucket):
    """Baseline: boto3 put_object of the same segment files to the same endpoint."""
    src, base, seg_s = source
    st = _store(base, src, "plain", seg_s)
    files = [st.layout.path(r.path) for r in plan_tiering(st, 0)]
    st.close()
    s3 = boto3.client("s3", endpoint_url=s3_env)

    def run():
        for i, f in enumerate(files):
            with open(f, "rb") as fh:
                s3.put_object(Bucket=bucket, Key=f"plain/{i}", Body=fh)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(bytes=sum(f.stat().st_size for f in files), objects=len(files))


@pytest.mark.parametrize("where", ["hot", "cold", "cold-cached"])
def test_clip_first_byte_hot_vs_cold(benchmark, source, s3_env, bucket, where):
    """Time to first byte of a streamed (fMP4) 4 s clip, from local disk, from S3 with no
    read cache (every round pays the GETs), or from S3 through the read cache."""
    src, base, _seg_s = source
    cache = '[tier]\ncache = "0"\n' if where == "cold" else ""
    st = _store(base, src, f"ttfb-{where}", 4, cache)
    if where != "hot":
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


@pytest.mark.parametrize(
    "while_tiering",
    [None, "auto", 0],
    ids=["alone", "while-tiering", "while-tiering-uncapped"],
)
def test_recording_while_tiering(benchmark, source, tmp_path, while_tiering):
    """Live recording (writer with index commits, 20 KB packets) alone, and while a tier job
    (2 uploads at a time, to a directory tier on the same disk, at its default pace or
    uncapped) moves another camera's footage: the ratio shows what tiering takes."""
    import threading

    from bench.conftest import camera_packets
    from vstore import TrackInfo
    from vstore.tier import LocalTier

    src, base, seg_s = source
    video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
    packets = camera_packets(4000, 20000)
    runs = iter(range(100))
    tier_rates: list[float] = []  # the tier job's own MB/s, per round
    paces: list[int] = []  # the pace it chose (bytes/s of footage, 0: uncapped)
    overlapped: list[bool] = []  # per round: the tier job still ran when recording ended
    last: list[tuple] = []  # the previous round's store and tier thread

    failures: list[BaseException] = []

    def finish_last():
        while last:
            st, th = last.pop()
            if th is not None:
                th.join()
            st.close()
        if failures:
            raise failures[0]

    def setup():
        # The previous round's tier job may outlast its recording: it ends here, untimed.
        finish_last()
        n = next(runs)
        st = _store(base, src, f"rec-{while_tiering}-{n}", seg_s)
        stop = threading.Event()

        def tier_job():
            try:
                cold = LocalTier(tmp_path / f"cold-{n}")
                res = run_tiering(st, cold, 0, parallel=2, max_rate_bytes=while_tiering)
                tier_rates.append(res.bytes / 1e6 / res.seconds if res.seconds else 0.0)
                paces.append(res.max_rate_bytes)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread (finish_last)
                failures.append(exc)
            finally:
                stop.set()

        th = threading.Thread(target=tier_job) if while_tiering is not None else None
        last.append((st, th))
        return (st, th, stop), {}

    def run(st, th, stop):
        # Timed: the recording only, from the tier job's start to the writer's close.
        if th is not None:
            th.start()
        w = st.writer("live", [video], start_ns=T0 + 3600 * S)
        for i, data in enumerate(packets):
            w.write_raw(0, i * 3600, i * 3600, False, data)
        w.close()
        if th is not None:
            overlapped.append(not stop.is_set())

    try:
        benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    finally:
        finish_last()
    benchmark.extra_info.update(
        packets=len(packets),
        bytes=sum(map(len, packets)),
        tier_mb_s=tier_rates,
        tier_pace_bytes=paces,
        tier_ran_throughout=overlapped,
    )
