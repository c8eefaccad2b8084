"""The shared catalog in the object store: what a store tiers is listed per camera and hour;
the read commands given only the bucket (``--store s3://...``) find and clip it,
frame-exact, with no index of their own; a stale owner's catalog writes are refused; a
crash between tiering and the catalog write leaves the hour marked and written later; a
deleted segment leaves the catalog."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base import layout
from vstore.base.errors import TierError
from vstore.base.timebase import format_time
from vstore.cli.main import main
from vstore.evidence.package import ExportItem, export_package
from vstore.export.clip import clip_bytes
from vstore.ingest.file_import import import_file
from vstore.lifecycle import shared_catalog
from vstore.lifecycle.retention import run_retention
from vstore.lifecycle.shared_catalog import Fenced, open_bucket, publish_hour, publish_pending
from vstore.lifecycle.tiering import run_tiering
from vstore.tier import LocalTier
from vstore.tier.factory import open_tier

S = 10**9


def _store(tmp_path, media, name: str, cam: str = "gate", start_ns: int = START_NS):
    d = tmp_path / name
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    st = open_store(d)
    import_file(st, media("cat-src.ts", 12.0, codec="h264", gop_frames=25), cam, start_ns)
    return st


def _clip(st, cam="gate", a=2, b=10, fmt="mp4"):
    return b"".join(clip_bytes(st, cam, START_NS + a * S, START_NS + b * S, format=fmt))


def _doc(tier, cam, hour_ns):
    return json.loads(tier.get(layout.catalog_object_key(cam, hour_ns)))


@pytest.mark.s3
def test_a_fresh_reader_clips_any_tiered_camera_from_the_bucket_alone(
    tmp_path, media, s3_env, bucket, capsys
):
    url = f"s3://{bucket}/city"
    a = _store(tmp_path, media, "a", "gate")
    b = _store(tmp_path, media, "b", "depot", START_NS + 3600 * S)  # another node, hour
    before = _clip(a)
    pkg = tmp_path / "case.zip"
    item = ExportItem("gate", START_NS + 2 * S, START_NS + 10 * S)
    export_package(a, [item], pkg, case="C-1", purpose="test", by="det. bo")
    try:
        for st in (a, b):
            res = run_tiering(st, st.tier(url), 5 * S)
            assert res.tiered == 3 and res.catalog_hours == 1 and not res.catalog_errors
            assert not shared_catalog.pending(st)
        tier = a.tier(url)
        doc = _doc(tier, "gate", layout.catalog_hour_ns(START_NS))
        assert [e["store"] for e in doc["segments"]] == [a.uuid] * 3
        assert doc["owner"]["store"] == a.uuid
        # The library's view of the bucket: both nodes' cameras, the same clip bytes.
        with open_bucket(url) as view:
            assert sorted(c.camera for c in view.cameras()) == ["depot", "gate"]
            assert _clip(view) == before
    finally:
        a.close()
        b.close()
    # Listing a bucket's cameras reads each camera's summary, not its hours: the same lines
    # as a view of every hour; and a camera whose summary is gone is summed from its hours.
    with open_bucket(url) as view:
        whole = sorted(view.cameras())
    assert sorted(shared_catalog.bucket_cameras(url)) == whole
    tier = open_tier(url)
    tier.delete(layout.catalog_summary_key("depot"))
    assert sorted(shared_catalog.bucket_cameras(url)) == whole
    # The commands, as a user on a machine with nothing but the bucket's credentials.
    assert main(["ls", "--store", url, "--json"]) == 0
    cams = {c["camera"]: c for c in json.loads(capsys.readouterr().out)["cameras"]}
    assert set(cams) == {"gate", "depot"} and cams["gate"]["segments"] == 3
    frm, to = format_time(START_NS + 2 * S), format_time(START_NS + 10 * S)
    out = tmp_path / "c.mp4"
    assert main(["clip", "--camera", "gate", "--from", frm, "--to", to, "--store", url,
                 "-o", str(out), "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    assert out.read_bytes() == before
    assert main(["timeline", "--camera", "gate", "--store", url, "--json"]) == 0
    tl = json.loads(capsys.readouterr().out)
    assert tl["camera"] == "gate" and tl["gaps"] == []
    snap = tmp_path / "s.jpg"
    at = format_time(START_NS + 5 * S)
    assert main(["snapshot", "--camera", "gate", "--at", at, "--store", url,
                 "-o", str(snap)]) == 0  # fmt: skip
    assert snap.read_bytes()[:2] == b"\xff\xd8"
    # An evidence package exported while the footage was hot is built again from the bucket.
    capsys.readouterr()
    code = main(["verify", str(pkg), "--store", url, "--json"])
    out = capsys.readouterr()
    assert code == 0, out
    rep = json.loads(out.out)
    assert [c["ok"] for c in rep["checks"] if c["check"] == "source"] == [True]
    # A camera the bucket does not hold is the same clear error as in a store.
    assert main(["clip", "--camera", "nope", "--from", frm, "--to", to, "--store", url,
                 "-o", str(tmp_path / "n.mp4")]) == 3  # fmt: skip
    err = capsys.readouterr().err
    assert "nope" in err and "depot, gate" in err  # (the bucket's cameras named)
    # A camera's range past its catalog hours: no footage there, not an unknown camera.
    later = [format_time(START_NS + 86_400 * S), format_time(START_NS + 86_410 * S)]
    assert main(["clip", "--camera", "gate", "--from", later[0], "--to", later[1],
                 "--store", url, "-o", str(tmp_path / "n.mp4")]) == 3  # fmt: skip
    assert "no footage" in capsys.readouterr().err
    # A prefix that holds no catalog is said to, not shown as an empty archive.
    for cmd in (["ls"], ["clip", "--camera", "gate", "--from", frm, "--to", to, "-o",
                         str(tmp_path / "n.mp4")]):  # fmt: skip
        assert main([*cmd, "--store", f"s3://{bucket}/no-such-prefix"]) == 3
        assert "no vstore catalog under" in capsys.readouterr().err


def test_a_stale_owner_never_overwrites_what_a_newer_one_wrote(tmp_path, media):
    tier = LocalTier(tmp_path / "bucket")
    old = _store(tmp_path, media, "old")
    new = _store(tmp_path, media, "new")
    hour = layout.catalog_hour_ns(START_NS)
    try:
        for st in (old, new):
            run_tiering(st, tier, 5 * S)  # (both single nodes: epoch 0, entries side by side)
        assert {e["store"] for e in _doc(tier, "gate", hour)["segments"]} == {old.uuid, new.uuid}
        # The camera moves (the new owner took it 6 s into the hour): it writes with its
        # newer epoch...
        since = START_NS + 6 * S
        assert publish_hour(new, tier, "gate", hour, epoch=7, since_ns=since, member="m2") == 3
        doc = _doc(tier, "gate", hour)
        assert doc["owner"] == {"store": new.uuid, "member": "m2", "epoch": 7, "since_ns": since}
        # ...and the former owner, paused past its lease, wakes up: what it recorded before
        # the new owner took over stays listed; its segments after are refused.
        with pytest.raises(Fenced, match=r"2 segment.* recorded after member 'm2' took it over"):
            publish_hour(old, tier, "gate", hour, epoch=5, member="m1")
        after = _doc(tier, "gate", hour)
        assert after["owner"] == doc["owner"]
        olds = [e["row"]["end_ns"] for e in after["segments"] if e["store"] == old.uuid]
        assert olds == [START_NS + 4 * S]  # (4 s segments: only the first ends by 6 s)
        assert [e for e in after["segments"] if e["store"] == new.uuid] == [
            e for e in doc["segments"] if e["store"] == new.uuid
        ]
        # A member back after a failure lists what it recorded before, and nothing is lost
        # from the new owner's hour; check (C11) counts only what the old owner may list.
        from vstore.lifecycle.check import check_store

        assert check_store(old).ok, check_store(old).problems
    finally:
        old.close()
        new.close()


def test_a_former_owner_keeps_listing_what_it_recorded_while_it_owned_the_camera(tmp_path, media):
    """A camera moves away before its new owner has written the hour: the former owner's
    next write, as a member that no longer owns it, still lists all it tiered. Its own
    earlier claim in the hour is no newer owner's, and must not fence it out."""
    from vstore.lifecycle.check import check_store

    tier = LocalTier(tmp_path / "bucket")
    st = _store(tmp_path, media, "st")
    hour = layout.catalog_hour_ns(START_NS)
    try:
        since = START_NS + 1 * S  # (it took the camera 1 s into the hour, as epoch 3)
        run_tiering(st, tier, 5 * S)
        assert publish_hour(st, tier, "gate", hour, epoch=3, since_ns=since, member="m1") == 3
        # The camera moved on; a later write (a tier run, check --repair) is a non-owner's.
        assert publish_hour(st, tier, "gate", hour, epoch=0, since_ns=0, member="m1") == 3
        doc = _doc(tier, "gate", hour)
        assert len(doc["segments"]) == 3
        assert doc["owner"] == {"store": st.uuid, "member": "m1", "epoch": 3, "since_ns": since}
        assert check_store(st).ok, check_store(st).problems
    finally:
        st.close()


def test_footage_recorded_between_two_owners_is_listed_when_written_after_both(tmp_path, media):
    """The camera went a -> b -> c; b gave it up before its first tiering run, and the hour
    still names a (c has not written it yet). b writes its footage under its last claim's
    epoch, newer than a's: all of it is listed. Under epoch 0 (as if it never owned the
    camera) a's claim fenced it all out."""
    tier = LocalTier(tmp_path / "bucket")
    a = _store(tmp_path, media, "a", "gate", START_NS)
    b = _store(tmp_path, media, "b", "gate", START_NS + 20 * S)
    hour = layout.catalog_hour_ns(START_NS)
    try:
        run_tiering(a, tier, 5 * S)
        assert publish_hour(a, tier, "gate", hour, epoch=422, since_ns=START_NS, member="a") == 3
        run_tiering(b, tier, 5 * S)  # (as b's node: the camera has moved on to c)
        took = START_NS + 20 * S
        with pytest.raises(Fenced):
            publish_hour(b, tier, "gate", hour, epoch=0, since_ns=0, member="b")
        assert publish_hour(b, tier, "gate", hour, epoch=430, since_ns=took, member="b") == 3
        doc = _doc(tier, "gate", hour)
        assert sorted({e["store"] for e in doc["segments"]}) == sorted([a.uuid, b.uuid])
        assert len(doc["segments"]) == 6 and doc["owner"]["member"] == "b"
    finally:
        a.close()
        b.close()


def test_a_node_keeps_its_last_claim_on_a_camera_for_the_catalog_across_restarts(tmp_path, etcd):
    """The node keeps its member's claim on each camera in the index; once the claim is
    gone (the camera moved on, or the node stopped), catalog writes use that claim's epoch."""
    from tests.service_helpers import wait_for
    from vstore.service.node import Node

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        f'[cluster]\netcd = {json.dumps(etcd.endpoints)}\nname = "k1"\n'
        f'prefix = "/vstore/claims-{time.time_ns()}"\nlease_ttl_s = 4\n'
        '[cameras.gate]\nurl = "tcp://127.0.0.1:9"\n'
    )
    st = open_store(d)
    node = Node(st)
    try:
        node.start()
        epoch, since = wait_for(lambda: node.cluster and node.cluster.allowed() and
                                node.cluster.epoch_of("gate"), 15, "the claim")  # fmt: skip
        assert epoch > 0 and since > 0
        assert json.loads(st.index.get(layout.last_claim_key("gate"))) == {
            "epoch": epoch, "since_ns": since,
        }  # fmt: skip
    finally:
        node.stop()
    assert node._catalog_epoch("gate") == (epoch, since)  # (no claim now: its last one)
    assert node._catalog_epoch("lane") == (0, 0)  # (never claimed)
    st.close()


def test_check_beside_a_tier_run_reports_no_missing_file_for_a_segment_tiered_meanwhile(
    tmp_path, media
):
    """check reads the rows, then each file: a segment tiered in between (its file gone,
    its row pointing at the tier) is no missing file (C2), as on a node whose tier run
    goes on while check runs."""
    from vstore.lifecycle.check import check_store

    tier = LocalTier(tmp_path / "bucket")
    st = _store(tmp_path, media, "st")
    moved = []

    def tier_now(i: int, _total: int) -> None:
        if i == 0:
            moved.append(run_tiering(st, tier, 5 * S).tiered)

    try:
        rep = check_store(st, progress=tier_now)
        assert moved == [3]
        assert [p for p in rep.problems if p.code == "C2"] == [], rep.problems
    finally:
        st.close()


def test_concurrent_writers_of_one_hour_lose_nothing(tmp_path, media):
    """Conditional writes: writers that read the same version retry on the newer one, so
    every store's entries end up listed (no write lost to a race)."""
    tier = LocalTier(tmp_path / "bucket")
    stores = [_store(tmp_path, media, f"s{i}") for i in range(4)]
    hour = layout.catalog_hour_ns(START_NS)
    try:
        for st in stores:
            run_tiering(st, tier, 5 * S)
        tier.delete(layout.catalog_object_key("gate", hour))
        go = threading.Barrier(len(stores))

        def write(st):
            go.wait()
            publish_hour(st, tier, "gate", hour)

        threads = [threading.Thread(target=write, args=(st,)) for st in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listed = [e["store"] for e in _doc(tier, "gate", hour)["segments"]]
        assert sorted(set(listed)) == sorted(st.uuid for st in stores)
        assert len(listed) == 3 * len(stores)
    finally:
        for st in stores:
            st.close()


class _RefusingTier(LocalTier):
    """A directory tier whose small-object writes fail (an outage after the uploads)."""

    refuse = True

    def put_bytes(self, key, data, *, if_match=None):
        if self.refuse:
            raise TierError(f"{self.url}/{key}: endpoint unreachable")
        return super().put_bytes(key, data, if_match=if_match)


def test_a_catalog_write_that_fails_is_kept_marked_and_written_later(tmp_path, media):
    st = _store(tmp_path, media, "a")
    tier = _RefusingTier(tmp_path / "bucket")
    try:
        st._tiers[tier.url] = tier  # (the store reads back through this same tier)
        res = run_tiering(st, tier, 5 * S)
        assert res.tiered == 3 and res.catalog_hours == 0
        assert "unreachable" in res.catalog_errors[0]
        assert shared_catalog.pending(st) == [
            (st.camera_num("gate"), layout.catalog_hour_ns(START_NS), tier.url)
        ]
        tier.refuse = False
        assert publish_pending(st).hours == 1 and not shared_catalog.pending(st)
        assert len(_doc(tier, "gate", layout.catalog_hour_ns(START_NS))["segments"]) == 3
    finally:
        st.close()


def test_a_deleted_tiered_segment_leaves_the_catalog(tmp_path, media):
    st = _store(tmp_path, media, "a")
    tier = LocalTier(tmp_path / "bucket")
    hour = layout.catalog_hour_ns(START_NS)
    try:
        run_tiering(st, tier, 5 * S)
        assert len(_doc(tier, "gate", hour)["segments"]) == 3
        _plan, res = run_retention(st, max_age_ns=1, tiered_max_age_ns=1)
        assert res is not None and res.deleted_segments == 3 and res.errors == []
        assert _doc(tier, "gate", hour)["segments"] == []
        with open_bucket(tier.url) as view:
            assert [c.segments for c in view.cameras()] == [0]
    finally:
        st.close()


def test_check_finds_a_catalog_hour_that_lies_and_repair_writes_it_again(tmp_path, media):
    from vstore.lifecycle.check import check_store

    st = _store(tmp_path, media, "a")
    tier = LocalTier(tmp_path / "bucket")
    hour = layout.catalog_hour_ns(START_NS)
    key = layout.catalog_object_key("gate", hour)
    try:
        run_tiering(st, tier, 5 * S)
        assert check_store(st).ok
        doc = _doc(tier, "gate", hour)
        doc["segments"] = doc["segments"][1:]  # an entry lost (a hand edit, a bad restore)
        tier.put_bytes(key, json.dumps(doc).encode())
        rep = check_store(st)
        assert [p.code for p in rep.problems] == ["C11"] and "lacks 1" in rep.problems[0].message
        tier.delete(key)  # the whole hour gone
        assert [p.code for p in check_store(st).problems] == ["C11"]
        rep = check_store(st, repair=True)
        assert rep.problems[0].repaired and "written again" in rep.problems[0].message
        assert len(_doc(tier, "gate", hour)["segments"]) == 3 and check_store(st).ok
    finally:
        st.close()


def test_a_node_with_an_empty_disk_clips_from_seaweedfs_and_a_stale_owner_is_refused(
    tmp_path, media, seaweed, monkeypatch
):
    """Against a real S3 server (SeaweedFS): the recording node's disk is gone, and a
    command given only the bucket answers the clip, byte for byte; a former owner's catalog
    write after a newer owner's is refused by epoch and by conditional write alike."""
    import os
    import shutil
    import subprocess
    import sys

    import boto3

    env = {**os.environ, **seaweed.env()}
    boto3.client("s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
                 aws_access_key_id="k", aws_secret_access_key="s").create_bucket(Bucket="city")  # fmt: skip
    url = "s3://city/district-7"
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    st = _store(tmp_path, media, "node-a")
    before = _clip(st)
    assert run_tiering(st, st.tier(url), 5 * S).catalog_hours == 1
    st.close()
    shutil.rmtree(tmp_path / "node-a")  # the node and its disk are gone
    out = tmp_path / "c.mp4"
    r = subprocess.run(
        [sys.executable, "-m", "vstore.cli.main", "clip", "--camera", "gate", "--store", url,
         "--from", format_time(START_NS + 2 * S), "--to", format_time(START_NS + 10 * S),
         "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == before
    # Two owners of the camera in turn: the newer one's write stands.
    hour = layout.catalog_hour_ns(START_NS)
    old, new = (_store(tmp_path, media, n) for n in ("old", "new"))
    try:
        for s_ in (old, new):
            run_tiering(s_, s_.tier(url), 5 * S)
        publish_hour(new, new.tier(url), "gate", hour, epoch=9)
        with pytest.raises(Fenced):
            publish_hour(old, old.tier(url), "gate", hour, epoch=8)
        doc = json.loads(new.tier(url).get(layout.catalog_object_key("gate", hour)))
        assert doc["owner"]["epoch"] == 9
    finally:
        old.close()
        new.close()


def test_a_seaweedfs_bucket_without_object_lock_is_a_tier_without_object_holds(
    seaweed, monkeypatch
):
    """SeaweedFS refuses a legal hold in a bucket made without Object Lock with a bare
    "Invalid Request": that is a bucket without object holds (the hold is vstore's alone),
    not a failure to retry."""
    import boto3

    from vstore.tier.s3 import S3Tier

    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    boto3.client("s3").create_bucket(Bucket="plain")
    tier = S3Tier("plain", "p")
    tier.put_bytes("seg/a.vseg", b"footage")
    assert tier.set_legal_hold("seg/a.vseg", True) is False
    assert tier.legal_hold("seg/a.vseg") is None


def test_a_summary_keeps_its_hours_as_a_compact_table_and_still_reads_the_old_form(tmp_path, media):
    """A camera's summary lines are a zstd table (a year of hours in a few kB); a summary
    written in the old form (a JSON object per hour) is read as before and written anew
    as a table by the next write of one of its hours."""
    from vstore.lifecycle.shared_catalog import HOUR_COLUMNS, HourTable, bucket_cameras

    table = HourTable()
    year = [START_NS + i * layout.HOUR_NS for i in range(24 * 365)]
    for i, h in enumerate(reversed(year)):
        assert table.set(h, dict.fromkeys(HOUR_COLUMNS[1:], i + 1))
    assert table.hours() == year and len(table) == 24 * 365
    assert not table.set(year[-1], dict.fromkeys(HOUR_COLUMNS[1:], 1))  # (as it is)
    assert table.set(year[5], None) and table.line(year[5]) is None
    doc: dict = {}
    table.store(doc)
    assert len(doc["hour_table"]) < 2_000  # (a year of hours)
    assert HourTable.of(doc).rows.tolist() == table.rows.tolist()
    st = _store(tmp_path, media, "a")
    tier = LocalTier(tmp_path / "bucket")
    try:
        run_tiering(st, tier, 5 * S)
        key = layout.catalog_summary_key("gate")
        new = json.loads(tier.get(key))
        assert new["version"] == 2 and "hours" not in new
        hour = str(layout.catalog_hour_ns(START_NS))
        line = HourTable.of(new).line(int(hour))
        old = {"format": new["format"], "version": 1, "camera": "gate", "hours": {hour: line}}
        tier.put_bytes(key, json.dumps(old).encode(), if_match=tier.get_versioned(key)[1])
        (cam,) = bucket_cameras(tier.url)
        assert (cam.camera, cam.segments) == ("gate", 3)
        publish_hour(st, tier, "gate", int(hour))
        again = json.loads(tier.get(key))
        assert again["version"] == 2 and HourTable.of(again).line(int(hour)) == line
    finally:
        st.close()


def test_two_stores_that_recorded_one_camera_at_once_give_each_instant_once(tmp_path, media):
    """A camera recorded by two stores over the same 9 s (moved by hand outside a cluster,
    or a backfill imported on another node): both are kept, and a clip across the overlap
    takes each instant once, frame-exact, and decodes cleanly."""
    import av

    url = f"file://{tmp_path}/bucket"
    stores = [_store(tmp_path, media, "a"), _store(tmp_path, media, "b", "gate", START_NS + 3 * S)]
    for st in stores:
        assert run_tiering(st, st.tier(url), 0).tiered == 3
        st.close()
    out = tmp_path / "c.mp4"
    with open_bucket(url, ["gate"], START_NS, START_NS + 20 * S) as view:
        assert len(list(view.index.segments(view.camera_num("gate")))) == 6  # both kept
        tl = view.timeline("gate", START_NS, START_NS + 20 * S)
        assert tl.covered == [(START_NS, START_NS + 15 * S)]
        out.write_bytes(_clip(view, a=1, b=14))
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 13 * 25  # 13 s at 25 fps: each instant once
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
