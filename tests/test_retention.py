"""Retention and legal holds: the planner never selects held footage, reaches the watermark
when unheld footage allows, deletes oldest first; deletion is crash-safe and audited; a held
range still clips frame-exactly after an aggressive run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import START_NS
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.api import open_store
from vstore.base.clock import FakeClock
from vstore.base.errors import NotFound, UsageError, VstoreError
from vstore.export.clip import clip_bytes
from vstore.lifecycle.check import check_store
from vstore.lifecycle.retention import run_retention
from vstore.lifecycle.retention_plan import SegmentInfo, plan_retention
from vstore.store.config import RetentionPolicy
from vstore.store.disk import DiskUsage
from vstore.store.holds import Hold, add_hold, list_holds, release_hold

MIN = 60 * 10**9
DAY = 86400 * 10**9
ROOT = Path(__file__).resolve().parents[1]

# --- the pure planner ---------------------------------------------------------------------


@st.composite
def catalogs(draw):
    cams = draw(st.integers(1, 4))
    segs = []
    sid = 0
    for c in range(cams):
        t = draw(st.integers(0, 10)) * MIN
        n = draw(st.integers(0, 25))
        tiered = draw(st.integers(0, n))  # tiering moves a camera's oldest segments
        for k in range(n):
            sid += 1
            dur = draw(st.integers(1, 3)) * MIN
            t += draw(st.sampled_from([0, 0, 0, MIN]))  # some gaps
            segs.append(
                SegmentInfo(
                    f"c{c}",
                    c + 1,
                    sid,
                    t,
                    t + dur,
                    draw(st.integers(1, 100)) * 1000,
                    f"p{sid}",
                    location="s3://b/p" if k < tiered else "local",
                )
            )
            t += dur
    holds = [
        Hold(
            i,
            f"c{draw(st.integers(0, cams - 1))}",
            a,
            a + draw(st.integers(1, 30)) * 10**9,
            "case",
            "tester",
            0,
            None if draw(st.booleans()) else 1,
            None,
        )
        for i, a in enumerate(draw(st.lists(st.integers(0, 90).map(lambda m: m * MIN), max_size=4)))
    ]
    return segs, holds


@settings(max_examples=300, deadline=None)
@given(
    catalogs(),
    st.integers(0, 80),
    st.one_of(st.none(), st.integers(0, 120)),
    st.one_of(st.none(), st.integers(0, 2_000_000)),
    st.integers(0, 5_000_000),
    st.integers(0, 3_000_000),
)
def test_planner_properties(cat, age_min, tiered_age_min, max_bytes, min_free, free):
    segs, holds = cat
    now = 100 * MIN
    pol = RetentionPolicy(
        age_min * MIN, max_bytes, None if tiered_age_min is None else tiered_age_min * MIN
    )
    plan = plan_retention(
        segs, holds, lambda c: pol, now, disk=DiskUsage(10**9, free), min_free_bytes=min_free
    )
    chosen = [d.segment for d in plan.deletions]
    ids = [s.segment_id for s in chosen]
    assert len(ids) == len(set(ids))
    active = [h for h in holds if h.active]
    # 1. Never a segment that overlaps an active hold.
    for s in chosen:
        assert not any(h.covers(s.camera, s.start_ns, s.end_ns) for h in active)
    unheld = [s for s in segs if not any(h.covers(s.camera, s.start_ns, s.end_ns) for h in active)]
    # 2. The watermark is reached whenever unheld local footage allows it (deleting tiered
    #    footage frees no disk, so the watermark never picks it).
    need = min_free - free
    freed = sum(s.size_bytes for s in chosen if not s.tiered)
    if need > 0:
        local_unheld = [s for s in unheld if not s.tiered]
        if sum(s.size_bytes for s in local_unheld) >= need:
            assert freed >= need and plan.watermark_unmet_bytes == 0
        if plan.watermark_unmet_bytes:
            # S2: a target that cannot be met deletes nothing for it (never all for nothing)
            assert not any(d.reason == "watermark" for d in plan.deletions)
    assert all(d.reason != "watermark" or not d.segment.tiered for d in plan.deletions)
    # 3. Oldest first: per camera, nothing unheld is kept that is older than a deleted one,
    #    for age and byte deletions.
    #    Tiered footage may have its own (longer) age, so compare within one tier.
    for cam, tiered in {(s.camera, s.tiered) for s in segs}:
        deleted = [s.start_ns for s in chosen if s.camera == cam and s.tiered == tiered]
        kept = [
            s.start_ns
            for s in unheld
            if s.camera == cam and s.tiered == tiered and s.segment_id not in ids
        ]
        if deleted and kept and plan.watermark_needed_bytes == 0:
            assert min(kept) > max(deleted) or age_min == 0
    # 4. Age: every unheld segment past its age (tiered footage: its own) is deleted, and
    #    none younger is deleted for age.
    for s in unheld:
        if s.end_ns <= now - pol.age_limit_ns(s.tiered):
            assert s.segment_id in ids
    for d in plan.deletions:
        if d.reason == "max_age":
            assert d.segment.end_ns <= now - pol.age_limit_ns(d.segment.tiered)
    # 5. Only held, local footage is ever trimmed (to its held chunks), each segment once.
    assert not any(s.tiered for s in plan.trims)
    assert all(any(h.covers(s.camera, s.start_ns, s.end_ns) for h in active) for s in plan.trims)
    assert len({s.segment_id for s in plan.trims}) == len(plan.trims)


def test_planner_a_month_of_100_cameras_runs():
    segs = [
        SegmentInfo(f"cam{c}", c, c * 100_000 + i, i * MIN, (i + 1) * MIN, 30_000_000, f"p{c}-{i}")
        for c in range(100)
        for i in range(0, 30 * 1440, 10)
    ]
    plan = plan_retention(segs, [], lambda c: RetentionPolicy(20 * DAY, None), 30 * DAY)
    assert len(plan.deletions) == 100 * 1440  # the 10 oldest days of every camera


# --- end to end ---------------------------------------------------------------------------


def record(st_, cam, minutes, start=START_NS):
    """`minutes` one-minute segments of 1 s GOPs (25 fps)."""
    with st_.writer(cam, [VIDEO], start_ns=start) as w:
        for i in range(minutes * 60 * 25):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data + bytes(500)))


@pytest.fixture
def store_with_clock(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        '[store]\nsegment_duration_s = 60\n[retention]\nmax_age = "1h"\n'
    )
    clock = FakeClock(wall_ns=START_NS)
    st_ = open_store(d, clock=clock)
    yield st_, clock
    st_.close()


def test_hold_pins_footage_through_aggressive_retention_then_release(tmp_path, media):
    from tests.test_clip import decode
    from vstore.export.clip import write_clip
    from vstore.export.clip_plan import plan_clip
    from vstore.ingest.file_import import import_file

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    clock = FakeClock(wall_ns=START_NS)
    with open_store(d, clock=clock) as st_:
        import_file(st_, media("ret.ts", 20.0, codec="h264", gop_frames=25), "cam", START_NS)
        assert len(list(st_.index.segments(st_.camera_num("cam")))) == 5
        s, e = START_NS + 9 * 10**9 + 120_000_000, START_NS + 10 * 10**9  # frames 228..249
        hold = add_hold(st_, "cam", s, e, "case 17", "det. smith")
        clock.advance(2 * 3600 * 10**9)
        plan, res = run_retention(st_, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        assert res is not None and res.deleted_segments == 4
        assert len(plan.kept_for_holds) == 1
        # The held segment is trimmed to the chunk the hold covers (9 s .. 10 s), not kept.
        assert res.trimmed_segments == 1 and res.trimmed_bytes > 0
        tl = st_.timeline("cam", None, None)
        assert tl.covered == [(START_NS + 9 * 10**9, START_NS + 10 * 10**9)]
        assert check_store(st_).ok
        out = tmp_path / "held.mp4"
        write_clip(st_, plan_clip(st_, "cam", s, e), out)
        assert decode(out)[0] == list(range(228, 250))  # still frame-exact
        released = release_hold(st_, hold.id, "sgt. jones", "case closed")
        assert not released.active and list_holds(st_) == []
        with pytest.raises(UsageError, match="already released"):
            release_hold(st_, hold.id, "x")
        _, res = run_retention(st_, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        assert res is not None and res.deleted_segments == 1
        with pytest.raises(NotFound):
            plan_clip(st_, "cam", s, e)
        assert check_store(st_).ok
        actions = [r["action"] for r in st_.index.audit_records()][1:]  # after audit_start
        assert actions == ["hold_add"] + ["delete"] * 4 + ["trim", "hold_release", "delete"]
        assert list_holds(st_, include_released=True)[0].released_by == "sgt. jones"


@pytest.mark.parametrize("rule", ["max_bytes", "watermark"])
def test_budget_and_watermark_trim_held_segments_to_their_held_chunks(tmp_path, media, rule):
    from vstore.ingest.file_import import import_file

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    s, e = START_NS + 9 * 10**9 + 120_000_000, START_NS + 10 * 10**9
    with open_store(d) as st_:
        import_file(st_, media("ret.ts", 20.0, codec="h264", gop_frames=25), "cam", START_NS)
        before = b"".join(clip_bytes(st_, "cam", s, e, format="ts"))
        add_hold(st_, "cam", s, e, "case 18", "det. smith")
    if rule == "watermark":  # set after recording, which would have enforced it itself
        (d / "vstore.toml").write_text(
            '[store]\nsegment_duration_s = 4\n[retention]\nmin_free = "1TB"\n'
        )
    with open_store(d) as st_:
        sizes = [r.size_bytes for r in st_.index.segments(st_.camera_num("cam"))]
        # Below a 1 TB watermark by more than the unheld footage, but less than that plus
        # what trimming the held segment frees: the watermark needs both, and can have them
        # (a target nothing could meet deletes nothing: test_never_lose_footage).
        need = sum(sizes) - max(sizes) // 2
        disk = DiskUsage(10**13, 10**12 - need)
        kw = {"max_bytes": 1} if rule == "max_bytes" else {}
        _plan, res = run_retention(st_, disk=disk, **kw)
        # Every unheld segment goes, and the held one keeps only the chunk the hold pins.
        assert res.deleted_segments == 4 and res.trimmed_segments == 1
        tl = st_.timeline("cam", None, None)
        assert tl.covered == [(START_NS + 9 * 10**9, START_NS + 10 * 10**9)]
        assert b"".join(clip_bytes(st_, "cam", s, e, format="ts")) == before
        assert check_store(st_).ok
        # Nothing more to gain: a rerun trims nothing and deletes nothing.
        _plan, res = run_retention(st_, disk=disk, **kw)
        assert res.deleted_segments == 0 and res.trimmed_bytes == 0


def test_watermark_deletes_oldest_across_cameras(store_with_clock):
    st_, _clock = store_with_clock
    record(st_, "a", 3)
    record(st_, "b", 3, start=START_NS + 30 * 10**9)
    seg_bytes = next(st_.index.segments(st_.camera_num("a"))).size_bytes
    plan, res = run_retention(st_, dry_run=True, disk=DiskUsage(10**9, 0))
    assert res is None
    from vstore.lifecycle.retention_plan import plan_retention as pr

    segs = __import__("vstore.lifecycle.retention", fromlist=["catalog"]).catalog(st_)
    plan = pr(
        segs,
        [],
        lambda c: RetentionPolicy(),
        START_NS,
        disk=DiskUsage(10**9, 0),
        min_free_bytes=int(2.5 * seg_bytes),
    )
    order = [(d.segment.camera, d.segment.start_ns) for d in plan.deletions]
    assert order == [("a", START_NS), ("b", START_NS + 30 * 10**9), ("a", START_NS + 60 * 10**9)]


def test_open_clip_lease_protects_segments(store_with_clock):
    st_, clock = store_with_clock
    record(st_, "cam", 2)
    clock.advance(3 * 3600 * 10**9)
    seg_ids = [r.segment_id for r in st_.index.segments(st_.camera_num("cam"))]
    with st_.lease(seg_ids[:1]):
        _, res = run_retention(st_, disk=DiskUsage(10**12, 10**12))
        assert res.deleted_segments == 1  # only the unleased one
    _, res = run_retention(st_, disk=DiskUsage(10**12, 10**12))
    assert res.deleted_segments == 1
    assert check_store(st_).ok


def test_retention_cli_dry_run_json_and_run(tmp_path, capsys):
    from vstore.cli.main import main

    d = tmp_path / "store"
    with open_store(d) as st_:
        record(st_, "cam", 3, start=START_NS)  # 2025: older than any max age below
    argv = ["retention", "run", "--store", str(d), "--max-age", "1d"]
    assert main([*argv, "--dry-run", "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["segments"] == 3 and doc["dry_run"]
    assert (
        main(
            [
                "hold",
                "add",
                "--store",
                str(d),
                "--camera",
                "cam",
                "--from",
                "2025-01-17T01:00:30Z",
                "--to",
                "2025-01-17T01:00:40Z",
                "--reason",
                "case 9",
                "--by",
                "det. a",
            ]
        )
        == 0
    )
    assert main(argv) == 0
    assert "deleted 2 segment(s)" in capsys.readouterr().out
    assert main(["hold", "list", "--store", str(d), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["holds"][0]["reason"] == "case 9"
    assert main(["audit", "--store", str(d)]) == 0
    out = capsys.readouterr().out
    assert "hold_add" in out and out.count("delete") == 2
    assert main(["check", "--store", str(d)]) == 0


def test_kill_during_retention_leaves_nothing_half_deleted(tmp_path):
    d = tmp_path / "store"
    with open_store(d) as st_:
        record(st_, "cam", 40)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for delay in (0.3, 0.5, 0.8):
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vstore.cli.main",
                "retention",
                "run",
                "--store",
                str(d),
                "--max-age",
                "1s",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        ) as p:
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait()
        with open_store(d) as st_:  # recovery finishes interrupted deletions (D4)
            assert st_.index.garbage() == []
            rep = check_store(st_)
            assert rep.ok, rep.problems
    with open_store(d) as st_:
        run_retention(st_, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        assert list(st_.index.segments(st_.camera_num("cam"))) == []
        assert check_store(st_).ok
        assert list(st_.layout.iter_segment_files()) == []


def test_retention_config_parsing(tmp_path):
    from vstore.store.config import load_config

    p = tmp_path / "vstore.toml"
    p.write_text(
        '[retention]\nmax_age = "30d"\nmin_free = "10%"\ndisk_full = "stop-recording"\n'
        '[retention.groups.security]\ncameras = ["lobby", "door"]\nmax_age = "90d"\n'
        '[retention.cameras.door]\nmax_bytes = "2TB"\n'
    )
    r = load_config(p).retention
    assert r.policy("traffic-1").max_age_ns == 30 * DAY
    assert r.policy("lobby").max_age_ns == 90 * DAY
    # Key by key: its own max_bytes, its group's max_age (not the store's)
    assert r.policy("door") == RetentionPolicy(90 * DAY, 2 * 10**12)
    assert r.min_free_ratio == 0.10 and r.disk_full == "stop-recording"
    p.write_text('[retention]\ndisk_full = "panic"\n')
    from vstore.base.errors import ConfigError

    with pytest.raises(ConfigError, match="disk_full"):
        load_config(p)


def test_trim_interrupted_after_copy_is_finished_by_rerun(tmp_path):
    """A crash while trimming (copy written, index not switched) loses nothing: recovery
    indexes the copy, and the next run drops the rest of the old segment."""
    from vstore.base.fsutil import Fs

    class FailDirSync(Fs):
        armed = False

        def fsync_dir(self, path):
            if self.armed:
                raise OSError(5, "Input/output error")
            super().fsync_dir(path)

    d = tmp_path / "store"
    fs = FailDirSync()
    clock = FakeClock(wall_ns=START_NS)
    with open_store(d, clock=clock, fs=fs) as st_:
        record(st_, "cam", 1)  # one 60 s segment of 1 s GOPs
        add_hold(st_, "cam", START_NS + 10 * 10**9, START_NS + 12 * 10**9, "case", "det. x")
        clock.advance(3600 * 10**9)
        fs.armed = True  # the copy's directory fsync fails: trimming stops after P1
        with pytest.raises(VstoreError):
            run_retention(st_, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        fs.armed = False
    with open_store(d, clock=clock) as st_:  # recovery seals and indexes the copy (R4)
        assert check_store(st_).ok
        held = list(st_.read_packets("cam", START_NS + 10 * 10**9, START_NS + 12 * 10**9))
        assert len(held) == 50
        _, res = run_retention(st_, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        assert res is not None and res.trimmed_segments == 1
        assert check_store(st_).ok
        segs = list(st_.index.segments(st_.camera_num("cam")))
        assert len(segs) == 1 and segs[0].chunk_count == 2
        assert len(list(st_.read_packets("cam", START_NS, START_NS + 10**12))) == 50


class FillingDisk:
    """A disk whose free space shrinks with what the store writes (injected DiskUsage)."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root, self.capacity = root, capacity

    def __call__(self) -> DiskUsage:
        used = sum(p.stat().st_size for p in (self.root / "segments").rglob("*.vseg"))
        return DiskUsage(self.capacity, max(0, self.capacity - used))


def _watermark_store(tmp_path, action: str, capacity: int):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        f'[store]\nsegment_duration_s = 10\n[retention]\nmin_free = "50%"\ndisk_full = "{action}"\n'
    )
    return open_store(d, disk_usage=FillingDisk(d, capacity))


def test_overwrite_oldest_keeps_recording_within_the_watermark(tmp_path):
    from vstore.store import io_stats

    before = io_stats.DELETED.snapshot().get("watermark", (0, 0))[0]
    st_ = _watermark_store(tmp_path, "overwrite-oldest", capacity=6_000_000)
    with st_:
        record(st_, "cam", 5)  # 30 ten-second segments of ~0.33 MB: 10 MB > 3 MB allowed
        segs = list(st_.index.segments(st_.camera_num("cam")))
        assert 0 < len(segs) < 30
        assert segs[-1].end_ns == START_NS + 300 * 10**9  # the newest footage is kept
        assert sum(s.size_bytes for s in segs) <= 3_000_000 + segs[0].size_bytes
        assert check_store(st_).ok
        deletions = [r for r in st_.index.audit_records() if r["action"] == "delete"]
    assert {r["detail"]["reason"] for r in deletions} == {"watermark"}
    # (what /metrics exports as vstore_deleted_segments{reason="watermark"})
    assert io_stats.DELETED.snapshot()["watermark"][0] - before == len(deletions)


def test_stop_recording_refuses_below_the_watermark(tmp_path):
    from vstore.base.errors import StorageFull

    st_ = _watermark_store(tmp_path, "stop-recording", capacity=6_000_000)
    with st_, pytest.raises(StorageFull, match="stop-recording"):
        record(st_, "cam", 5)


def test_only_held_footage_left_stops_recording_loudly(tmp_path):
    from vstore.base.errors import StorageFull

    st_ = _watermark_store(tmp_path, "overwrite-oldest", capacity=6_000_000)
    with st_:
        add_hold(st_, "cam", START_NS, START_NS + 3600 * 10**9, "everything", "det. y")
        with pytest.raises(StorageFull, match="held footage"):
            record(st_, "cam", 5)
        assert st_.index.audit_records()[-1]["action"] == "hold_add"  # nothing deleted


def test_a_retention_override_of_zero_or_less_is_refused_for_every_caller(tmp_path, media):
    """The command refused --max-age 0, but a job over the node's API took max_age_ns -1
    (or max_bytes -1) and deleted all unheld footage: the engine refuses it."""
    from vstore.api import open_store
    from vstore.base.errors import UsageError
    from vstore.ingest.file_import import import_file
    from vstore.jobs import registry

    with open_store(tmp_path / "s") as st:
        import_file(st, media("ret-neg.ts", 2.0, gop_frames=25), "cam", START_NS)
        for params in ({"max_age_ns": -1}, {"max_age_ns": 0}, {"max_bytes": -1},
                       {"tiered_max_age_ns": 0}):  # fmt: skip
            with pytest.raises(UsageError, match="must be more than 0"):
                registry.run(st, "retention", params)
        assert len(list(st.index.segments(st.camera_num("cam")))) == 1


def test_a_policy_for_a_camera_the_store_never_had_is_named(tmp_path, media):
    """`[retention.cameras.lobyy]` (a typo for lobby) was taken silently: the policy meant
    applied to nothing. A run names it."""
    from vstore.api import open_store
    from vstore.ingest.file_import import import_file

    d = tmp_path / "s"
    d.mkdir()
    (d / "vstore.toml").write_text('[retention.cameras.lobyy]\nmax_age = "30d"\n')
    with open_store(d) as st:
        import_file(st, media("ret-typo.ts", 2.0, gop_frames=25), "lobby", START_NS)
        plan, _res = run_retention(st, dry_run=True, trust_clock=True)
        assert plan.unknown_policy_cameras == ["lobyy"]
