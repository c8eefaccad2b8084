"""Membership and camera ownership on a real three-member etcd (Debian's etcd-server on
loopback): who should record a camera (weighted rendezvous, pins, drains), claims bound to
leases with increasing epochs, exactly one owner per camera, a member that stops renewing
losing its cameras to the others, and etcd's leader dying without a member noticing."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from vstore.base.errors import ClusterError
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.membership import Member
from vstore.cluster.ownership import MemberInfo, Ownership, preferred

_prefixes = itertools.count()


@pytest.fixture
def prefix():
    return f"/vstore/test-{time.time_ns()}-{next(_prefixes)}"


def test_who_should_record_is_balanced_stable_and_moves_only_what_it_must():
    cams = [f"cam{i}" for i in range(2000)]
    four = [MemberInfo(n) for n in ("a", "b", "c", "d")]
    share = Counter(preferred(c, four, {}) for c in cams)
    assert set(share) == {"a", "b", "c", "d"}
    assert all(400 <= n <= 600 for n in share.values()), share
    # A member leaves: only its own cameras move, spread over the others.
    three = [m for m in four if m.name != "d"]
    moved = [c for c in cams if preferred(c, four, {}) != preferred(c, three, {})]
    assert all(preferred(c, four, {}) == "d" for c in moved)
    assert Counter(preferred(c, three, {}) for c in moved).keys() == {"a", "b", "c"}
    # Weights, pins and drains.
    heavy = [MemberInfo("a", 3.0), MemberInfo("b", 1.0)]
    w = Counter(preferred(c, heavy, {}) for c in cams)
    assert 2.4 < w["a"] / w["b"] < 3.6, w
    assert preferred("cam7", four, {"cam7": "c"}) == "c"
    assert preferred("cam7", four, {"cam7": "gone"}) in {"a", "b", "c", "d"}
    drained = [MemberInfo("a", draining=True), MemberInfo("b")]
    assert {preferred(c, drained, {}) for c in cams[:50]} == {"b"}
    assert preferred("x", [MemberInfo("a", draining=True)], {}) is None


def test_claims_have_one_owner_each_and_increasing_epochs(etcd, prefix):
    client = EtcdClient(etcd.endpoints)
    own = Ownership(client, prefix)
    a = Member(client, prefix, "a", 5, {"node": "n1"})
    b = Member(client, prefix, "b", 5, {"node": "n2"})
    a.join()
    b.join()
    try:
        assert [m.name for m in own.members()] == ["a", "b"]
        with pytest.raises(ClusterError, match="already in the cluster"):
            Member(client, prefix, "a", 5, {}).join()
        ca = own.claim("gate", "a", a.lease_id)
        assert ca is not None and ca.epoch > 0
        assert own.claim("gate", "b", b.lease_id) is None  # held: one owner at a time
        assert own.claims()["gate"].member == "a"
        # Given back, then taken by the other: a newer epoch.
        assert own.release(ca)
        assert not own.release(ca)  # only once
        cb = own.claim("gate", "b", b.lease_id)
        assert cb is not None and cb.epoch > ca.epoch
        # A stale holder's release cannot remove the newer claim.
        assert not own.release(ca) and own.claims()["gate"] == cb
        # Claims in batches: one transaction for a batch; a batch with a camera another holds
        # still claims the rest, one by one, and never the one held.
        many = own.claim_many(["door", "gate", "yard"], "a", a.lease_id)
        assert [c.camera for c in many] == ["door", "yard"]
        assert {c: v.member for c, v in own.claims().items()} == {
            "door": "a",
            "gate": "b",
            "yard": "a",
        }
        batch = own.claim_many([f"cam{i}" for i in range(100)], "a", a.lease_id)
        assert len(batch) == 100 and len({c.epoch for c in batch}) == 2  # 64 + 36
        # Given back in batches too; a batch holding a stale claim (ca: "gate" is b's now)
        # still gives the rest back, and never b's.
        assert own.release_many([ca, *batch]) == 100
        assert {c: v.member for c, v in own.claims().items()} == {
            "door": "a",
            "gate": "b",
            "yard": "a",
        }
    finally:
        a.leave()
        b.leave()
    assert own.claims() == {} and own.members() == []  # leases revoked: keys gone


def test_a_member_that_stops_renewing_loses_its_cameras_before_another_takes_them(etcd, prefix):
    client = EtcdClient(etcd.endpoints)
    own = Ownership(client, prefix)
    lost: list[str] = []
    a = Member(client, prefix, "a", 4, {}, on_lost=lost.append)
    b = Member(client, prefix, "b", 4, {})
    a.join()
    b.join()
    try:
        ca = own.claim("gate", "a", a.lease_id)
        assert ca is not None and a.valid()
        # a's keepalives stop reaching etcd (a partition): it stops acting before its lease
        # can expire at etcd, and only then can b take the camera.
        a.client = EtcdClient(["http://127.0.0.1:9"], timeout_s=0.2)
        deadline = time.monotonic() + 10
        while a.valid() and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = time.monotonic()
        assert not a.valid()  # (by the clock, at once; the callback follows on the next try)
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lost == ["etcd unreachable past the lease"]
        taken = None
        while taken is None and time.monotonic() < deadline + 10:
            taken = own.claim("gate", "b", b.lease_id)
            time.sleep(0.1)
        assert taken is not None and taken.epoch > ca.epoch
        assert time.monotonic() - stopped > 0.5  # a had stopped well before b could start
    finally:
        a.leave()
        b.leave()


def test_the_etcd_leader_dies_and_members_go_on(tmp_path, prefix):
    from tests.cluster_servers import EtcdCluster

    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        client = EtcdClient(cluster.endpoints)
        own = Ownership(client, prefix)
        a = Member(client, prefix, "a", 6, {})
        a.join()
        claim = own.claim("gate", "a", a.lease_id)
        assert claim is not None
        cluster.kill(cluster.leader())
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:  # past a whole lease (6 s) after the leader died
            assert a.valid()
            time.sleep(0.2)
        assert own.claims()["gate"] == claim and own.claim("door", "a", a.lease_id) is not None
        a.leave()
    finally:
        cluster.stop()


def test_the_cluster_section_is_read_and_its_mistakes_named(tmp_path):
    from pathlib import Path

    from vstore.base.errors import ConfigError
    from vstore.store.config import parse_config

    where = Path("vstore.toml")
    assert parse_config("", where).cluster.etcd == ()  # no section: no cluster
    base = '[cluster]\netcd = "http://e1:2379"\nprefix = "/vstore/city"\n'
    c = parse_config(base + 'name = "n1"\npins = {cam = "n2"}\n', where).cluster
    assert (c.etcd, c.name, c.prefix, c.lease_ttl_s, c.pins) == (
        ("http://e1:2379",),
        "n1",
        "/vstore/city",
        10,
        {"cam": "n2"},
    )
    for text, says in (
        ("[cluster]\netcd = [1]\n", "etcd is a list"),
        ('[cluster]\nprefix = "vstore"\n', "prefix is an etcd key path"),
        ("[cluster]\nlease_ttl_s = 1\n", "lease_ttl_s must be"),
        ('[cluster]\nname = "a b"\n', "name is letters"),
        ("[cluster]\nttl = 5\n", "unknown key(s) ttl"),
        # A [cluster] that names no etcd would make a node of its own of every camera.
        ('[cluster]\nname = "n1"\nprefix = "/vstore/city"\n', "needs etcd = "),
        ("[cluster]\netcd = []\n", "needs etcd = "),
        ('[cluster]\netcd = ["ftp://e1:2379"]\n', "give http://HOST:PORT"),
        ('[cluster]\netcd = ["http://e1:port"]\n', "give http://HOST:PORT"),
        # Left out, the node made a cluster of its own: every camera recorded twice.
        ('[cluster]\netcd = "http://e1:2379"\n', "needs prefix = "),
        (base + 'name = ""\n', "name is empty"),
    ):
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
            parse_config(text, where)
    # A pin of a camera the file does not list is said (a typo pins nothing).
    text = base + 'pins = {cam = "n2", cma = "n2"}\n[cameras.cam]\n'
    (note,) = parse_config(text + 'url = "rtsp://h/s"\n', where).notes
    assert "pins name camera(s) not in [cameras]: cma" in note


def test_drain_refuses_what_it_cannot_do_and_a_drained_member_takes_a_share_when_started(
    etcd, capsys
):
    """`node drain` refuses a timeout of no time, and the only member that records (its
    cameras would be recorded by nobody); a drain left standing (asked without --wait)
    ends when the member starts again: it takes a share again, as deploy.md says."""
    from vstore.cli.main import main
    from vstore.cluster.agent import Agent
    from vstore.cluster.etcd_client import EtcdClient
    from vstore.cluster.membership import Member
    from vstore.cluster.ownership import Ownership
    from vstore.store.config import ClusterConfig

    prefix = f"/vstore/drains-{time.time_ns()}"
    where = ["--etcd", ",".join(etcd.endpoints), "--prefix", prefix]
    client = EtcdClient(etcd.endpoints)
    a = Member(client, prefix, "a", 10, {})
    a.join()
    try:
        assert main(["node", "drain", "a", *where]) == 2
        assert "only member that records" in capsys.readouterr().err
        b = Member(client, prefix, "b", 10, {})
        b.join()
        assert main(["node", "drain", "a", "--wait", "--timeout", "-5", *where]) == 2
        assert "give seconds above 0" in capsys.readouterr().err
        # A drain never asked is no drain to cancel (it used to say "drain cancelled").
        assert main(["node", "drain", "b", "--cancel", *where]) == 3
        assert "no drain of 'b' to cancel" in capsys.readouterr().err
        assert main(["node", "drain", "b", *where]) == 0  # (asked, not waited for)
        own = Ownership(client, prefix)
        assert {m.name: m.draining for m in own.members()} == {"a": False, "b": True}
        b.leave()  # drained, it stopped; started again, it takes cameras again
        agent = Agent(ClusterConfig(tuple(etcd.endpoints), "b", prefix, 6), list, lambda: None)
        agent.start()
        try:
            assert {m.name: m.draining for m in own.members()} == {"a": False, "b": False}
        finally:
            agent.stop()
    finally:
        a.leave()
