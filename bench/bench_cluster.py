"""A city's cluster, simulated on loopback: camera ownership for many cameras over several
members on a real three-member etcd (how long until every camera has its owner; a member
lost: which cameras move, how fast), and looking a camera up in the shared catalog of a real
S3 server (SeaweedFS) with nothing but the bucket. Smoke runs (in `make test`) use a few
hundred cameras."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from vstore.base import layout
from vstore.cluster import assignment
from vstore.cluster.agent import Agent
from vstore.cluster.assignment import PlanReader
from vstore.cluster.ownership import Ownership
from vstore.lifecycle.shared_catalog import FORMAT, VERSION, HourTable, new_summary, open_bucket
from vstore.store.config import ClusterConfig

T0 = 1_737_075_600 * 10**9  # 2025-01-17T01:00:00Z


def _smoke(request) -> bool:
    cfg = request.config
    return cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")


def _city_rates(names: list[str]) -> dict[str, float]:
    """A city's mix of bitrates: most cameras 1-4 Mbit/s, one in ten a 12-16 Mbit/s 4K one."""
    rng = random.Random(11)
    return {
        c: rng.uniform(12e6, 16e6) if rng.random() < 0.1 else rng.uniform(1e6, 4e6) for c in names
    }


def _spread(owners: dict[str, str], rates: dict[str, float], members: list[str]) -> float:
    """The most loaded member's bitrate over the mean of the members'."""
    load = dict.fromkeys(members, 0.0)
    for c, m in owners.items():
        load[m] += rates[c]
    return max(load.values()) / (sum(load.values()) / len(members))


@pytest.mark.timeout(1200)
def test_cluster_assignment_at_city_scale(benchmark, request, etcd, monkeypatch):
    smoke = _smoke(request)
    cams, members, ttl = (300, 3, 4) if smoke else (10_000, 5, 10)
    # (members publish their bitrates every 2 s instead of 10 s: the run waits less for them)
    monkeypatch.setattr(assignment, "LOAD_EVERY_S", 0.5 if smoke else 2.0)
    prefix = f"/vstore/bench-{time.time_ns()}"
    names = [f"cam{i:05d}" for i in range(cams)]
    rates = _city_rates(names)

    def make(k: int) -> Agent:
        stored: dict[str, tuple[float, float]] = {}  # camera -> (when, bytes) so far

        def recorded_bytes() -> dict[str, int]:  # what a recorder would have stored
            now = time.monotonic()
            out = {}
            for c in agent.owned():
                when, n = stored.get(c, (now, 0.0))
                stored[c] = (now, n + rates[c] / 8 * (now - when))
                out[c] = int(stored[c][1])
            return out

        cfg = ClusterConfig(tuple(etcd.endpoints), f"m{k}", prefix, ttl)
        agent = Agent(cfg, lambda: names, lambda: None, recorded_bytes=recorded_bytes)
        return agent

    agents = [make(k) for k in range(members)]
    own = Ownership(agents[0].client, prefix)
    plans = PlanReader(agents[0].client, prefix)
    member_names = [a.name for a in agents]

    def settled(who: list[str]) -> dict[str, str] | None:
        """camera -> member once every camera is held by the member the plan names."""
        claims = {c: cl.member for c, cl in own.claims().items()}
        plan = plans.read()
        ok = plan is not None and len(claims) == cams and claims == plan.owners
        return claims if ok and set(claims.values()) == set(who) else None

    t = time.perf_counter()
    starters = [threading.Thread(target=a.start) for a in agents]
    for s in starters:
        s.start()
    for s in starters:
        s.join()
    # Converged: every camera held by the member the assigner's plan names (the members
    # that started first took the others' cameras, and hand them over as the rest join).
    while (before := settled(member_names)) is None:
        time.sleep(0.2)
    converge_s = time.perf_counter() - t
    by_count = _spread(before, rates, member_names)
    # A district's cameras are replaced by 4K ones (16 Mbit/s), all recorded by one member:
    # once the members have measured the change, an operator's `vstore cluster rebalance`
    # evens the loads out (a bounded round a tick), as the periodic check would.
    upgraded = sorted(c for c, m in before.items() if m == member_names[0])[: cams // 25]
    for c in upgraded:
        rates[c] = 16e6
    by_count_upgraded = _spread(before, rates, member_names)
    time.sleep(12 * assignment.LOAD_EVERY_S)  # (the figures are smoothed over samples)
    t = time.perf_counter()
    assignment.ask_rebalance(agents[0].client, prefix)
    rebalance_key = layout.cluster_rebalance_key(prefix)
    while agents[0].client.get(rebalance_key) is not None or settled(member_names) is None:
        time.sleep(0.2)
    balance_s = time.perf_counter() - t
    before = settled(member_names)
    assert before is not None
    by_bitrate = _spread(before, rates, member_names)
    rebalance_moves = sum(a.assigner.moves for a in agents)
    share = {m: sum(1 for x in before.values() if x == m) for m in member_names}
    # A member dies (not the assigner): no goodbye, its lease runs out.
    dead = next(a for a in reversed(agents) if not a.assign_lead.epoch())
    dead._stop.set()
    dead.member._stop.set()
    t = time.perf_counter()
    while True:
        now = {c: cl.member for c, cl in own.claims().items()}
        if len(now) == cams and dead.name not in now.values():
            break
        time.sleep(0.2)
    reassign_s = time.perf_counter() - t
    moved = [c for c in names if now[c] != before[c]]
    assert all(before[c] == dead.name for c in moved)  # only the dead member's cameras
    assert len(moved) == share[dead.name]
    benchmark.pedantic(lambda: own.claims(), rounds=5, iterations=1)  # reading every claim
    benchmark.extra_info.update(cameras=cams, members=members, ttl_s=ttl, converge_s=converge_s,
                                reassign_s=reassign_s, moved=len(moved), shares=share,
                                spread_by_count=by_count, spread_upgraded=by_count_upgraded,
                                upgraded=len(upgraded), spread_by_bitrate=by_bitrate,
                                balance_s=balance_s, rebalance_moves=rebalance_moves)  # fmt: skip
    for a in agents:
        if a is not dead:
            a.stop()


def _hour_doc(cam: str, hour_ns: int, segments: int) -> bytes:
    """A catalog hour shaped like a recorder's: one-minute segments of 30 two-second GOPs."""
    seg_ns = 3600 * 10**9 // segments
    entries = []
    for i in range(segments):
        start = hour_ns + i * seg_ns
        entries.append({
            "store": "bench-store",
            "row": {"segment_id": i + 1, "start_ns": start, "end_ns": start + seg_ns,
                    "state": "sealed", "location": "s3://city/p",
                    "path": layout.object_key("", cam, start, i + 1, "bench"),
                    "size_bytes": 30_000_000, "sha256": "00" * 32, "chunk_count": 30,
                    "packet_count": 1500, "codecs": ["h264"]},
            "chunks": "",
        })  # fmt: skip
    return json.dumps({"format": FORMAT, "version": VERSION, "camera": cam, "hour_ns": hour_ns,
                       "owner": {"store": "bench-store", "member": "", "epoch": 0},
                       "segments": entries}).encode()  # fmt: skip


@pytest.mark.timeout(1200)
def test_catalog_lookup_from_the_bucket(benchmark, request, seaweed, monkeypatch):
    """`open_bucket` for one camera at one instant: list its catalog, read the hours that may
    hold it, index them; against SeaweedFS holding the catalog of many cameras."""
    smoke = _smoke(request)
    cams, hours = (20, 2) if smoke else (10_000, 2)
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3")
    bucket = f"city-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)

    def put(c: int) -> None:
        for h in range(hours):
            hour = T0 + h * layout.HOUR_NS
            key = "p/" + layout.catalog_object_key(f"cam{c:05d}", hour)
            s3.put_object(Bucket=bucket, Key=key, Body=_hour_doc(f"cam{c:05d}", hour, 60))

    with ThreadPoolExecutor(16) as pool:  # (filling the bucket is not what is measured)
        list(pool.map(put, range(cams)))
    url = f"s3://{bucket}/p"
    rounds = 10 if smoke else 300

    def lookup(i: int) -> float:
        cam = f"cam{(i * 7919) % cams:05d}"
        at = T0 + ((i * 104729) % (hours * 3600)) * 10**9
        t = time.perf_counter()
        with open_bucket(url, [cam], at, at + 60 * 10**9) as st:
            rows = list(st.index.segments(st.camera_num(cam), at, at + 60 * 10**9))
        took = time.perf_counter() - t
        assert rows, (cam, at)
        return took

    # The process's first lookup makes its S3 client and connection: reported on its own,
    # as a node pays it once; the percentiles are of the lookups a running node makes.
    first_s = lookup(rounds)
    times = sorted(lookup(i) for i in range(rounds))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(cameras=cams, hours=hours, objects=cams * hours,
                                p50_s=statistics.median(times), first_s=first_s, rounds=rounds,
                                p99_s=times[min(len(times) - 1, int(len(times) * 0.99))])  # fmt: skip
    if not smoke:
        assert times  # (figures in the report)


def _summary_doc(cam: str, first_hour_ns: int, hours: int, segments: int) -> bytes:
    """A camera's catalog summary with a line per hour, as its writers write it."""
    seg_ns = layout.HOUR_NS // segments
    table = HourTable()
    for h in range(first_hour_ns, first_hour_ns + hours * layout.HOUR_NS, layout.HOUR_NS):
        table.set(h, {"segments": segments, "bytes": segments * 30_000_000, "first_ns": h,
                      "last_ns": h + layout.HOUR_NS, "last_end_ns": h + layout.HOUR_NS,
                      "recorded_ns": segments * seg_ns, "gaps": 0})  # fmt: skip
    doc = new_summary(cam)
    table.store(doc)
    return json.dumps(doc).encode()


@pytest.mark.timeout(3600)
def test_city_retention_planning(benchmark, request, seaweed, etcd, monkeypatch, tmp_path):
    """The cluster's deleter over a city's catalog in SeaweedFS: cameras x 30 days of hours
    (a summary each, the two oldest hours written out), tiered age 30 days. Timed: a full pass
    as a dry run (every summary read); the first real run (a full pass that deletes the oldest
    hour of every camera); a run five minutes later (planned from what the deleter learnt:
    nothing due, nothing read); the run an hour later (the next hour of every camera)."""
    from vstore.api import open_store
    from vstore.cluster.etcd_client import EtcdClient
    from vstore.cluster.leadership import Leadership
    from vstore.cluster.membership import Member
    from vstore.lifecycle.bucket_retention import Deleter, run_bucket_retention
    from vstore.store.config import RetentionPolicy

    smoke = _smoke(request)
    cams, days, per_hour = (20, 2, 60) if smoke else (10_000, 30, 60)
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3")
    prefix = f"ret-{time.time_ns()}"
    hours = days * 24 + 1

    def put(c: int) -> None:
        cam = f"cam{c:05d}"
        root = f"{prefix}/"
        s3.put_object(Bucket=seaweed.bucket, Key=root + layout.catalog_summary_key(cam),
                      Body=_summary_doc(cam, T0, hours, per_hour))  # fmt: skip
        for h in (T0, T0 + layout.HOUR_NS):
            s3.put_object(Bucket=seaweed.bucket, Key=root + layout.catalog_object_key(cam, h),
                          Body=_hour_doc(cam, h, per_hour))  # fmt: skip

    with ThreadPoolExecutor(16) as pool:  # (filling the bucket is not what is measured)
        list(pool.map(put, range(cams)))
    store = open_store(tmp_path / "deleter-store")
    tier = store.tier(f"s3://{seaweed.bucket}/{prefix}")
    client = EtcdClient(etcd.endpoints)
    member = Member(client, f"/vstore/bench-ret-{time.time_ns()}", "m1", 10, {})
    member.join()
    lead = Leadership(client, member.prefix, "retention", member)
    lead.tick()
    deleter = Deleter("m1", lead.epoch(), lead.leads)
    age_ns = days * 86400 * 10**9
    policy = lambda _cam: RetentionPolicy(tiered_max_age_ns=age_ns)
    now = T0 + age_ns + layout.HOUR_NS  # the oldest hour is wholly past the age
    timed: dict[str, float] = {}

    def run(label: str, at: int, dry: bool = False) -> Any:
        t = time.perf_counter()
        res = run_bucket_retention(store, tier, deleter, at, 600 * 10**9, policy, [],
                                   dry_run=dry)  # fmt: skip
        timed[label] = time.perf_counter() - t
        assert res.errors == [], res.errors[:3]
        return res

    try:
        dry = run("full_pass_dry_s", now, dry=True)
        first = run("first_run_s", now)
        later = run("steady_run_s", now + 300 * 10**9)
        hourly = run("hourly_run_s", now + layout.HOUR_NS)
    finally:
        member.leave()
        store.close()
    assert dry.deleted_segments == first.deleted_segments == cams * per_hour
    assert later.cameras == 0 and hourly.cameras == cams
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(cameras=cams, days=days, segments_per_hour=per_hour,
                                deleted_first=first.deleted_segments,
                                deleted_hourly=hourly.deleted_segments, **timed)  # fmt: skip


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.mark.timeout(1800)
def test_failover_from_kill_to_the_new_owner_s_first_packet(benchmark, request, etcd, tmp_path):
    """Two real `vstore serve` nodes record four cameras between them; the node that owns
    half of them is killed (SIGKILL), again and again (each restarted after, taking its
    cameras back): for each kill, the time from the kill to the first packet the other
    node recorded of each moved camera. 20 kills with a 10 s lease (the smoke run: one kill,
    4 s)."""
    from tests.service_helpers import cluster_node_store, start_node, wait_for
    from tools.camsim import StreamSpec, TcpCamera
    from vstore.cluster.etcd_client import EtcdClient

    smoke = _smoke(request)
    kills, ttl = (1, 4) if smoke else (20, 10)
    spec = StreamSpec(width=160, height=120, fps=10, gop_frames=10)
    cams = {f"cam-{x}": TcpCamera(spec) for x in "abcd"}
    prefix = f"/vstore/failover-{time.time_ns()}"
    own = Ownership(EtcdClient(etcd.endpoints), prefix)
    plans = PlanReader(EtcdClient(etcd.endpoints), prefix)
    names = ("n1", "n2")
    stores = {n: cluster_node_store(tmp_path, n, etcd.endpoints, prefix, cams, ttl) for n in names}
    nodes = {n: start_node(stores[n]) for n in names}

    def settled() -> dict[str, str] | None:
        """camera -> node once the plan's two-and-two split is what the claims say."""
        claims = {c: cl.member for c, cl in own.claims().items()}
        plan = plans.read()
        if plan is None or claims != plan.owners or claims.keys() != cams.keys():
            return None
        return claims if sorted(Counter(claims.values()).values()) == [2, 2] else None

    took: list[float] = []  # per kill: the slowest moved camera, seconds
    try:
        split = wait_for(settled, 60, "the split")
        for k in range(kills):
            victim = names[k % 2]
            survivor = names[1 - k % 2]
            moved = [c for c, n in split.items() if n == victim]
            time.sleep(2.0)  # recording on both sides
            nodes[victim].proc.kill()
            killed_ns = time.time_ns()
            nodes[victim].proc.wait()

            first = wait_for(
                lambda: _first_after(stores[survivor], moved, killed_ns),  # noqa: B023
                ttl + 30,
                f"{survivor} to record {moved}",
            )
            took.append(max(first.values()) - killed_ns)
            nodes[victim] = start_node(stores[victim])  # back, and its share with it
            split = wait_for(settled, 60, "the handback")
    finally:
        for n in nodes.values():
            if n.proc.poll() is None:
                n.stop()
        for c in cams.values():
            c.close()
    secs = [t / 1e9 for t in took]
    benchmark.pedantic(lambda: own.claims(), rounds=1, iterations=1)
    benchmark.extra_info.update(
        kills=kills, ttl_s=ttl, cameras=len(cams), failover_s=secs,
        median_s=statistics.median(secs), max_s=max(secs),
    )  # fmt: skip


def _first_after(store, cams: list[str], after_ns: int) -> dict[str, int] | None:
    """Each camera's first recorded instant after ``after_ns`` in ``store``; None until all
    have one."""
    from tests.service_helpers import covered_spans

    out = {}
    for c in cams:
        starts = [a for a, _b in covered_spans(store, c) if a > after_ns]
        if not starts:
            return None
        out[c] = min(starts)
    return out
