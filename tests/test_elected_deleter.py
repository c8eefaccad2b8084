"""The cluster's elected deleter of tiered footage (docs/design/cluster.md, E1-E5): only the
member holding the retention key in etcd deletes from the bucket; it plans from the shared
catalog, so a store that is gone has its footage deleted on time too; it takes entries out of
the catalog first and deletes their objects a delay later; held footage survives both steps
(put back when a hold comes in between); every store's index catches up with what it
decided; a deleter that lost its election, or is older than the last one, stops."""

from __future__ import annotations

import contextlib
import itertools
import json
import time

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base import layout
from vstore.base.errors import ClusterError, VstoreError
from vstore.export.clip import clip_bytes
from vstore.ingest.file_import import import_file
from vstore.jobs import registry
from vstore.lifecycle import shared_catalog
from vstore.lifecycle.bucket_retention import (
    RETIRED,
    SETTLED,
    SETTLED_KEEP_NS,
    Deleter,
    NotDeleter,
    catch_up,
    run_bucket_retention,
)
from vstore.lifecycle.check import check_store
from vstore.lifecycle.retention import run_retention
from vstore.lifecycle.shared_catalog import DELETED, RESTORED, open_bucket
from vstore.lifecycle.tiering import run_tiering
from vstore.store.config import RetentionPolicy
from vstore.store.holds import list_holds
from vstore.tier.factory import open_tier

S = 10**9
HOUR = layout.catalog_hour_ns(START_NS)
DAY = 86400 * S
_prefixes = itertools.count()


def _store(tmp_path, media, name, url, cam="gate", start_ns=START_NS, cluster=""):
    d = tmp_path / name
    d.mkdir()
    (d / "vstore.toml").write_text(
        f'[store]\nsegment_duration_s = 4\n[tier]\nurl = "{url}"\n{cluster}'
    )
    st = open_store(d)
    import_file(st, media("deleter-src.ts", 12.0, codec="h264", gop_frames=25), cam, start_ns)
    run_tiering(st, st.tier(url), 1)
    return st


@pytest.fixture
def one(tmp_path, media):
    """A store whose camera "gate" has 12 s of footage tiered to a bucket: (store, tier)."""
    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    yield a, a.tier(url)
    a.close()


def _doc(tier, cam="gate", hour=HOUR):
    return json.loads(tier.get(layout.catalog_object_key(cam, hour)))


def _summary(tier, cam="gate"):
    return json.loads(tier.get(layout.catalog_summary_key(cam)))


def _tiered_rows(st, cam="gate"):
    return [r for r in st.index.segments(st.camera_num(cam)) if r.location != "local"]


def _hold(st, action, **params):
    return registry.run(st, "hold", {"action": action, "by": "det. ray", **params})


def _deleter(epoch=7, leads=lambda: True):
    return Deleter("m1", epoch, leads)


def _age(days=1):
    return lambda _cam: RetentionPolicy(tiered_max_age_ns=days * DAY)


def test_catalog_first_bytes_later_and_every_store_catches_up(tmp_path, media):
    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)  # the deleter's own store
    b = _store(tmp_path, media, "b", url, cam="lane")  # another store's camera
    tier = a.tier(url)
    try:
        paths = [r.path for r in _tiered_rows(b, "lane")]
        assert len(paths) == 3
        now = START_NS + 2 * DAY
        res = run_bucket_retention(a, tier, _deleter(), now, 600 * S, _age(), [])
        assert (res.deleted_segments, res.purged_segments, res.errors) == (6, 0, [])
        # Step 1: out of the catalog (no reader plans with them), objects still there.
        doc = _doc(tier, "lane")
        assert doc["segments"] == []
        assert [e["row"]["path"] for e in doc[DELETED]] == paths
        assert {e["deleter"]["epoch"] for e in doc[DELETED]} == {7}
        assert all(tier.head(p) is not None for p in paths)
        assert str(HOUR) in _summary(tier, "lane")[RETIRED]
        with open_bucket(tier.url) as view:
            assert {c.camera: c.segments for c in view.cameras()} == {"gate": 0, "lane": 0}
        # A reader of the range sees why it has no footage: the deleter's retention, not a
        # bare gap.
        with open_bucket(tier.url, ["lane"], START_NS, START_NS + 60 * S) as view:
            (ev,) = [e for e in view.index.events(view.camera_num("lane")) if e.kind == "deleted"]
            assert (ev.detail["from_ns"], ev.detail["to_ns"]) == (START_NS, START_NS + 12 * S)
            assert (ev.detail["by"], ev.detail["deleted_ns"]) == ("m1", now)
        # Its writer never lists them again, even marked to write the hour again.
        shared_catalog.mark_hours(b, [(b.camera_num("lane"), HOUR, tier.url)])
        assert shared_catalog.publish_pending(b).errors == []
        assert _doc(tier, "lane")["segments"] == []
        # E5: b's index drops the rows (no garbage mark: the objects are the deleter's); a dry
        # run only counts them.
        assert catch_up(b, b.tier(url), dry_run=True).dropped == 3
        assert len(_tiered_rows(b, "lane")) == 3
        cu = catch_up(b, b.tier(url))
        assert (cu.dropped, cu.taken_back, cu.errors) == (3, 0, [])
        assert _tiered_rows(b, "lane") == []
        assert not list(b.index.scan(layout.GARBAGE_PREFIX))
        recs = [r for r in b.index.audit_records() if r["action"] == "delete"]
        assert recs[-1]["detail"]["deleter"] == {"member": "m1", "epoch": 7}
        assert catch_up(b, b.tier(url)).dropped == 0  # (once)
        # Before the delay: nothing purged. After it: objects gone, entries marked.
        res = run_bucket_retention(a, tier, _deleter(), now + 300 * S, 600 * S, _age(), [])
        assert res.purged_segments == 0 and all(tier.head(p) is not None for p in paths)
        res = run_bucket_retention(a, tier, _deleter(), now + 601 * S, 600 * S, _age(), [])
        assert (res.purged_segments, res.errors) == (6, [])
        assert all(tier.head(p) is None for p in paths)
        assert all("purged_ns" in e and "chunks" not in e for e in _doc(tier, "lane")[DELETED])
        summary = _summary(tier, "lane")
        assert summary[RETIRED] == {} and str(HOUR) in summary[SETTLED]
        assert [r["action"] for r in a.index.audit_records()].count("purge") == 6
        # A week on, the settled hours' objects go too (a city keeps no object per
        # camera-hour forever); a store that had not caught up finds rows whose hour and
        # object are both gone, and drops them.
        later = now + 601 * S + SETTLED_KEEP_NS
        run_bucket_retention(a, tier, _deleter(), later, 600 * S, _age(), [])
        for cam in ("gate", "lane"):
            assert tier.head(layout.catalog_object_key(cam, HOUR)) is None
            assert _summary(tier, cam)[SETTLED] == {}
        # The deleter's own store catches up too, and both stores check clean.
        assert catch_up(a, tier).dropped == 3
        for st in (a, b):
            assert [p for p in check_store(st).problems if p.code == "C11"] == []
    finally:
        a.close()
        b.close()


def test_the_footage_of_a_store_that_is_gone_is_deleted_from_the_catalog_alone(tmp_path, media):
    url = str(tmp_path / "bucket")
    gone = _store(tmp_path, media, "gone", url, cam="old-cam")
    gone.close()  # its node and disk are gone for good: only the bucket knows its footage
    import shutil

    shutil.rmtree(tmp_path / "gone")
    a = _store(tmp_path, media, "a", url)
    tier = a.tier(url)
    try:
        paths = [e["row"]["path"] for e in _doc(tier, "old-cam")["segments"]]
        res = run_bucket_retention(a, tier, _deleter(), START_NS + 2 * DAY, 0, _age(), [])
        assert res.purged_segments == 6 and res.errors == []
        assert all(tier.head(p) is None for p in paths)
    finally:
        a.close()


@pytest.fixture
def viewer(one, tmp_path):
    """A second store that indexed ``one``'s objects read-only (rebuild-index)."""
    from vstore.lifecycle.tiering import rebuild_index_from_tier

    _a, tier = one
    d = tmp_path / "c"
    d.mkdir()
    (d / "vstore.toml").write_text(f'[tier]\nurl = "{tier.url}"\n')
    c = open_store(d)
    assert rebuild_index_from_tier(c, c.tier(tier.url)).foreign == 3
    yield c
    c.close()


def test_another_store_s_footage_indexed_here_leaves_the_index_once_the_deleter_took_it(
    one, viewer
):
    """A store that indexed another's objects (rebuild-index from the shared prefix) kept
    them after the deleter purged them: listed as recorded, unclippable (exit 3), and a
    check whose repair could not clear it. Its retention catches up with those too."""
    a, tier = one
    c = viewer
    res = run_bucket_retention(a, tier, _deleter(), START_NS + 2 * DAY, 0, _age(), [])
    assert res.purged_segments == 3
    cu = catch_up(c, c.tier(tier.url))
    assert (cu.dropped, cu.errors) == (3, [])
    assert list(c.index.segments(c.camera_num("gate"))) == []
    assert check_store(c).ok
    (rec,) = {r["detail"]["written_by_store"] for r in c.index.audit_records()
              if r["action"] == "delete"}  # fmt: skip
    assert rec == a.uuid


def test_another_store_s_footage_the_deleter_puts_back_comes_back_into_this_index(one, viewer):
    """Dropped from this store's view when the deleter took it out of the catalog, another
    store's footage a hold then saved stayed out of it (held footage unclippable here) until
    rebuild-index ran again. Retention's catch-up takes it back, as that store's."""
    a, tier = one
    c = viewer
    now = START_NS + 2 * DAY
    run_bucket_retention(a, tier, _deleter(), now, 600 * S, _age(), [])
    assert catch_up(c, c.tier(tier.url)).dropped == 3
    _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c9")
    res = run_bucket_retention(a, tier, _deleter(), now + 601 * S, 600 * S, _age(),
                               list_holds(a))  # fmt: skip
    assert res.put_back == 3
    cu = catch_up(c, c.tier(tier.url))
    assert (cu.taken_back, cu.errors) == (3, [])
    rows = list(c.index.segments(c.camera_num("gate")))
    assert len(rows) == 3 and {r.owner for r in rows} == {a.uuid}
    assert b"".join(clip_bytes(c, "gate", START_NS + 2 * S, START_NS + 10 * S))
    assert catch_up(c, c.tier(tier.url)).taken_back == 0  # (once)
    assert check_store(c).ok


def test_check_names_rows_whose_objects_the_deleter_deleted_and_repair_drops_them(one):
    a, tier = one
    run_bucket_retention(a, tier, _deleter(), START_NS + 2 * DAY, 0, _age(), [])
    (p,) = [p for p in check_store(a).problems if p.code == "C11"]
    assert "3 segment(s) the cluster's deleter deleted, whose objects are gone" in p.message
    rep = check_store(a, repair=True)
    assert [p.repaired for p in rep.problems if p.code == "C11"] == [True]
    assert _tiered_rows(a) == [] and check_store(a).problems == []


def test_held_footage_survives_both_steps_and_a_put_back_entry_comes_home(tmp_path, media):
    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url, cam="lane")
    tier = a.tier(url)
    try:
        # A hold on 0..3 s of gate before the run: that segment stays listed.
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 3 * S, reason="c1")
        now = START_NS + 2 * DAY
        res = run_bucket_retention(a, tier, _deleter(), now, 600 * S, _age(), list_holds(a))
        assert (res.deleted_segments, res.kept_for_holds) == (5, 1)
        assert len(_doc(tier, "gate")["segments"]) == 1
        assert catch_up(b, tier).dropped == 3  # b already dropped lane's rows
        assert _tiered_rows(b, "lane") == []
        # A hold on lane comes in before its objects go: they are listed again (E4), and
        # b's index takes them back; a clip of them is whole.
        _hold(b, "add", camera="lane", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c2")
        holds = list_holds(a) + list_holds(b)
        res = run_bucket_retention(a, tier, _deleter(), now + 601 * S, 600 * S, _age(), holds)
        assert (res.put_back, res.purged_segments) == (3, 2)
        segs = _doc(tier, "lane")["segments"]
        assert len(segs) == 3 and all(e[RESTORED]["epoch"] == 7 for e in segs)
        # b's writes keep a put-back entry its index lacks (it would be lost otherwise).
        shared_catalog.mark_hours(b, [(b.camera_num("lane"), HOUR, tier.url)])
        assert shared_catalog.publish_pending(b).errors == []
        assert len(_doc(tier, "lane")["segments"]) == 3
        cu = catch_up(b, tier)
        assert (cu.taken_back, cu.errors) == (3, [])
        assert len(_tiered_rows(b, "lane")) == 3
        assert shared_catalog.publish_pending(b).errors == []  # (its own again: no mark)
        assert [RESTORED in e for e in _doc(tier, "lane")["segments"]] == [False] * 3
        clip = b"".join(clip_bytes(b, "lane", START_NS + S, START_NS + 11 * S))
        assert len(clip) > 10_000
        assert [p for p in check_store(b).problems if p.code in ("C11", "C1", "C2")] == []
        # The held part of gate kept its object through the purge.
        held = _doc(tier, "gate")["segments"][0]["row"]["path"]
        assert tier.head(held) is not None
    finally:
        a.close()
        b.close()


def test_by_whole_hours_and_between_full_passes_only_the_cameras_with_something_due(
    tmp_path, media
):
    from vstore.lifecycle.bucket_retention import FULL_PASS_NS

    url = str(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", url)
    b = _store(tmp_path, media, "b", url, cam="lane")
    for st, cam in ((a, "gate"), (b, "lane")):  # a second hour of footage
        import_file(st, media("deleter-src.ts", 12.0, codec="h264", gop_frames=25), cam,
                    START_NS + 3600 * S)  # fmt: skip
        run_tiering(st, st.tier(url), 1)
    tier = a.tier(url)
    age = lambda _cam: RetentionPolicy(tiered_max_age_ns=DAY)
    h1 = HOUR + DAY + layout.HOUR_NS  # when the first hour is wholly a day old
    try:
        runs = [(h1 - S, True, 2, 0),  # (its last segment is, but not the hour)
                (h1, False, 2, 6), (h1 + S, False, 0, 0),
                (h1 + layout.HOUR_NS - S, False, 0, 0), (h1 + layout.HOUR_NS, False, 2, 6),
                (h1 + layout.HOUR_NS + S, False, 0, 0),
                (h1 + 2 * layout.HOUR_NS, False, 2, 0),  # (nothing left: looked at hourly)
                (h1 + FULL_PASS_NS, True, 2, 0)]  # fmt: skip
        for now, full, read, deleted in runs:
            res = run_bucket_retention(a, tier, _deleter(11), now, 0, age, [])
            assert (res.full_pass, res.cameras, res.deleted_segments) == (full, read, deleted), now
            assert res.purged_segments == deleted and res.errors == []
        assert _doc(tier)["segments"] == [] and _doc(tier, "lane")["segments"] == []
    finally:
        a.close()
        b.close()


def test_a_camera_the_deleter_could_not_read_is_read_again_at_its_next_run(one):
    a, tier = one
    key = layout.catalog_summary_key("gate")
    good, etag = tier.get_versioned(key)
    etag = tier.put_bytes(key, b"{not json", if_match=etag)  # (a damaged summary)
    res = run_bucket_retention(a, tier, _deleter(21), START_NS + 2 * DAY, 0, _age(), [])
    assert res.full_pass and res.deleted_segments == 0 and "not a catalog object" in res.errors[0]
    tier.put_bytes(key, good, if_match=etag)  # (mended)
    res = run_bucket_retention(a, tier, _deleter(21), START_NS + 2 * DAY + S, 0, _age(), [])
    assert (res.full_pass, res.cameras, res.deleted_segments) == (False, 1, 3)


def test_a_deleter_that_lost_its_election_or_is_older_stops(one):
    a, tier = one
    with pytest.raises(NotDeleter):
        run_bucket_retention(a, tier, _deleter(leads=lambda: False), START_NS + 2 * DAY,
                             0, _age(), [])  # fmt: skip
    assert len(_doc(tier)["segments"]) == 3
    # A newer deleter (epoch 9) took one hour; one of epoch 7 may not write it again.
    res = run_bucket_retention(a, tier, _deleter(9), START_NS + 2 * DAY, 600 * S, _age(), [])
    assert res.deleted_segments == 3
    with pytest.raises(NotDeleter, match="newer deleter"):
        run_bucket_retention(a, tier, _deleter(7), START_NS + 3 * DAY, 0, _age(), [])
    assert all("purged_ns" not in e for e in _doc(tier)[DELETED])
    assert all(tier.head(e["row"]["path"]) is not None for e in _doc(tier)[DELETED])
    # Its lease lost once the run began (leads() turns False): no object is deleted.
    calls = itertools.count()
    with pytest.raises(NotDeleter):
        run_bucket_retention(a, tier, _deleter(9, leads=lambda: next(calls) < 1),
                             START_NS + 3 * DAY, 0, _age(), [])  # fmt: skip
    assert all(tier.head(e["row"]["path"]) is not None for e in _doc(tier)[DELETED])


class _Paused:
    """The deleter's tier, on which the deleter is paused (SIGSTOP, a VM pause) past its
    election at its first ``update`` of the purge step (``at="claim"``) or at its deletes
    (``at="delete"``); meanwhile ``meanwhile`` runs (a newer deleter, a hold come)."""

    def __init__(self, inner, at, meanwhile):
        self.inner, self.at, self.meanwhile = inner, at, meanwhile

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _pause(self, where):
        if self.at == where:
            self.at = None
            self.meanwhile()

    def update(self, key, change):
        self._pause("claim")
        return self.inner.update(key, change)

    def delete_many(self, keys):
        self._pause("delete")
        return self.inner.delete_many(keys)


def _paused_deleter_round(a, tier, at):
    """Deleter 7 takes the camera's 3 entries out; at its purge it is paused (``at``) past
    its election while a hold comes and deleter 9 runs. The hour as it ends."""
    now = START_NS + 2 * DAY
    assert (
        run_bucket_retention(a, tier, _deleter(7), now, 600 * S, _age(), []).deleted_segments == 3
    )
    lapsed = [False]

    def meanwhile():
        lapsed[0] = True
        _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c9")
        run_bucket_retention(a, tier, _deleter(9), now + 601 * S, 600 * S, _age(),
                             list_holds(a))  # fmt: skip

    old = _deleter(7, leads=lambda: not lapsed[0] or at == "delete")  # (its check passed)
    with contextlib.suppress(NotDeleter):  # (it stops, or its deletes are refused)
        run_bucket_retention(a, _Paused(tier, at, meanwhile), old, now + 601 * S, 600 * S,
                             _age(), [])  # fmt: skip
    return _doc(tier)


def test_a_deleter_paused_before_its_purge_mark_deletes_nothing_a_newer_one_put_back(one):
    """A deleter paused between its last check and its deletes, while a newer deleter, a
    hold having come, put the entries back (E4), woke and deleted the held objects, which
    the catalog listed again. It marks what it deletes first, by a conditional write: paused
    before that write, it finds the newer deleter's and deletes nothing."""
    a, tier = one
    doc = _paused_deleter_round(a, tier, "claim")
    listed = [e["row"]["path"] for e in doc["segments"]]
    assert len(listed) == 3 and all(e.get(RESTORED) for e in doc["segments"])
    assert all(tier.head(p) is not None for p in listed)


@pytest.mark.s3
def test_a_deleter_paused_after_its_purge_mark_is_refused_what_a_newer_one_put_back(
    tmp_path, media, s3_env, lock_bucket
):
    """Paused after it marked them, the newer deleter puts the held entries back with their
    object legal holds set first: the old one's deletes are refused by the object store."""
    url = f"s3://{lock_bucket}/paused"
    a = _store(tmp_path, media, "a", url)
    try:
        tier = a.tier(url)
        doc = _paused_deleter_round(a, tier, "delete")
        listed = [e["row"]["path"] for e in doc["segments"]]
        assert len(listed) == 3 and all(e.get(RESTORED) for e in doc["segments"])
        assert all(tier.head(p) is not None for p in listed)
    finally:
        a.close()


class _Failing:
    """A tier that refuses every delete (an outage of the object store)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def delete_many(self, keys):
        return {k: VstoreError("SlowDown") for k in keys}


def test_entries_whose_deletes_failed_are_put_back_for_a_hold_come_meanwhile(one):
    """Entries marked purging whose deletes failed (an outage over several runs) were
    deleted by a later run even after a hold came to cover them."""
    a, tier = one
    now = START_NS + 2 * DAY
    run_bucket_retention(a, tier, _deleter(), now, 600 * S, _age(), [])
    res = run_bucket_retention(a, _Failing(tier), _deleter(), now + 601 * S, 600 * S, _age(), [])
    assert res.purged_segments == 0 and len(res.errors) == 3
    _hold(a, "add", camera="gate", from_ns=START_NS, to_ns=START_NS + 12 * S, reason="c9")
    res = run_bucket_retention(a, tier, _deleter(), now + 602 * S, 600 * S, _age(), list_holds(a))
    assert (res.purged_segments, res.put_back) == (0, 3)
    listed = [e["row"]["path"] for e in _doc(tier)["segments"]]
    assert len(listed) == 3 and all(tier.head(p) is not None for p in listed)


def test_a_member_that_runs_no_retention_does_not_stand_and_gives_the_role_back(etcd):
    from vstore.cluster.agent import Agent
    from vstore.store.config import ClusterConfig

    prefix = f"/vstore/stand-{time.time_ns()}-{next(_prefixes)}"
    deletes = {"a": False, "b": True}
    agents = {
        n: Agent(
            ClusterConfig(tuple(etcd.endpoints), n, prefix, 4),
            list,
            lambda: None,
            deletes=lambda n=n: deletes[n],
        )
        for n in ("a", "b")
    }
    try:
        agents["a"].start()  # (first: it would have stood)
        agents["b"].start()
        assert agents["a"].deleter() is None and agents["b"].deleter() is not None
        deletes.update(a=True, b=False)  # ([retention] every turned off on b, on at a)
        deadline = time.monotonic() + 10
        while agents["a"].deleter() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert agents["a"].deleter() is not None and agents["b"].deleter() is None
    finally:
        for ag in agents.values():
            with contextlib.suppress(ClusterError):
                ag.stop()


def _cluster_toml(etcd, prefix, name):
    return (
        f'[retention]\ntiered_max_age = "1d"\n[cluster]\n'
        f'etcd = {json.dumps(etcd.endpoints)}\nname = "{name}"\nprefix = "{prefix}"\n'
        "lease_ttl_s = 4\ndeletion_delay_s = 0\n"
    )


@pytest.mark.s3
def test_two_retention_runners_only_the_elected_one_deletes_and_the_next_takes_over(
    tmp_path, media, etcd, seaweed, monkeypatch
):
    """Two members' stores share a SeaweedFS bucket; both run retention; only the member
    holding the retention key in etcd deletes from the bucket, every camera's expired
    footage but the held. It leaves; the other is elected at its next tick, and the first's
    old identity can no longer delete; held footage survives everywhere."""
    from vstore.cluster.agent import Agent

    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    url = f"s3://{seaweed.bucket}/deleter-{time.time_ns()}"
    prefix = f"/vstore/deleter-{time.time_ns()}-{next(_prefixes)}"
    a = _store(tmp_path, media, "a", url, cluster=_cluster_toml(etcd, prefix, "a"))
    b = _store(tmp_path, media, "b", url, cam="lane", cluster=_cluster_toml(etcd, prefix, "b"))
    tier = open_tier(url)
    agents = [Agent(st.config.cluster, cameras=list, apply=lambda: None) for st in (a, b)]
    try:
        agents[0].start()
        agents[1].start()
        a.tiered_deleter, b.tiered_deleter = agents[0].deleter, agents[1].deleter
        assert agents[0].deleter() is not None and agents[1].deleter() is None
        _hold(b, "add", camera="lane", from_ns=START_NS, to_ns=START_NS + 3 * S, reason="c3")
        # The member that is not the deleter deletes nothing tiered, and says so.
        plan, res = run_retention(b, max_age_ns=1)
        assert res is not None and res.deleted_segments == 0 and res.errors == []
        assert plan.left_to_deleter == 2 and "this member is not it now" in plan.cluster["note"]
        assert len(_doc(tier, "lane")["segments"]) == 3
        # The deleter deletes every camera's expired, unheld footage, its own and b's (the
        # delay is 0 here: objects go in the same run).
        deleter = agents[0].deleter()
        plan, res = run_retention(a, max_age_ns=1)
        assert res is not None and res.errors == [], res.errors
        done = plan.cluster["bucket_run"]
        assert (done["deleted_segments"], done["purged_segments"], done["kept_for_holds"]) == (
            5, 5, 1)  # fmt: skip
        assert plan.cluster["index_caught_up"]["dropped"] == 3  # its own rows
        assert len(_doc(tier, "lane")["segments"]) == 1 and _doc(tier, "gate")["segments"] == []
        # b catches up at its next run; the held row stays in its index.
        plan, res = run_retention(b, max_age_ns=1)
        assert plan.cluster["index_caught_up"]["dropped"] == 2
        assert len(_tiered_rows(b, "lane")) == 1
        # a leaves: b is elected at its next tick, and a's old identity stops.
        agents[0].stop()
        assert deleter is not None and not deleter.leads()
        deadline = time.monotonic() + 10
        while agents[1].deleter() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        new = agents[1].deleter()
        assert new is not None and new.epoch > deleter.epoch
        with pytest.raises(NotDeleter):
            run_bucket_retention(a, a.tier(url), deleter, START_NS + 2 * DAY, 0, _age(), [])
        plan, res = run_retention(b, max_age_ns=1)
        assert res is not None and res.errors == []
        assert plan.cluster["deleter"]["member"] == "b"
        assert plan.cluster["bucket_run"]["kept_for_holds"] == 1
        held = _doc(tier, "lane")["segments"][0]["row"]["path"]
        assert tier.head(held) is not None
    finally:
        for ag in agents:
            with contextlib.suppress(ClusterError):  # (stopped already: nothing to give back)
                ag.stop()
        a.close()
        b.close()


@pytest.mark.s3
def test_a_bucket_whose_footage_retention_took_says_so(tmp_path, media, s3_env, bucket, capsys):
    """`vstore ls` of a bucket whose every camera's footage the deleter took said "no
    cameras recorded yet", as of a bucket never written."""
    from vstore.cli.main import main

    url = f"s3://{bucket}/emptied"
    a = _store(tmp_path, media, "a", url)
    try:
        res = run_bucket_retention(a, a.tier(url), _deleter(), START_NS + 2 * DAY, 0, _age(), [])
        assert res.purged_segments == 3
    finally:
        a.close()
    capsys.readouterr()
    assert main(["ls", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "retention deleted all of it" in out and "recorded yet" not in out
