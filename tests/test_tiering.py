"""Tiering to an object store (a local directory, and S3 over HTTP via moto): tier, delete
local, clip again with identical bytes; a crash between every step of the protocol followed
by a rerun loses nothing; a failing upload never deletes the local copy."""

from __future__ import annotations

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base.errors import TierError, VstoreError
from vstore.export.clip import clip_bytes
from vstore.ingest.file_import import import_file
from vstore.lifecycle.check import check_store
from vstore.lifecycle.tiering import plan_tiering, run_tiering, tier_segment
from vstore.segment.reader import SegmentReader
from vstore.store import garbage
from vstore.tier import LocalTier

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
    assert [r["action"] for r in recorded.index.audit_records()] == ["audit_start"] + ["tier"] * 3


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

    if step == "upload":
        real = tier.put_file

        def put_then_crash(*a, **k):
            real(*a, **k)
            raise CrashAfter()

        monkeypatch.setattr(tier, "put_file", put_then_crash)
    elif step == "index_flip":
        monkeypatch.setattr(
            garbage, "remove_marked", lambda *a, **k: (_ for _ in ()).throw(CrashAfter())
        )
    else:

        def rm_file_only(store, seg_id, rec, leases=None):
            store.fs.unlink(store.layout.path(rec["path"]))
            raise CrashAfter()  # the garbage mark is left behind

        monkeypatch.setattr(garbage, "remove_marked", rm_file_only)
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
    obj = next(tier.list_prefix("cam/"))
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
    out = capsys.readouterr().out
    # The default pace (max_rate = "auto") is said: a few small segments get the floor.
    assert "moved 3 segment(s)" in out and "paced at 20 MB/s" in out
    assert main(["check", "--store", root]) == 0
    assert main(["tier", "run", "--store", root]) == 2  # no tier configured: clear usage error
    assert "no tier" in capsys.readouterr().err


def test_tier_cli_max_rate_auto_none_and_nonsense(recorded, tmp_path, capsys):
    import json

    from vstore.cli.main import main

    root, cold = str(recorded.root), str(tmp_path / "cold")
    recorded.close()
    base = ["tier", "run", "--store", root, "--to", cold, "--older-than", "5s"]
    assert main([*base, "--max-rate", "fast"]) == 2
    assert "use auto, none or a size" in capsys.readouterr().err
    assert main([*base, "--max-rate", "1KB"]) == 2  # would never finish
    capsys.readouterr()
    # A dry run says the pace it would take; "none" runs uncapped and says so.
    assert main([*base, "--max-rate", "auto", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_rate_bytes"] == 20_000_000
    assert main([*base, "--max-rate", "none", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tiered"] == 3 and doc["max_rate_bytes"] == 0


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


# --- the job: bounded parallelism, stopping cleanly, per-camera hot age ----------------------


class CountingTier(LocalTier):
    """A real directory tier that records how many uploads run at once (each takes a while,
    so that concurrent ones overlap) and can fail chosen uploads."""

    def __init__(self, root, fail_on=()):
        import threading

        super().__init__(root)
        self._lock = threading.Lock()
        self.active = self.peak = self.calls = 0
        self.fail_on = set(fail_on)

    def put_file(self, *a, **k):
        import time

        with self._lock:
            self.calls += 1
            n = self.calls
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.1)
            if n in self.fail_on:
                raise TierError(f"{self.url}: upload failed: SlowDown")
            return super().put_file(*a, **k)
        finally:
            with self._lock:
                self.active -= 1


@pytest.mark.parametrize("parallel", [1, 2])
def test_uploads_never_exceed_the_parallel_bound(recorded, tmp_path, parallel):
    before = clip(recorded)
    tier = CountingTier(tmp_path / "cold")
    res = run_tiering(recorded, tier, 5 * S, parallel=parallel)
    assert res.tiered == 3 and tier.peak == parallel
    assert clip(recorded) == before and check_store(recorded).ok


def test_failed_upload_mid_run_stops_cleanly_then_rerun_resumes(recorded, tmp_path):
    before = clip(recorded)
    tier = CountingTier(tmp_path / "cold", fail_on={2})
    with pytest.raises(TierError, match=r"1 of 3 segment\(s\) moved.*rerun resumes") as ei:
        run_tiering(recorded, tier, 5 * S, parallel=1)
    assert ei.value.result.tiered == 1 and "SlowDown" in ei.value.result.errors[0]
    assert tier.calls == 2  # no new upload started after the failure
    assert len(local_files(recorded)) == 2 and check_store(recorded).ok
    assert clip(recorded) == before
    res = run_tiering(recorded, tier, 5 * S)
    assert res.tiered == 2 and local_files(recorded) == []
    assert clip(recorded) == before and check_store(recorded).ok


def test_bandwidth_cap_spreads_uploads_over_time(recorded, tmp_path):
    from vstore.base.ratelimit import RateLimiter

    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    rate = RateLimiter(100_000, clock=lambda: now[0], sleep=sleep)
    rows = plan_tiering(recorded, 5 * S)
    total = 0
    tier = LocalTier(tmp_path / "cold")
    for row in rows:
        total += tier_segment(recorded, tier, row, "cam", rate=rate).bytes
    # Both passes (the verify read, then the copy) pass the cap: a burst of 0.1 s, then
    # 100 kB/s. The fake clock shows how long the cap made it take.
    assert now[0] == pytest.approx((2 * total - 10_000) / 100_000, rel=0.01)
    assert check_store(recorded).ok


def fake_clock_limiters(monkeypatch):
    """run_tiering's limiters on a fake clock: the clock shows how long the pace made a job
    take, exactly, on any machine. Returns the clock ([seconds])."""
    from vstore.base.ratelimit import RateLimiter
    from vstore.lifecycle import tiering

    now = [0.0]

    def sleep(s):
        now[0] += s

    monkeypatch.setattr(
        tiering, "RateLimiter", lambda bps: RateLimiter(bps, clock=lambda: now[0], sleep=sleep)
    )
    return now


def test_max_rate_paces_footage_even_for_a_job_inside_one_old_burst(
    recorded, tmp_path, monkeypatch
):
    """The failure mode: a token bucket that starts with a second's worth let a small job run
    at full disk speed from start to end. Now footage moves at max_rate from the start."""
    now = fake_clock_limiters(monkeypatch)
    rows = plan_tiering(recorded, 5 * S)
    total = sum(r.size_bytes for r in rows)
    rate = 400_000
    assert total < rate  # the whole job fits in what a one-second burst would have allowed
    res = run_tiering(recorded, LocalTier(tmp_path / "cold"), 5 * S, max_rate_bytes=rate)
    assert res.tiered == 3 and res.max_rate_bytes == rate
    # Footage at 400 kB/s (both passes over each file at twice that), less a 0.1 s burst.
    assert now[0] == pytest.approx(total / rate - 0.1, rel=0.01)
    assert check_store(recorded).ok


def _row(cam, start_s, dur_s, size_bytes):
    from vstore.index.time_index import SegmentRow

    return SegmentRow(
        cam,
        start_s,
        start_s * S,
        (start_s + dur_s) * S,
        "sealed",
        "local",
        "p",
        size_bytes,
        "",
        1,
        1,
        ("h264",),
    )


def test_auto_rate_keeps_four_times_ahead_of_what_cameras_record():
    from vstore.lifecycle.tiering import AUTO_RATE_FLOOR_BYTES, auto_rate_bytes, footage_rate_bytes

    # Camera 1 records 10 MB/s over two segments (a gap between them does not count), camera
    # 2 records 5 MB/s: together 15 MB/s of footage, so "auto" tiers at 60 MB/s.
    rows = [_row(1, 0, 60, 600_000_000), _row(1, 500, 60, 600_000_000), _row(2, 0, 60, 300e6)]
    assert footage_rate_bytes(rows) == pytest.approx(15e6)
    assert auto_rate_bytes(rows) == 60_000_000
    # A few low-bitrate cameras (or an empty plan) get the floor, not a crawl.
    assert auto_rate_bytes([_row(1, 0, 60, 30_000_000)]) == AUTO_RATE_FLOOR_BYTES
    assert auto_rate_bytes([]) == AUTO_RATE_FLOOR_BYTES
    assert footage_rate_bytes([_row(1, 0, 0, 1000)]) == 0  # a zero-length segment: no rate


def test_max_rate_none_is_uncapped_and_auto_is_the_default(recorded, tmp_path, monkeypatch):
    now = fake_clock_limiters(monkeypatch)
    res = run_tiering(recorded, LocalTier(tmp_path / "cold"), 5 * S, max_rate_bytes="none")
    assert res.tiered == 3 and res.max_rate_bytes == 0 and now[0] == 0  # never waited
    assert recorded.config.tier.max_rate_bytes == "auto"
    with pytest.raises(VstoreError, match="bad rate"):
        run_tiering(recorded, LocalTier(tmp_path / "cold"), 5 * S, max_rate_bytes="fast")


def test_each_camera_tiers_at_its_own_hot_age(tmp_path, media):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        '[store]\nsegment_duration_s = 4\n[tier]\nolder_than = "1d"\n'
        '[tier.cameras.lobby]\nolder_than = "36500d"\n'
    )
    src = media("tier-src.ts", 12.0, codec="h264", gop_frames=25)
    with open_store(d) as st:
        import_file(st, src, "cam", START_NS)
        import_file(st, src, "lobby", START_NS)
        assert {r.camera_num for r in plan_tiering(st)} == {st.camera_num("cam")}
        res = run_tiering(st, LocalTier(tmp_path / "cold"))
        assert res.tiered == 3
        assert all(p.startswith("segments/lobby/") for p in local_files(st))
        # An explicit age applies to every camera (the CLI's --older-than).
        assert len(plan_tiering(st, 5 * S)) == 3


# --- the bounded read cache ------------------------------------------------------------------


def test_read_cache_serves_repeat_clips_and_survives_damage(tmp_path, media):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text('[store]\nsegment_duration_s = 4\n[tier]\ncache = "1MiB"\n')
    with open_store(d) as st:
        import_file(st, media("tier-src.ts", 12.0, codec="h264", gop_frames=25), "cam", START_NS)
        before = clip(st)
        tier = st.tier(str(tmp_path / "cold"))
        run_tiering(st, tier, 5 * S)
        assert clip(st) == before
        misses = tier.misses
        assert misses > 0
        assert clip(st, "ts") == before  # second time: from the cache
        assert tier.misses == misses and tier.hits > 0
        files = sorted(tier.dir.iterdir())
        assert sum(p.stat().st_size for p in files) == tier.size_bytes <= 1024**2
        # A damaged entry is read through from the tier, never handed to the clip.
        victim = max(files, key=lambda p: p.stat().st_size)
        raw = bytearray(victim.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        victim.write_bytes(bytes(raw))
        assert clip(st) == before
        assert tier.misses > misses
    # Reopened, the cache keeps what it had; with a smaller bound it evicts down to it, and
    # stays within it however much is read.
    with open_store(d) as st:
        assert st.tier(str(tmp_path / "cold")).size_bytes > 64 * 1024
    (d / "vstore.toml").write_text('[store]\nsegment_duration_s = 4\n[tier]\ncache = "64KiB"\n')
    with open_store(d) as st:
        tier = st.tier(str(tmp_path / "cold"))
        assert 0 < tier.size_bytes <= 64 * 1024
        assert clip(st) == before and check_store(st).ok
        on_disk = sum(p.stat().st_size for p in tier.dir.iterdir())
        assert on_disk == tier.size_bytes <= 64 * 1024


# --- a server that refuses the credentials ---------------------------------------------------


@pytest.mark.s3
def test_wrong_credentials_are_refused_clearly_and_nothing_local_is_lost(
    recorded, moto_process, monkeypatch
):
    endpoint = moto_process(INITIAL_NO_AUTH_ACTION_COUNT="0")  # a server that checks keys
    for k, v in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG",
        "AWS_SECRET_ACCESS_KEY": "not-the-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(k, v)
    before = clip(recorded)
    with pytest.raises(TierError, match=r"access refused .*check the credentials"):
        run_tiering(recorded, recorded.tier("s3://vstore-creds/x"), 5 * S)
    assert len(local_files(recorded)) == 3
    assert clip(recorded) == before and check_store(recorded).ok


# --- retention and legal holds over tiered footage -------------------------------------------


def _objects(tier):
    return sorted(o.key for o in tier.list_prefix("cam/"))


def test_tiered_footage_keeps_its_own_longer_age(tmp_path, media):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        '[store]\nsegment_duration_s = 4\n[retention]\nmax_age = "30d"\ntiered_max_age = "36500d"\n'
    )
    from vstore.lifecycle.retention import run_retention

    with open_store(d) as st:
        import_file(st, media("tier-src.ts", 12.0, codec="h264", gop_frames=25), "cam", START_NS)
        tier = LocalTier(tmp_path / "cold")
        tier_segment(st, tier, plan_tiering(st, 5 * S)[0], "cam")  # the oldest goes cold
        _plan, res = run_retention(st)
        # Hot footage past 30 days goes; the older tiered segment stays (its age is 100 y).
        assert res.deleted_segments == 2 and local_files(st) == []
        assert len(_objects(tier)) == 1 and check_store(st).ok
        # An age for local footage leaves tiered footage at its own age (never shortens it)
        _plan, res = run_retention(st, max_age_ns=30 * 86400 * S)
        assert res.deleted_segments == 0 and len(_objects(tier)) == 1
        # The tiered age is overridden by name: the object goes.
        _plan, res = run_retention(st, tiered_max_age_ns=30 * 86400 * S)
        assert res.deleted_segments == 1 and _objects(tier) == []
        assert check_store(st).ok
        assert st.index.audit_records()[-1]["detail"]["location"] == tier.url


def test_object_delete_failing_after_the_index_mark_is_finished_by_a_rerun(
    recorded, tmp_path, monkeypatch
):
    from vstore.lifecycle.retention import run_retention

    tier = LocalTier(tmp_path / "cold")
    run_tiering(recorded, tier, 5 * S)

    def unreachable(key):
        raise TierError(f"{tier.url}: endpoint unreachable")

    monkeypatch.setattr(type(recorded.tier(tier.url)), "delete", lambda self, key: unreachable(key))
    _plan, res = run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    # D1 happened (the index no longer offers the footage); the objects are marked, not lost
    # track of, and the errors say so.
    assert res.deleted_segments == 3 and len(res.errors) == 3
    assert "a rerun deletes it" in res.errors[0]
    assert len(_objects(tier)) == 3 and len(recorded.index.garbage()) == 3
    assert check_store(recorded).ok
    monkeypatch.undo()
    _plan, res = run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    assert res.finished_garbage == 3 and res.errors == []
    assert _objects(tier) == [] and recorded.index.garbage() == []
    assert check_store(recorded).ok


@pytest.mark.s3
def test_hold_on_tiered_footage_is_an_s3_object_legal_hold_too(recorded, s3_env, lock_bucket):
    from vstore.lifecycle.retention import run_retention
    from vstore.store.holds import add_hold, release_hold

    held_from, held_to = START_NS + 5 * S, START_NS + 6 * S
    before = b"".join(clip_bytes(recorded, "cam", held_from, held_to, format="ts"))
    tier = recorded.tier(f"s3://{lock_bucket}/site")
    run_tiering(recorded, tier, 5 * S)
    rows = {r.segment_id: r for r in recorded.index.segments(recorded.camera_num("cam"))}
    hold = add_hold(recorded, "cam", held_from, held_to, "case 9", "det. rao")
    on = {sid for sid, r in rows.items() if tier.legal_hold(r.path)}
    assert on == {sid for sid, r in rows.items() if r.start_ns < held_to and r.end_ns > held_from}
    assert len(on) == 1 and check_store(recorded).ok
    held_key = rows[next(iter(on))].path
    # The object store enforces it on its own: even a direct delete is refused.
    with pytest.raises(TierError, match="legal hold"):
        tier.delete(held_key)
    _plan, res = run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    assert res.deleted_segments == 2 and res.errors == [] and res.trimmed_segments == 0
    assert [o.key for o in tier.list_prefix("cam/")] == [held_key]
    after = b"".join(clip_bytes(recorded, "cam", held_from, held_to, format="ts"))
    assert after == before  # the held range still clips frame-exactly from S3
    release_hold(recorded, hold.id, "sgt. kim")
    assert tier.legal_hold(held_key) is False
    _plan, res = run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    assert res.deleted_segments == 1 and list(tier.list_prefix("cam/")) == []
    assert check_store(recorded).ok


@pytest.mark.s3
def test_check_finds_and_repairs_a_missing_object_legal_hold(recorded, s3_env, lock_bucket):
    from vstore.store.holds import add_hold

    tier = recorded.tier(f"s3://{lock_bucket}/site")
    run_tiering(recorded, tier, 5 * S)
    add_hold(recorded, "cam", START_NS, START_NS + S, "case 10", "det. rao")
    key = next(r.path for r in recorded.index.segments(recorded.camera_num("cam")))
    tier.set_legal_hold(key, False)  # someone lifted it behind vstore's back
    rep = check_store(recorded)
    assert not rep.ok and [p.code for p in rep.problems] == ["C6"]
    assert check_store(recorded, repair=True).ok
    assert tier.legal_hold(key) is True and check_store(recorded).ok


@pytest.mark.s3
def test_hold_with_the_object_store_down_is_recorded_and_says_so(
    recorded, tmp_path, moto_process, monkeypatch, capsys
):
    import json

    from vstore.cli.main import main

    endpoint = moto_process()
    for k, v in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(k, v)
    import boto3

    boto3.client("s3").create_bucket(Bucket="vstore-down", ObjectLockEnabledForBucket=True)
    run_tiering(recorded, recorded.tier("s3://vstore-down/x"), 5 * S)
    root = str(recorded.root)
    recorded.close()
    for p in moto_process.procs:
        p.kill()
        p.wait()
    args = ["hold", "add", "--store", root, "--camera", "cam", "--by", "det. rao"]
    rc = main([*args, "--from", "2025-01-17T00:00:00Z", "--to", "2030-01-01T00:00:00Z",
               "--reason", "case 11"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 9 and "hold #1 itself is recorded" in err and "hold sync" in err
    assert main(["hold", "list", "--store", root, "--json"]) == 0
    assert [h["reason"] for h in json.loads(capsys.readouterr().out)["holds"]] == ["case 11"]


@pytest.mark.s3
@pytest.mark.parametrize(
    "fail_every,reset",
    [(3, False), (3, True), (1, False)],
    ids=["a-third-503", "a-third-reset", "all-503"],
)
def test_tier_job_against_a_server_failing_requests(
    recorded, moto_endpoint, bucket, monkeypatch, fail_every, reset
):
    from tests.s3proxy import flaky_s3

    before = clip(recorded)
    with flaky_s3(moto_endpoint, fail_every, reset) as endpoint:
        for k, v in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "3",
        }.items():
            monkeypatch.setenv(k, v)
        tier = recorded.tier(f"s3://{bucket}/flaky")
        if fail_every == 1:  # nothing gets through: a clean stop, with the reason
            with pytest.raises(TierError, match=r"SlowDown.*0 of 3 segment\(s\) moved"):
                run_tiering(recorded, tier, 5 * S)
            assert len(local_files(recorded)) == 3
        else:  # retried with backoff: the job completes
            assert run_tiering(recorded, tier, 5 * S).tiered == 3
            assert local_files(recorded) == []
        if fail_every == 3:
            assert check_store(recorded, verify_hashes=False).ok
    if fail_every == 1:
        assert clip(recorded) == before and check_store(recorded).ok


@pytest.mark.s3
def test_big_segment_uploads_in_parts_within_the_shared_pace(tmp_path, s3_env, bucket, monkeypatch):
    """A segment past the multipart threshold goes up in parts, intact, and its parts pass
    the job's one cap: a per-transfer bandwidth limit let each upload take the whole cap."""
    import vstore.tier.s3 as s3mod
    from tests.test_timestamps import IDR, PPS, SLICE, SPS, VIDEO
    from vstore import Packet

    monkeypatch.setattr(s3mod, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3mod, "MULTIPART_CHUNK", 5 * 1024 * 1024)  # S3's smallest part
    with open_store(tmp_path / "store") as st:
        with st.writer("cam", [VIDEO], start_ns=START_NS) as w:
            for i in range(400):  # 16 s of 20 KB frames: one segment of about 8 MB
                key = i % 25 == 0
                data = (SPS + PPS + IDR if key else SLICE) + i.to_bytes(4, "big") * 5000
                w.write(Packet(0, i * 3600, i * 3600, key, data))
        (row,) = plan_tiering(st, 5 * S)
        assert row.size_bytes > s3mod.MULTIPART_THRESHOLD
        before = b"".join(clip_bytes(st, "cam", START_NS, START_NS + 20 * S, format="ts"))
        now = fake_clock_limiters(monkeypatch)
        rate = 4_000_000
        res = run_tiering(st, st.tier(f"s3://{bucket}/big"), 5 * S, max_rate_bytes=rate)
        assert res.tiered == 1 and local_files(st) == []
        assert now[0] == pytest.approx(row.size_bytes / rate - 0.1, rel=0.01)
        after = b"".join(clip_bytes(st, "cam", START_NS, START_NS + 20 * S, format="ts"))
        assert after == before and check_store(st).ok


def test_two_stores_sharing_a_bucket_never_overwrite_each_others_objects(tmp_path, media):
    """Segment ids count per store: two stores importing the same old recording into one
    camera at one start tier segments with the same start and id; their objects must not
    meet at one key (the second upload would replace the first store's footage)."""
    tier = LocalTier(tmp_path / "shared")
    src = media("tier-src.ts", 12.0, codec="h264", gop_frames=25)
    stores = []
    try:
        for name in ("a", "b"):
            d = tmp_path / name
            d.mkdir()
            (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
            st = open_store(d)
            stores.append(st)
            import_file(st, src, "cam", START_NS)
            run_tiering(st, tier, 5 * S)
        assert len(_objects(tier)) == 6
        for st in stores:
            assert check_store(st).ok
            assert clip(st)  # each store's own objects, intact
    finally:
        for st in stores:
            st.close()


class _DeletedWhileUploading(LocalTier):
    """A directory tier during whose upload a retention run deletes the segment."""

    def __init__(self, root, store):
        super().__init__(root)
        self.store = store

    def put_file(self, key, path, *a, **k):
        info = super().put_file(key, path, *a, **k)
        st, self.store = self.store, None
        if st is not None:  # (the first upload's)
            num = st.camera_num("cam")
            row = next(r for r in st.index.segments(num) if r.location == "local")
            garbage.delete_segment(st, row, "cam", "retention", {"reason": "age"})
        return info


def test_a_segment_deleted_while_it_uploads_is_not_put_back(recorded, tmp_path):
    """A retention run that deleted a segment while its upload ran: the tier's index
    update used to put its row back (over chunk rows that were gone, its object kept): shown
    as recorded, unclippable, deleted again by the next run. The upload is undone."""
    tier = _DeletedWhileUploading(tmp_path / "cold", recorded)
    first = plan_tiering(recorded, 5 * S)[0]
    res = run_tiering(recorded, tier, 5 * S, parallel=1)
    assert res.changed == 1 and res.tiered == 2 and len(_objects(tier)) == 2
    num = recorded.camera_num("cam")
    assert all(r.start_ns != first.start_ns for r in recorded.index.segments(num))
    actions = [a["action"] for a in recorded.index.audit_records()]
    assert actions.count("delete") == 1 and actions.count("tier") == 2
    assert check_store(recorded).ok


def test_recorded_damage_tiers_with_its_segment_and_unrecorded_damage_stops_only_it(
    recorded, tmp_path
):
    """One damaged segment stopped every tiering run at it, for good (checked as a whole,
    it can never verify), so the newer footage of every camera stayed local and retention
    took it at its hot age. Unrecorded damage leaves that segment local and the others go;
    once `check --repair` recorded it, the segment tiers with its damage, out of the index."""
    from tests.test_never_lose_footage import flip_byte_in_gop

    num = recorded.camera_num("cam")
    middle = sorted(recorded.index.segments(num), key=lambda r: r.start_ns)[1]
    flip_byte_in_gop(recorded.layout.path(middle.path), 0)
    tier = LocalTier(tmp_path / "cold")
    with pytest.raises(TierError, match=r"1 segment\(s\) do not verify.*check --repair") as ei:
        run_tiering(recorded, tier, 5 * S, parallel=1)
    assert ei.value.result.tiered == 2 and local_files(recorded) == [middle.path]
    fixed = check_store(recorded, repair=True)  # (the damage, recorded now)
    assert [(p.code, p.repaired) for p in fixed.problems] == [("C2", True)]
    assert run_tiering(recorded, tier, 5 * S).tiered == 1 and local_files(recorded) == []
    rep = check_store(recorded)
    assert rep.ok and [p.code for p in rep.problems] == ["C2"] and rep.problems[0].repaired
    assert clip(recorded)  # (the rest of the segment still served)


@pytest.mark.parametrize("where", ["local", "tiered"])
def test_footage_a_hold_saves_from_a_pending_deletion_is_indexed_again(
    recorded, tmp_path, monkeypatch, where
):
    """A deletion left pending (its object store unreachable, or a clip reading the file)
    that a hold placed since cancels (D5) kept the bytes but left them out of the index:
    the held footage showed nowhere (no timeline, no clip, check clean) until someone ran
    rebuild-index. It is indexed again from its own bytes."""
    from vstore.lifecycle.retention import run_retention
    from vstore.store.holds import add_hold

    before = clip(recorded)
    if where == "tiered":
        tier = LocalTier(tmp_path / "cold")
        run_tiering(recorded, tier, 5 * S)
        monkeypatch.setattr(type(recorded.tier(tier.url)), "delete",
                            lambda self, key: (_ for _ in ()).throw(TierError("unreachable")))  # fmt: skip
        run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
        monkeypatch.undo()
    else:  # (a reader's lease taken after the check, or a crash, between D1 and D2)
        monkeypatch.setattr(garbage, "remove_marked", lambda *a, **k: False)
        run_retention(recorded, max_age_ns=S)
        monkeypatch.undo()
    num = recorded.camera_num("cam")
    assert list(recorded.index.segments(num)) == [] and len(recorded.index.garbage()) == 3
    add_hold(recorded, "cam", START_NS, START_NS + 12 * S, "case 7", "test")
    run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    assert recorded.index.garbage() == [] and len(list(recorded.index.segments(num))) == 3
    assert clip(recorded) == before
    assert check_store(recorded).ok
    cancelled = [a for a in recorded.index.audit_records() if a["action"] == "delete_cancelled"]
    assert len(cancelled) == 3 and all(a["detail"]["indexed"] for a in cancelled)


def test_another_store_s_object_gone_from_the_bucket_is_left_out_by_repair(tmp_path, media):
    """A store that indexed another's objects (rebuild-index) found one gone (its owner's
    retention deleted it): check named the missing object for good, and its repair could
    not clear it. Its view of that footage is dropped (audited), nothing of its own."""
    from vstore.lifecycle.tiering import rebuild_index_from_tier

    tier = LocalTier(tmp_path / "shared")
    src = media("tier-src.ts", 12.0, codec="h264", gop_frames=25)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    with open_store(tmp_path / "a") as a:
        import_file(a, src, "cam", START_NS)
        run_tiering(a, tier, 5 * S)
    with open_store(tmp_path / "b") as b:
        assert rebuild_index_from_tier(b, tier).foreign == 3
        gone = _objects(tier)[0]
        tier.delete(gone)
        rep = check_store(b)
        assert [(p.code, p.path.endswith(gone)) for p in rep.problems] == [("C2", True)]
        fixed = check_store(b, repair=True)
        assert fixed.ok and all(p.repaired for p in fixed.problems)
        assert check_store(b).problems == []
        assert len(list(b.index.segments(b.camera_num("cam")))) == 2
        assert [r["action"] for r in b.index.audit_records()][-1] == "forget"


@pytest.mark.s3
def test_a_release_cut_off_before_it_lifted_its_object_holds_does_not_stop_retention(
    recorded, s3_env, lock_bucket, monkeypatch
):
    """A `hold release` killed after its commit, before it lifted the objects' legal holds
    (or made while the object store was unreachable): the next retention run took the
    footage out of the index and every run after failed to delete the objects, for good,
    while check said the store was clean. A refused delete of a marked object lifts the
    hold no active hold wants, and deletes it."""
    from vstore.lifecycle.retention import run_retention
    from vstore.store import holds
    from vstore.store.holds import add_hold, release_hold

    tier = recorded.tier(f"s3://{lock_bucket}/cut")
    run_tiering(recorded, tier, 5 * S)
    hold = add_hold(recorded, "cam", START_NS, START_NS + 12 * S, "case 9", "det. rao")
    keys = [o.key for o in tier.list_prefix("cam/")]
    assert len(keys) == 3 and all(tier.legal_hold(k) for k in keys)
    monkeypatch.setattr(holds, "_mirror", lambda *a, **k: None)  # (killed before it)
    release_hold(recorded, hold.id, "sgt. kim")
    monkeypatch.undo()
    assert all(tier.legal_hold(k) for k in keys)
    _plan, res = run_retention(recorded, max_age_ns=S, tiered_max_age_ns=S)
    assert res.deleted_segments == 3 and res.errors == []
    assert list(tier.list_prefix("cam/")) == [] and recorded.index.garbage() == []
    assert check_store(recorded).ok


@pytest.mark.s3
def test_held_footage_in_a_bucket_without_object_lock_checks_clean(recorded, s3_env, bucket):
    """A server that answers a legal-hold query for a bucket without Object Lock (moto: an
    empty answer) made check report every held tiered segment as lacking its object hold,
    for good, and its repair say it set one it had not."""
    from vstore.store.holds import add_hold

    add_hold(recorded, "cam", START_NS, START_NS + 12 * S, "case 9", "det. rao")
    tier = recorded.tier(f"s3://{bucket}/nolock")
    assert run_tiering(recorded, tier, 5 * S).tiered == 3
    assert tier.legal_hold(_objects(tier)[0]) is None  # (unsupported, not "off")
    assert check_store(recorded).ok


def _cut_short(st, which=1, keep=0.6):
    """A sealed file of ``st`` cut short (its footer, trailer and some chunks gone), its lost
    end recorded by check --repair (R6). Returns its row, the bytes the disk still holds
    after its header, and its size."""
    num = st.camera_num("cam")
    row = sorted(st.index.segments(num), key=lambda r: r.start_ns)[which]
    path = st.layout.path(row.path)
    path.write_bytes(path.read_bytes()[: int(row.size_bytes * keep)])
    assert check_store(st, repair=True).ok
    with SegmentReader.open(path) as rd:
        return row, path.read_bytes()[rd.header_len :], path.stat().st_size


def test_a_segment_cut_short_is_written_again_whole_and_tiers(recorded, tmp_path):
    """A sealed file cut short, its lost end recorded by check --repair (R6), could not
    tier (no object without its footer could be read back alone): it stayed on the disk
    and hot-age retention deleted it, footage that was to be kept for its whole retention
    in the tier. What the disk still holds is written again whole (every byte after its
    header, verbatim, under a header naming the original) and that copy tiers; the clip
    serves what it served, the chain and check stay whole, and a trim record accounts."""
    row, body_of_cut, cut_size = _cut_short(recorded)
    packets = len(list(recorded.read_packets("cam", START_NS, START_NS + 20 * S)))
    before = clip(recorded)
    tier = LocalTier(tmp_path / "cold")
    res = run_tiering(recorded, tier, 5 * S)
    assert (res.tiered, res.rewritten, res.kept_local) == (3, [row.path], [])
    assert local_files(recorded) == [] and check_store(recorded).ok
    assert clip(recorded) == before
    assert len(list(recorded.read_packets("cam", START_NS, START_NS + 20 * S))) == packets
    # One gap where the lost end was (its damaged chunks and the copy's end, joined).
    [gap] = recorded.timeline("cam", None, None).gaps
    assert gap[1] - gap[0] == 2 * S
    # Nothing the disk held is dropped: the copy's bytes after its header are the file's.
    copy = next(r for r in recorded.index.segments(row.camera_num) if r.start_ns == row.start_ns)
    with SegmentReader.open(tier.root / copy.path) as rd:
        body = rd.src.read(rd.header_len, rd.trailer().footer_offset - rd.header_len)
        [origin] = rd.meta.extra["trimmed_from"]
    assert body == body_of_cut  # (every byte after its header, as the disk held it)
    assert (origin["segment_id"], origin["sha256"]) == (row.segment_id, row.sha256)
    assert origin["cut_short_bytes"] == cut_size
    trims = [r for r in recorded.index.audit_records() if r["action"] == "trim"]
    assert [t["detail"]["segment_id"] for t in trims] == [row.segment_id]
    assert "cut short" in trims[0]["detail"]["reason"]


def test_a_rewrite_of_a_segment_changed_meanwhile_is_discarded(recorded):
    """The copy of a file cut short commits only over the segment as it was copied: one a
    repair or a retention run changed meanwhile is left as it is now, the copy removed."""
    from vstore.lifecycle.trim import rewrite_cut_short

    row, _body, _size = _cut_short(recorded)
    chunks = recorded.index.segment_chunks(row)
    files = local_files(recorded)
    assert rewrite_cut_short(recorded, row, "cam", chunks[:-1], "test") is None
    assert local_files(recorded) == files and recorded.index.open_segments() == []
    assert check_store(recorded).ok


def test_a_crash_while_a_cut_short_segment_is_written_again_loses_nothing(
    recorded, tmp_path, monkeypatch
):
    """Killed after the copy of a file cut short was written, before its commit: recovery
    indexes the copy (R4, its chunk rows replacing the original's), the clip serves the
    same, and the original, with no chunk of its own left, stays as it is."""
    from vstore.lifecycle import trim

    row, _body, _size = _cut_short(recorded)
    before = clip(recorded)
    monkeypatch.setattr(trim, "_retire", lambda *a, **k: (_ for _ in ()).throw(CrashAfter()))
    with pytest.raises(CrashAfter):
        run_tiering(recorded, LocalTier(tmp_path / "cold"), 5 * S)
    monkeypatch.undo()
    root = recorded.root
    recorded.close()
    with open_store(root) as st:
        assert check_store(st).ok and clip(st) == before
        res = run_tiering(st, LocalTier(tmp_path / "cold"), 5 * S)
        assert res.kept_local == [row.path] and clip(st) == before
        assert local_files(st) == [row.path] and check_store(st).ok


def test_a_segment_cut_short_before_its_first_chunk_stays_local(recorded, tmp_path):
    """A file cut short with no chunk left in the index holds no footage served: it stays on
    the disk as it is, said so, and the other segments go."""
    row, _body, _size = _cut_short(recorded, keep=0.01)
    assert recorded.index.segment_chunks(row) == []
    res = run_tiering(recorded, LocalTier(tmp_path / "cold"), 5 * S)
    assert (res.tiered, res.kept_local) == (2, [row.path])
    assert local_files(recorded) == [row.path] and check_store(recorded).ok


class _HungHold(LocalTier):
    """An object store that takes the upload, then hangs on its legal-hold call."""

    def __init__(self, root, release):
        super().__init__(root)
        self.release = release
        self.entered = __import__("threading").Event()

    def set_legal_hold(self, key, on):
        self.entered.set()
        self.release.wait(20)
        return True


def test_the_space_keeper_never_waits_behind_a_tiering_run_s_object_store(recorded, tmp_path):
    """The tiering run's index update took retention_lock around its object-store calls:
    a hung endpoint (minutes a call) kept the space keeper, and hold changes, waiting while
    cameras filled the disk."""
    import threading

    from vstore.lifecycle.retention import make_room
    from vstore.store.holds import add_hold

    add_hold(recorded, "cam", START_NS, START_NS + 12 * S, "case", "test")
    release = threading.Event()
    tier = _HungHold(tmp_path / "cold", release)
    run = threading.Thread(target=run_tiering, args=(recorded, tier, 5 * S),
                           kwargs={"parallel": 1})  # fmt: skip
    run.start()
    try:
        assert tier.entered.wait(20)
        done = threading.Event()
        threading.Thread(target=lambda: (make_room(recorded), done.set()), daemon=True).start()
        assert done.wait(10), "the space keeper waited behind the object store"
    finally:
        release.set()
        run.join()
    assert check_store(recorded).ok


def test_a_damaged_segment_a_hold_saves_comes_back_with_its_damage_out_of_the_index(
    recorded, monkeypatch
):
    """Indexed again from its bytes (D5), a segment whose damage check --repair had
    recorded came back with its damaged chunks in the index."""
    from tests.test_never_lose_footage import flip_byte_in_gop
    from vstore.lifecycle.retention import run_retention
    from vstore.store.holds import add_hold

    num = recorded.camera_num("cam")
    middle = sorted(recorded.index.segments(num), key=lambda r: r.start_ns)[1]
    flip_byte_in_gop(recorded.layout.path(middle.path), 0)
    check_store(recorded, repair=True)
    middle = next(r for r in recorded.index.segments(num) if r.start_ns == middle.start_ns)
    monkeypatch.setattr(garbage, "remove_marked", lambda *a, **k: False)  # (left marked)
    run_retention(recorded, max_age_ns=S)
    monkeypatch.undo()
    add_hold(recorded, "cam", START_NS, START_NS + 12 * S, "case 7", "test")
    run_retention(recorded, max_age_ns=S)
    back = next(r for r in recorded.index.segments(num) if r.start_ns == middle.start_ns)
    assert back.damaged and back.damaged == middle.damaged
    assert check_store(recorded).ok and clip(recorded)
