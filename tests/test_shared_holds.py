"""Holds the whole city honours: a hold placed on one store binds every store of the bucket
(their retention keeps what it covers, their own objects get object legal holds), is
released from any store, and binds still when the bucket cannot be read."""

from __future__ import annotations

import json

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base.errors import NotFound, TierError, UsageError
from vstore.ingest.file_import import import_file
from vstore.jobs import registry
from vstore.lifecycle.retention import run_retention
from vstore.lifecycle.tiering import run_tiering
from vstore.store import shared_holds
from vstore.store.holds import list_holds

S = 10**9


def _store(tmp_path, media, name, bucket_url, start_ns=START_NS):
    d = tmp_path / name
    d.mkdir()
    (d / "vstore.toml").write_text(
        f'[store]\nsegment_duration_s = 4\n[tier]\nurl = "{bucket_url}"\n'
    )
    st = open_store(d)
    import_file(st, media("holds-src.ts", 12.0, codec="h264", gop_frames=25), "gate", start_ns)
    return st


def _hold(st, action, **params):
    return registry.run(st, "hold", {"action": action, "by": "det. ray", **params})


def _chunks(st):
    return len(list(st.index.chunks(st.camera_num("gate"), -(2**63), 2**63 - 1)))


def test_a_hold_placed_on_one_store_binds_the_others_until_released_on_any(tmp_path, media):
    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)  # the camera's earlier owner: same camera, same times
    try:
        held = _hold(a, "add", camera="gate", from_ns=START_NS + 2 * S, to_ns=START_NS + 3 * S,
                     reason="case 12")  # fmt: skip
        assert held["objects"]["errors"] == []
        # b learns of it at its next retention run, which then keeps what it covers.
        _plan, res = run_retention(b, max_age_ns=1)
        assert res is not None and res.errors == []
        theirs = [h for h in list_holds(b) if h.origin]
        assert [(h.camera, h.reason, h.origin) for h in theirs] == [
            ("gate", "case 12", f"{a.uuid}#{held['id']}")
        ]
        # Where it was placed (a node of its own: its host name), for a list to say where
        # its number is that node's.
        assert theirs[0].placed_via == __import__("socket").gethostname()
        assert _chunks(b) > 0  # the held GOPs stayed; the rest went
        kept = _chunks(b)
        recs = [r for r in b.index.audit_records() if r["action"] == "hold_add"]
        assert recs and recs[-1]["detail"]["via"] == "shared holds"
        # Hold numbers are each store's own: the number a placed it under may be another
        # hold on b. Named with the camera it is meant for, a release of the wrong one is
        # refused, and nothing is released.
        mine = _hold(b, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + S, reason="x")
        with pytest.raises(UsageError, match=r"of camera 'gate' .*not 'lane': nothing released"):
            _hold(b, "release", id=mine["id"], reason="case closed", camera="lane")
        assert len(list_holds(b)) == 2
        # Released on b (not where it was placed) by the name it has on every store (the
        # node it was placed through, its number there): a takes the release from the bucket.
        name = f"{theirs[0].placed_via}:{held['id']}"
        assert held["name"] == name
        # The placing node says where it was placed as the others do (it said "" before).
        assert (held["origin"], held["placed_via"]) == (theirs[0].origin, theirs[0].placed_via)
        with pytest.raises(NotFound, match="no hold 'nowhere:1'"):
            _hold(b, "release", id="nowhere:1", reason="case closed")
        out = _hold(b, "release", id=name, reason="case closed", camera="gate")
        assert (out["id"], out["name"]) == (theirs[0].id, name)
        _hold(b, "release", id=mine["id"], reason="case closed")
        assert not [h for h in list_holds(b) if h.origin]
        out = _hold(a, "sync")
        assert out["shared"]["released"] == 1 and list_holds(a) == []
        _plan, res = run_retention(b, max_age_ns=1)
        assert _chunks(b) < kept  # nothing holds it any longer
    finally:
        a.close()
        b.close()


def test_holds_brought_in_still_bind_when_the_bucket_cannot_be_read(tmp_path, media, monkeypatch):
    from vstore.tier import LocalTier

    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)
    try:
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c 9")
        assert shared_holds.sync(b).brought_in == 1

        def unreachable(self, prefix):
            raise TierError(f"{self.url}: endpoint unreachable")

        monkeypatch.setattr(LocalTier, "list_prefix", unreachable)  # the bucket is down
        before = _chunks(b)
        _plan, res = run_retention(b, max_age_ns=1)
        assert _chunks(b) == before  # everything is still held
        assert res is not None and any("shared holds" in e for e in res.errors)
    finally:
        a.close()
        b.close()


@pytest.mark.s3
def test_other_stores_objects_get_object_legal_holds_from_a_shared_hold(
    tmp_path, media, s3_env, lock_bucket
):
    url = f"s3://{lock_bucket}/city"
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)
    try:
        run_tiering(b, b.tier(url), 5 * S)  # b's footage is in the bucket
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c 3")
        out = _hold(b, "sync")
        assert out["shared"]["brought_in"] == 1 and out["objects"]["held"] == 3
        # Synced again with nothing changed: the listing's version tags say so, nothing read.
        assert shared_holds.sync(b).read == 0
        assert shared_holds.sync(a).read == 1  # (a wrote its hold; reads it once)
        assert shared_holds.sync(a).read == 0
        tier = b.tier(url)
        keys = [o.key for o in tier.list_prefix("gate/")]
        assert len(keys) == 3 and all(tier.legal_hold(k) for k in keys)
        with pytest.raises(TierError):  # the object store itself refuses
            tier.delete(keys[0])
        # A release written by a: b reads that one object again, takes the release, and
        # lifts its objects' legal holds in the same exchange.
        (mine,) = list_holds(a)
        _hold(a, "release", id=mine.id, reason="case closed")
        again = shared_holds.sync(b)
        assert (again.read, again.released) == (1, 1) and not list_holds(b)
        assert again.objects.lifted == 3 and not any(tier.legal_hold(k) for k in keys)
    finally:
        a.close()
        b.close()


@pytest.mark.s3
def test_a_retention_run_that_brings_in_a_hold_or_its_release_updates_object_legal_holds(
    tmp_path, media, s3_env, lock_bucket
):
    """The retention run takes the other stores' holds in first: their objects' legal holds
    follow at once, put on for a hold and lifted for its release (else the deleter could
    never purge released footage)."""
    url = f"s3://{lock_bucket}/ret"
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)
    try:
        run_tiering(b, b.tier(url), 5 * S)
        tier = b.tier(url)
        keys = [o.key for o in tier.list_prefix("gate/")]
        assert len(keys) == 3 and not any(tier.legal_hold(k) for k in keys)
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c 4")
        _plan, res = run_retention(b, max_age_ns=10**18)
        assert res is not None and res.errors == []
        assert all(tier.legal_hold(k) for k in keys)
        (mine,) = list_holds(a)
        _hold(a, "release", id=mine.id, reason="case closed")
        _plan, res = run_retention(b, max_age_ns=10**18)
        assert res is not None and res.errors == [] and not list_holds(b)
        assert not any(tier.legal_hold(k) for k in keys)
    finally:
        a.close()
        b.close()


def test_a_retention_job_that_brings_in_another_store_s_hold_finishes(tmp_path, media):
    """The retention job holds the store's retention lock while its run brings in the
    holds other stores placed, and bringing one in takes that lock too: the run must not
    wait on itself (it hung, and a node's whole schedule with it)."""
    import threading

    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)
    try:
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 3 * S, reason="c9")
        out: dict = {}
        t = threading.Thread(
            target=lambda: out.update(registry.run(b, "retention", {"max_age_ns": 1})),
            daemon=True,
        )
        t.start()
        t.join(60)
        assert not t.is_alive(), "the retention job waited on itself"
        assert out["deleted_segments"] >= 1 and out["errors"] == []
        assert [h.origin for h in list_holds(b) if h.origin]  # brought in, and kept
        assert _chunks(b) > 0
    finally:
        a.close()
        b.close()


def test_a_hold_is_placed_through_a_store_that_has_none_of_the_camera_s_footage(tmp_path, media):
    """Holds are placed through any node: a store that has none of the camera's footage
    places it when the bucket's catalog knows the camera (or its own config lists it), and
    the store that has the footage keeps what it covers. A camera nobody knows is refused."""
    from vstore.base.errors import NotFound
    from vstore.lifecycle.tiering import run_tiering

    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    d = tmp_path / "b"
    d.mkdir()
    (d / "vstore.toml").write_text(f'[tier]\nurl = "{url}"\n[cameras.door]\n')
    b = open_store(d)  # (no footage at all)
    try:
        run_tiering(a, a.tier(url), 5 * S)  # (the bucket's catalog now knows "gate")
        out = _hold(b, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 3 * S,
                    reason="case 21")  # fmt: skip
        assert "shared with every store of the bucket" in out["warning"]
        assert (
            _hold(b, "add", camera="door", from_ns=START_NS, to_ns=START_NS + S, reason="case 22")[
                "camera"
            ]
            == "door"
        )  # (configured here)
        with pytest.raises(NotFound, match="unknown camera"):
            _hold(b, "add", camera="nowhere", from_ns=START_NS, to_ns=START_NS + S, reason="x")
        _plan, res = run_retention(a, max_age_ns=1, tiered_max_age_ns=1)
        assert res is not None and res.errors == []
        assert sorted(h.reason for h in list_holds(a) if h.origin) == ["case 21", "case 22"]
        left = [r for r in a.index.segments(a.camera_num("gate")) if r.start_ns < START_NS + 3 * S]
        assert left  # what it covers stayed
    finally:
        a.close()
        b.close()


def test_the_command_names_a_shared_hold_as_every_node_does_and_releases_it_by_that_name(
    tmp_path, media, capsys, etcd
):
    """`vstore hold` gives a shared hold its name (the node it was placed through, its
    number there): `hold list` on another node shows it beside that node's own number for
    it, and `hold release NODE:N` there releases that very hold."""
    from vstore.cli.main import main

    url = str(tmp_path / "bucket")
    for name in ("a", "b"):
        _store(tmp_path, media, name, url).close()
        with open(tmp_path / name / "vstore.toml", "a") as f:
            f.write(f'[cluster]\netcd = {json.dumps(etcd.endpoints)}\nname = "node-{name}"\n'
                    'prefix = "/hold-names"\n')  # fmt: skip
    a, b = (str(tmp_path / n) for n in ("a", "b"))
    # b's own hold #1 first: the number a gives its hold is another hold on b.
    common = ["--camera", "gate", "--from", "2025-01-17T01:00:00Z", "--to",
              "2025-01-17T01:00:03Z", "--by", "det. ray"]  # fmt: skip
    assert main(["hold", "add", "--store", b, *common, "--reason", "case b"]) == 0
    assert main(["hold", "add", "--store", a, *common, "--reason", "case a"]) == 0
    assert "hold #1 (node-a:1) placed on gate" in capsys.readouterr().out
    assert main(["hold", "sync", "--store", b]) == 0
    capsys.readouterr()
    assert main(["hold", "list", "--store", b]) == 0
    listed = capsys.readouterr().out
    assert "NAME" in listed and "node-b:1" in listed and "node-a:1" in listed
    assert main(["hold", "release", "node-a:1", "--store", b, "--by", "sgt. lee",
                 "--reason", "case closed"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "hold #2 (node-a:1) released by sgt. lee" in out and "'case a'" in out
    assert main(["hold", "release", "node-c:1", "--store", b, "--by", "x"]) == 3
    assert "no hold 'node-c:1'" in capsys.readouterr().err
    # a takes the release: only b's hold binds there, under the same name.
    assert main(["hold", "sync", "--store", a]) == 0
    capsys.readouterr()
    assert main(["hold", "list", "--store", a, "--json"]) == 0
    holds = json.loads(capsys.readouterr().out)["holds"]
    assert [(h["name"], h["reason"]) for h in holds] == [("node-b:1", "case b")]


def test_a_hold_the_bucket_cannot_take_is_placed_here_and_says_it_is_not_shared(
    tmp_path, media, capsys
):
    """The bucket refuses the hold's shared object: the hold is recorded and binds here,
    and the command says that sharing failed (exit 9), not that tiered objects did."""
    from vstore.cli.main import main

    (tmp_path / "not-a-dir").write_bytes(b"")
    _store(tmp_path, media, "a", str(tmp_path / "not-a-dir" / "bucket")).close()
    a = str(tmp_path / "a")
    assert main(["hold", "add", "--store", a, "--camera", "gate", "--from",
                 "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:03Z", "--by", "det. ray",
                 "--reason", "case 5"]) == 9  # fmt: skip
    err = capsys.readouterr().err
    assert "not yet shared with the other stores of the bucket" in err
    assert "hold #1 itself is recorded here and binds" in err and "tiered object" not in err
    st = open_store(a)
    try:
        assert [h.reason for h in list_holds(st)] == ["case 5"]
    finally:
        st.close()


def test_a_hold_released_through_two_nodes_at_once_keeps_the_first_release_everywhere(
    tmp_path, media
):
    """Released through b, then through a before a has heard of it: the bucket keeps the
    first release (a conditional write), a takes it and says so, and every store and the
    bucket name the same releaser."""
    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url)
    try:
        held = _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 3 * S,
                     reason="case 8")  # fmt: skip
        shared_holds.sync(b)
        (theirs,) = list_holds(b)
        registry.run(b, "hold", {"action": "release", "id": theirs.id, "by": "carol",
                                 "reason": "closed"})  # fmt: skip
        late = registry.run(a, "hold", {"action": "release", "id": held["id"], "by": "dave",
                                        "reason": "also closed"})  # fmt: skip
        assert late["released_by"] == "carol" and "released already, by carol" in late["warning"]
        for st in (a, b):
            shared_holds.sync(st)
            (h,) = list_holds(st, include_released=True)
            assert (h.released_by, h.release_reason) == ("carol", "closed")
        with pytest.raises(UsageError, match="give the hold to release"):
            registry.run(a, "hold", {"action": "release", "by": "x"})
    finally:
        a.close()
        b.close()
