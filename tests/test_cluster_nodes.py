"""Nodes of one cluster, as real `vstore serve` processes sharing a real three-member etcd:
the cameras are shared out with exactly one owner each (n1 records through two recorder
processes, n2 in its own); a node killed with SIGKILL has its
cameras recorded again by the other within the lease TTL plus reconnect time, the gap left
visible; a node frozen (SIGSTOP) past its lease stops recording before the other takes over,
and never records those cameras again on waking; a drained node hands over and stops."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest

from tests.service_helpers import (
    cluster_node_store,
    covered_spans,
    make_token,
    start_node,
    vstore,
    wait_for,
)
from tools.camsim import StreamSpec, TcpCamera
from vstore.base import layout
from vstore.cluster.assignment import PlanReader
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.ownership import Ownership

SPEC = StreamSpec(width=160, height=120, fps=10, gop_frames=10)
TTL_S = 4
CAMS = ("cam-a", "cam-b", "cam-c", "cam-d")


@pytest.fixture
def cameras():
    cams = {name: TcpCamera(SPEC) for name in CAMS}
    yield cams
    for c in cams.values():
        c.close()


def _node_store(tmp_path, name, etcd, prefix, cameras, tier=None):
    # n1 records through two recorder processes, n2 in its own process: the fencing and
    # the hand-overs hold for both.
    recorders = 2 if name == "n1" else 1
    return cluster_node_store(
        tmp_path, name, etcd.endpoints, prefix, cameras, TTL_S, recorders, tier
    )


_spans = covered_spans


def _never_both(stores, cams):
    """No instant of any camera was recorded by two nodes."""
    for c in cams:
        a, b = _spans(stores["n1"], c), _spans(stores["n2"], c)
        both = [(x, y) for x in a for y in b if x[0] < y[1] and y[0] < x[1]]
        assert both == [], (c, both)


def _footage(store):
    out = json.loads(vstore("ls", "--store", str(store), "--json").stdout)["cameras"]
    return {c["camera"]: c for c in out}


def _shared_two_each(own: Ownership, plans: PlanReader) -> dict:
    """The claims, once every camera is claimed by the member the assigner's plan names,
    two each (the first node takes all four; the second joining evens them out)."""

    def shared() -> dict | None:
        cl, plan = own.claims(), plans.read()
        owners = {c: v.member for c, v in cl.items()}
        if plan is None or owners != plan.owners or cl.keys() != set(CAMS):
            return None
        return cl if sorted(Counter(owners.values()).values()) == [2, 2] else None

    return wait_for(shared, 20, "the cameras shared two and two")


def test_cameras_are_shared_and_a_killed_node_s_are_recorded_again(tmp_path, etcd, cameras):
    prefix = f"/vstore/nodes-{time.time_ns()}"
    own = Ownership(EtcdClient(etcd.endpoints), prefix)
    plans = PlanReader(EtcdClient(etcd.endpoints), prefix)
    stores = {n: _node_store(tmp_path, n, etcd, prefix, cameras) for n in ("n1", "n2")}
    nodes = {n: start_node(stores[n]) for n in ("n1", "n2")}
    try:
        claims = _shared_two_each(own, plans)
        split = {c: v.member for c, v in claims.items()}
        victims = [c for c in CAMS if split[c] == "n1"]
        doc = json.loads(vstore("cluster", "status", "--store", str(stores["n1"]), "--json").stdout)
        assert {m["name"]: m["cameras"] for m in doc["members"]} == {
            n: sorted(c for c in CAMS if split[c] == n) for n in ("n1", "n2")
        }
        assert doc["unowned"] == [] and all(0 < m["lease_left_s"] <= TTL_S for m in doc["members"])
        assert doc["deleter"]["member"] in ("n1", "n2")  # one elected deleter of tiered footage
        tok = make_token(stores["n2"], "admin", "*")
        metrics = nodes["n2"].get("/metrics", tok).body.decode()
        assert "vstore_cluster_lease_valid 1.0" in metrics
        deleter = 1.0 if doc["deleter"]["member"] == "n2" else 0.0
        assert f"vstore_cluster_deleter {deleter}" in metrics
        assert f"vstore_cluster_cameras_owned {float(len(CAMS) - len(victims))}" in metrics
        time.sleep(2)
        nodes["n1"].proc.kill()  # kill -9: no seal, no goodbye
        killed_ns = time.time_ns()
        t0 = time.monotonic()
        # (one reading of the claims per try: a claim can go between two readings)
        wait_for(lambda: all((cl := own.claims()).get(c) and cl[c].member == "n2" for c in CAMS),
              TTL_S + 10, "n2 to own every camera")  # fmt: skip
        took_s = time.monotonic() - t0
        assert took_s < TTL_S + 2, took_s
        newer = own.claims()
        assert all(newer[c].epoch > claims[c].epoch for c in victims)
        wait_for(lambda: all(cameras[c].connections == 2 for c in victims), 10, "reconnects")
        lead = layout.cluster_leader_key(prefix, "retention")
        client = EtcdClient(etcd.endpoints)
        wait_for(lambda: (kv := client.get(lead)) is not None and kv.value == b"n2", 5,
                 "n2 to be the deleter")  # fmt: skip
        time.sleep(2)
    finally:
        for n in nodes.values():
            if n.proc.poll() is None:
                assert n.stop() == 0
            n.proc.wait()
            if n.proc.stdout is not None:
                n.proc.stdout.close()
    dead, live = _footage(stores["n1"]), _footage(stores["n2"])
    for c in victims:
        # Recorded by n1 until it died, by n2 from a few seconds after: a gap, never an
        # overlap, and the new owner's first packet within the TTL plus reconnect time.
        assert dead[c]["last_ns"] <= killed_ns
        assert live[c]["first_ns"] > dead[c]["last_ns"]
        assert live[c]["first_ns"] - killed_ns < (TTL_S + 4) * 10**9
    _never_both(stores, CAMS)
    assert own.claims() == {}  # n2 left cleanly: its lease and claims are gone


def test_a_frozen_node_stops_before_its_cameras_move_and_a_drained_one_hands_over(
    tmp_path, etcd, cameras
):
    prefix = f"/vstore/freeze-{time.time_ns()}"
    own = Ownership(EtcdClient(etcd.endpoints), prefix)
    plans = PlanReader(EtcdClient(etcd.endpoints), prefix)
    shared = tmp_path / "bucket"  # (a drained node tiers what it holds before it stops)
    stores = {n: _node_store(tmp_path, n, etcd, prefix, cameras, str(shared))
              for n in ("n1", "n2")}  # fmt: skip
    nodes = {n: start_node(stores[n]) for n in ("n1", "n2")}
    try:
        split = _shared_two_each(own, plans)
        victims = [c for c in CAMS if split[c].member == "n1"]
        time.sleep(1)
        os.kill(nodes["n1"].proc.pid, signal.SIGSTOP)  # frozen past its lease
        frozen_ns = time.time_ns()
        taken = wait_for(lambda: (cl := own.claims()).keys() == set(CAMS)
                      and all(cl[c].member == "n2" for c in victims) and cl,
                      TTL_S + 10, "n2 to take over")  # fmt: skip
        time.sleep(1)
        os.kill(nodes["n1"].proc.pid, signal.SIGCONT)
        # Awake, n1 finds its lease gone: it rejoins under a new lease, and the assigner
        # gives it its share back, only as new claims handed over by n2 (newer epochs).
        back = _shared_two_each(own, plans)
        assert all(back[c].epoch > taken[c].epoch for c in CAMS if back[c].member == "n1")
        # Drain n2: its cameras go back to n1 (which rejoined), then n2 stops by itself.
        r = vstore("node", "drain", "n2", "--store", str(stores["n1"]), "--wait", "--json")
        assert json.loads(r.stdout) == {"member": "n2", "draining": False, "left": True}
        wait_for(lambda: nodes["n2"].proc.poll() is not None, 30, "the drained node to stop")
        assert nodes["n2"].proc.returncode == 0
        wait_for(lambda: {v.member for v in own.claims().values()} == {"n1"}
              and own.claims().keys() == set(CAMS), 20, "n1 to own every camera")  # fmt: skip
    finally:
        own.drain("n2", on=False)
        for n in nodes.values():
            if n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGCONT)
                assert n.stop() == 0
            if n.proc.stdout is not None:
                n.proc.stdout.close()
    first = _footage(stores["n1"])
    second = _footage(stores["n2"])
    # Frozen, then awake: n1 recorded nothing while n2 held its cameras.
    _never_both(stores, CAMS)
    for c in victims:
        assert second[c]["first_ns"] > frozen_ns
    assert set(first) >= set(victims)
    # The drained node tiered everything it held before it stopped, and its last word in
    # the bucket says it records nothing and holds nothing untiered.
    listing = json.loads(vstore("ls", "--store", str(stores["n2"]), "--json").stdout)
    assert listing["cameras"] and all(c["local_bytes"] == 0 for c in listing["cameras"])
    uuid = json.loads((stores["n2"] / "meta.json").read_text())["uuid"]
    said = json.loads((shared / layout.node_cameras_key(uuid)).read_text())
    assert said["cameras"] == {} and said["untiered"] == {}


def test_of_two_nodes_the_elected_one_deletes_the_bucket_s_expired_footage_on_schedule(
    tmp_path, etcd, media
):
    """Two real nodes share a bucket and an etcd prefix: at their scheduled retention runs
    only the elected deleter deletes, every store's expired tiered footage but the held,
    objects included, and the other node's index drops what it deleted."""
    prefix = f"/vstore/deleter-nodes-{time.time_ns()}"
    bucket = tmp_path / "bucket"
    src = media("nodes-del.ts", 12.0, codec="h264", gop_frames=25)
    stores = {}
    for name, cam in (("n1", "gate"), ("n2", "lane")):
        store = tmp_path / name / "store"
        vstore("init", "--store", str(store))
        (store / "vstore.toml").write_text(
            f'[store]\nsegment_duration_s = 4\n[tier]\nurl = "{bucket}"\n'
            '[retention]\nmax_age = "30d"\nevery = "10s"\n'
            f'[cluster]\netcd = {json.dumps(etcd.endpoints)}\nname = "{name}"\n'
            f'prefix = "{prefix}"\nlease_ttl_s = 4\ndeletion_delay_s = 0\n'
        )
        vstore("import", "--store", str(store), "--camera", cam, "--start",
               "2025-01-17T01:00:00Z", str(src))  # fmt: skip
        vstore("tier", "run", "--store", str(store), "--older-than", "1s")
        stores[name] = store
    vstore("hold", "add", "--store", str(stores["n2"]), "--camera", "lane", "--by", "det. ray",
           "--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:03Z",
           "--reason", "case 7")  # fmt: skip
    objects = lambda: sorted(p.name for p in bucket.rglob("*.vseg"))
    assert len(objects()) == 6
    nodes = {n: start_node(stores[n]) for n in stores}
    try:
        wait_for(lambda: len(objects()) == 1, 45, "the expired objects to go")
        wait_for(lambda: _footage(stores["n1"])["gate"]["segments"] == 0
                 and _footage(stores["n2"])["lane"]["segments"] == 1, 30,
                 "both indexes to catch up")  # fmt: skip
    finally:
        for n in nodes.values():
            assert n.stop() == 0
            n.proc.wait()
            if n.proc.stdout is not None:
                n.proc.stdout.close()
    purges = {}
    for name, store in stores.items():
        recs = json.loads(vstore("audit", "--store", str(store), "--json").stdout)["records"]
        purges[name] = [r for r in recs if r["action"] == "purge"]
        check = vstore("check", "--store", str(store), check=False)
        assert check.returncode == 0, check.stdout
    assert sorted(len(p) for p in purges.values()) == [0, 5]  # one deleter deleted them all
