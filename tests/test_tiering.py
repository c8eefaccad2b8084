"""Tiering to an object store (a local directory, and S3 over HTTP via moto): tier, delete
local, clip again with identical bytes; a crash between every step of the protocol followed
by a rerun loses nothing; a failing upload never deletes the local copy."""

from __future__ import annotations

import pytest

from tests.conftest import START_NS
from vstore.check import check_store
from vstore.clip import clip_bytes
from vstore.errors import TierError
from vstore.ingest import import_file
from vstore.store import open_store
from vstore.tier import LocalTier
from vstore.tiering import plan_tiering, run_tiering, tier_segment

S = 10**9


@pytest.fixture
def recorded(tmp_path, media):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    st = open_store(d)
    import_file(st, media("tier-src.ts", 12.0, codec="h264", gop_frames=25), "cam", START_NS)
    yield st
    st.close()


def clip(st, fmt="ts"):
    return b"".join(clip_bytes(st, "cam", START_NS + 2 * S, START_NS + 10 * S, format=fmt))


def local_files(st):
    return list(st.layout.iter_segment_files())


def test_tier_to_directory_then_clip_identical(recorded, tmp_path):
    before = clip(recorded)
    tier = LocalTier(tmp_path / "cold")
    # Only segments that ended 5 s before "now" move: with the real clock, all of them.
    res = run_tiering(recorded, tier, 5 * S)
    assert res.tiered == 3 and res.bytes > 0 and local_files(recorded) == []
    assert clip(recorded) == before  # same bytes through ranged reads of the objects
    assert check_store(recorded).ok
    assert [r["action"] for r in recorded.index.audit_records()] == ["tier"] * 3


@pytest.mark.s3
def test_tier_to_s3_over_http_then_clip_identical(recorded, s3_env, bucket):
    before_mp4 = clip(recorded, "mp4")
    tier = recorded.tier(f"s3://{bucket}/site-a")
    res = run_tiering(recorded, tier, 5 * S)
    assert res.tiered == 3 and local_files(recorded) == []
    assert clip(recorded, "mp4") == before_mp4
    assert check_store(recorded).ok
    keys = [o.key for o in tier.list_prefix("cam/")]
    assert len(keys) == 3 and all(k.startswith("cam/2025-01-17/") for k in keys)


def test_hot_and_cold_in_one_clip(recorded, tmp_path):
    before = clip(recorded)
    tier = LocalTier(tmp_path / "cold")
    rows = plan_tiering(recorded, 5 * S)
    tier_segment(recorded, tier, rows[0], "cam")  # only the oldest segment goes cold
    assert len(local_files(recorded)) == 2
    assert clip(recorded) == before
    assert check_store(recorded).ok


class CrashAfter(Exception):
    pass


@pytest.mark.parametrize("step", ["upload", "index_flip", "local_delete"])
def test_crash_between_steps_then_rerun(recorded, tmp_path, monkeypatch, step):
    before = clip(recorded)
    tier = LocalTier(tmp_path / "cold")
    row = plan_tiering(recorded, 5 * S)[0]
    from vstore import retention

    if step == "upload":
        real = tier.put_file

        def put_then_crash(*a, **k):
            real(*a, **k)
            raise CrashAfter()

        monkeypatch.setattr(tier, "put_file", put_then_crash)
    elif step == "index_flip":
        monkeypatch.setattr(
            retention, "_remove_marked", lambda *a, **k: (_ for _ in ()).throw(CrashAfter())
        )
    else:

        def rm_file_only(store, seg_id, relpath):
            store.fs.unlink(store.layout.path(relpath))
            raise CrashAfter()  # the garbage mark is left behind

        monkeypatch.setattr(retention, "_remove_marked", rm_file_only)
    with pytest.raises(CrashAfter):
        tier_segment(recorded, tier, row, "cam")
    monkeypatch.undo()
    root = recorded.root
    recorded.close()
    with open_store(root) as st:  # recovery finishes what the index already decided
        assert check_store(st).ok
        assert clip(st) == before
        res = run_tiering(st, tier, 5 * S)
        assert local_files(st) == []
        assert check_store(st).ok
        assert clip(st) == before
        assert res.tiered == (3 if step == "upload" else 2)


def test_failed_upload_keeps_the_local_copy(recorded, tmp_path, monkeypatch):
    tier = LocalTier(tmp_path / "cold")

    def refuse(*a, **k):
        raise TierError("s3://x: endpoint unreachable")

    monkeypatch.setattr(tier, "put_file", refuse)
    with pytest.raises(TierError):
        run_tiering(recorded, tier, 5 * S)
    assert len(local_files(recorded)) == 3
    assert check_store(recorded).ok


def test_missing_tier_object_is_reported_by_check(recorded, tmp_path):
    tier = LocalTier(tmp_path / "cold")
    run_tiering(recorded, tier, 5 * S)
    obj = next(tier.list_prefix(""))
    tier.delete(obj.key)
    rep = check_store(recorded)
    assert not rep.ok and "missing" in rep.problems[0].message


def test_tier_cli_dry_run_and_run(recorded, tmp_path, capsys):
    import json

    from vstore.cli.main import main

    root = str(recorded.root)
    recorded.close()
    cold = tmp_path / "cold"
    assert (
        main(
            [
                "tier",
                "run",
                "--store",
                root,
                "--to",
                str(cold),
                "--older-than",
                "5s",
                "--dry-run",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["planned"] == 3 and doc["dry_run"]
    assert main(["tier", "run", "--store", root, "--to", str(cold), "--older-than", "5s"]) == 0
    assert "moved 3 segment(s)" in capsys.readouterr().out
    assert main(["check", "--store", root]) == 0
    assert main(["tier", "run", "--store", root]) == 2  # no tier configured: clear usage error
    assert "no tier" in capsys.readouterr().err


@pytest.mark.s3
def test_rebuild_index_from_s3_on_a_new_node(recorded, tmp_path, s3_env, bucket, capsys):
    before = clip(recorded, "mp4")
    url = f"s3://{bucket}/site-b"
    run_tiering(recorded, recorded.tier(url), 5 * S)
    from vstore.cli.main import main

    node2 = tmp_path / "node2"
    assert main(["rebuild-index", "--from-s3", url, "--store", str(node2), "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["indexed"] == 3 and doc["problems"] == []
    with open_store(node2) as st:
        assert clip(st, "mp4") == before  # a second node serves the same clip from S3
        assert check_store(st).ok
        # Its own new segments never reuse the ids the objects carry.
        assert st.index.new_segment_id() > 3
    assert main(["rebuild-index", "--from", url, "--store", str(node2), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["already_indexed"] == 3
