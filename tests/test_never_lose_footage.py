"""Ways recovery, retention and the disk-full path could destroy or wrongly delete evidence.

Each test reproduces one failure through the real store, index and object store and is
named after it; the invariants they guard are in docs/design/lifecycle.md (R5, D5, P4, K1,
P1-P3, S1-S4, L1-L3). A property test at the end draws random sequences of recording,
crashes, recovery, tiering, holds, retention and clock steps.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.crash_writer import START_NS, payload
from vstore.api import open_store
from vstore.lifecycle.check import check_store
from vstore.store.holds import add_hold, release_hold

ROOT = Path(__file__).resolve().parents[1]
GOP_NS = 1_000_000_000  # crash_writer's footage: 10 fps, a keyframe every second

_DIE_AFTER_FLUSH = textwrap.dedent(
    """
    import os, sys
    from tests.crash_writer import START_NS, payload, GOP, FRAME
    from vstore import Packet, TrackInfo, open_store
    st = open_store(sys.argv[1])
    w = st.writer("cam", [TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")],
                  start_ns=START_NS)
    for f in range(int(sys.argv[2]) * GOP):
        w.write(Packet(0, f * FRAME, f * FRAME, f % GOP == 0, payload(f, f % GOP == 0)))
    w.flush()
    os._exit(0)  # a crash: nothing sealed, nothing closed
    """
)


def record_and_crash(store_dir: Path, seconds: int) -> None:
    """``seconds`` GOPs written and flushed (durable, indexed), then the process dies."""
    store_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(
        [sys.executable, "-c", _DIE_AFTER_FLUSH, str(store_dir), str(seconds)],
        check=True,
        env=env,
        cwd=ROOT,
    )


def open_segment_file(store_dir: Path) -> Path:
    [p] = list((store_dir / "segments").rglob("*.vseg"))
    return p


def flip_byte_in_gop(path: Path, gop: int) -> None:
    """Flip one payload byte of the ``gop``-th chunk (0-based), found by its magic."""
    raw = bytearray(path.read_bytes())
    at = -1
    for _ in range(gop + 1):
        at = raw.index(b"VCHK", at + 1)
    raw[at + 200] ^= 0x40
    path.write_bytes(raw)


def readable_chunks(st, cam: str = "cam") -> list[int]:
    """Start of every indexed chunk, each read back and verified against its row."""
    num = st.camera_num(cam)
    out = []
    for c in st.index.chunks(num, -(2**62), 2**62):
        row = next(r for r in st.index.segments(num) if r.segment_id == c.segment_id)
        with st.segment_reader(row) as rd:
            rd.read_chunk(c.offset, c.length, c.crc32)
        out.append(c.start_ns)
    return out


# --- 1. recovery never discards indexed, checksummed chunks ------------------------------------


@pytest.mark.parametrize("how", ["open", "check_repair"])
def test_recovery_keeps_good_chunks_after_a_damaged_one(tmp_path, how):
    store_dir = tmp_path / "store"
    record_and_crash(store_dir, 10)
    seg = open_segment_file(store_dir)
    size_before = seg.stat().st_size
    flip_byte_in_gop(seg, 2)
    if how == "open":
        st = open_store(store_dir)
        rep = st.last_recovery
    else:
        from vstore.store.store import Store

        st = Store(store_dir)
        rep = None
        check_store(st, repair=True)
    try:
        assert seg.stat().st_size >= size_before  # nothing cut off (a footer was added)
        starts = readable_chunks(st)
        # Every GOP but the damaged one is indexed and verifies; nine of ten survive.
        expected = [START_NS + i * GOP_NS for i in range(10) if i != 2]
        assert starts[: len(expected)] == expected
        assert START_NS + 2 * GOP_NS not in starts
        if rep is not None:
            assert rep.damaged_chunks == 1
        events = [e.kind for e in st.index.events(st.camera_num("cam"), 0, 2**62)]
        assert "damaged" in events
        assert any(a["action"] == "quarantine" for a in st.index.audit_records())
        assert check_store(st).ok
        # The clip path sees a gap where the damaged GOP was, and serves the rest.
        pk = list(st.read_packets("cam", START_NS + 5 * GOP_NS, START_NS + 5 * GOP_NS + 1))
        assert bytes(pk[0].data) == payload(50, True)
    finally:
        st.close()


def test_check_repair_of_an_unsealed_orphan_keeps_chunks_after_damage(tmp_path):
    from vstore.base import layout
    from vstore.index.time_index import Batch
    from vstore.store.store import Store

    store_dir = tmp_path / "store"
    record_and_crash(store_dir, 10)
    seg = open_segment_file(store_dir)
    flip_byte_in_gop(seg, 2)
    st = Store(store_dir)
    try:
        # The index lost everything about the file (a rebuilt or restored index): an orphan.
        b = Batch()
        for seg_id, _m in st.index.open_segments():
            b.delete(layout.open_key(seg_id))
        for r in st.index.all_segment_rows():
            b.delete(r.key())
        for c in st.index.all_chunk_rows():
            b.delete(c.key())
        st.index.commit(b)
        rep = check_store(st, repair=True)
        assert any(p.code == "C4" and p.repaired for p in rep.problems)
        starts = readable_chunks(st)
        assert len(starts) == 9 and START_NS + 2 * GOP_NS not in starts
        assert check_store(st).ok
    finally:
        st.close()


# --- helpers for a store of small segments ---------------------------------------------------


def small_store(tmp_path: Path, extra: str = "", **kw):
    d = tmp_path / "store"
    d.mkdir(parents=True, exist_ok=True)
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n" + extra)
    return open_store(d, **kw)


def record(st, seconds: int, cam: str = "cam", start: int = START_NS) -> None:
    """``seconds`` one-second GOPs of crash_writer's footage from ``start``."""
    from tests.crash_writer import FRAME, GOP
    from vstore import Packet, TrackInfo

    video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
    with st.writer(cam, [video], start_ns=start) as w:
        for f in range(seconds * GOP):
            key = f % GOP == 0
            w.write(Packet(0, f * FRAME, f * FRAME, key, payload(f, key)))


def run_cli(*argv: str) -> int:
    from vstore.cli.main import main

    return main(list(argv))


def interrupt_after_d1(st, monkeypatch) -> None:
    """A retention run (everything expired) that dies between D1 and D2: marks are left."""
    from vstore.lifecycle import retention
    from vstore.store import garbage

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process dies

    monkeypatch.setattr(garbage, "remove_marked", crash)
    with pytest.raises(KeyboardInterrupt):
        retention.run_retention(st, max_age_ns=1)
    monkeypatch.undo()


# --- 2. a leftover garbage mark never deletes footage indexed again or held -------------------


@pytest.mark.s3
def test_leftover_garbage_mark_never_deletes_a_reindexed_held_object(tmp_path, s3_env, lock_bucket):
    bucket = lock_bucket
    url = f"s3://{bucket}/city"
    with small_store(tmp_path) as st:
        record(st, 12)
    store = str(tmp_path / "store")
    assert run_cli("tier", "run", "--store", store, "--to", url, "--older-than", "1s") == 0
    # The delete of a retention run is interrupted after D1: the object store is unreachable.
    env = dict(os.environ, PYTHONPATH=str(ROOT), AWS_ENDPOINT_URL="http://127.0.0.1:9")
    env["AWS_MAX_ATTEMPTS"] = "1"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vstore.cli.main",
            "retention",
            "run",
            "--store",
            store,
            "--max-age",
            "1d",
            "--tiered-max-age",
            "1d",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 9, r.stderr
    with open_store(store) as st:
        assert len(st.index.garbage()) == 3
    assert run_cli("rebuild-index", "--store", store, "--from", url) == 0
    with open_store(store) as st:
        assert st.index.garbage() == []  # indexed again: no longer garbage (D5)
    assert (
        run_cli(
            "hold",
            "add",
            "--store",
            store,
            "--camera",
            "cam",
            "--reason",
            "case 7",
            "--by",
            "det. ray",
            "--from",
            "2025-01-17T01:00:00Z",
            "--to",
            "2025-01-17T01:00:20Z",
        )
        == 0
    )
    assert run_cli("retention", "run", "--store", store, "--max-age", "1d") == 0
    import boto3

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len([k for k in keys if k.endswith(".vseg")]) == 3
    with open_store(store) as st:
        assert len(readable_chunks(st)) == 12 and check_store(st).ok
        actions = [a["action"] for a in st.index.audit_records()]
        assert actions.count("delete") == 3  # the interrupted run's, and nothing since


def test_garbage_mark_of_footage_a_hold_now_covers_is_cancelled_not_deleted(tmp_path, monkeypatch):
    from vstore.lifecycle import retention

    st = small_store(tmp_path)
    try:
        record(st, 12)
        paths = list(st.layout.iter_segment_files())

        interrupt_after_d1(st, monkeypatch)
        assert len(st.index.garbage()) == 1
        [(_sid, rec)] = st.index.garbage()
        # An investigator holds that minute before the deletion is finished.
        add_hold(st, "cam", rec["start_ns"], rec["start_ns"] + GOP_NS, "case", "ray")
        _plan, res = retention.run_retention(st, max_age_ns=10**18)
        assert res.finished_garbage == 0
        assert st.layout.path(rec["path"]).exists()  # the bytes are kept
        assert st.index.garbage() == []
        assert st.index.audit_records()[-1]["action"] == "delete_cancelled"
        # Indexed again from its own bytes: held footage shows where the hold is.
        rep = check_store(st)
        assert rep.problems == [] and rep.ok
        assert sorted(st.layout.iter_segment_files()) == sorted(paths)
        assert len(readable_chunks(st)) == 12
    finally:
        st.close()


# --- 3. trimming never certifies tampered footage ---------------------------------------------


def tamper_chunk_keeping_its_checksums(path: Path, gop: int) -> None:
    """Change a chunk's payload and fix up its CRC, its footer entry and the footer CRC:
    only the content hash (and the index's own chunk CRC) can tell."""
    import zlib

    from vstore.segment import format as fmt
    from vstore.segment.reader import SegmentReader

    raw = bytearray(path.read_bytes())
    with SegmentReader.open(path) as rd:
        entries = rd.directory()
        t = rd.trailer()
    e = entries[gop]
    raw[e.offset + e.length - 20] ^= 0x55
    body_end = e.offset + e.length - fmt.CHUNK_CRC.size
    crc = fmt.crc32(bytes(raw[e.offset : body_end]))
    fmt.CHUNK_CRC.pack_into(raw, body_end, crc)
    entries[gop] = e._replace(crc32=crc)
    footer = fmt.pack_footer(entries, entries[-1].end_ns)
    assert len(footer) == t.footer_len
    raw[t.footer_offset : t.footer_offset + len(footer)] = footer
    trailer = fmt.pack_trailer(t._replace(footer_crc=zlib.crc32(footer)))
    raw[-len(trailer) :] = trailer
    path.write_bytes(raw)


def test_trim_refuses_tampered_footage_and_keeps_the_original(tmp_path):
    from vstore.lifecycle import retention

    st = small_store(tmp_path, '[retention]\nmax_age = "1h"\n')
    try:
        record(st, 4)
        [row] = list(st.index.segments(st.camera_num("cam")))
        add_hold(st, "cam", START_NS + GOP_NS, START_NS + 2 * GOP_NS, "case", "ray")
        tamper_chunk_keeping_its_checksums(st.layout.path(row.path), 1)
        assert not check_store(st).ok  # the content hash says so before the trim
        _plan, res = retention.run_retention(st)
        assert res.trimmed_segments == 0 and "kept whole" in res.errors[0]
        assert [r.segment_id for r in st.index.segments(st.camera_num("cam"))] == [row.segment_id]
        assert st.layout.path(row.path).exists()
        assert not check_store(st).ok  # still reported: nothing certified it
    finally:
        st.close()


def test_trim_keeps_provenance_of_verified_footage(tmp_path):
    from vstore.lifecycle import retention
    from vstore.segment.reader import SegmentReader

    st = small_store(tmp_path, '[retention]\nmax_age = "1h"\n')
    try:
        record(st, 4)
        [row] = list(st.index.segments(st.camera_num("cam")))
        crcs = {c.start_ns: c.crc32 for c in st.index.chunks(st.camera_num("cam"), 0, 2**62)}
        add_hold(st, "cam", START_NS + GOP_NS, START_NS + 2 * GOP_NS, "case", "ray")
        _plan, res = retention.run_retention(st)
        assert res.trimmed_segments == 1 and not res.errors
        [kept] = list(st.index.segments(st.camera_num("cam")))
        with SegmentReader.open(st.layout.path(kept.path)) as rd:
            [origin] = rd.meta.extra["trimmed_from"]
        assert origin["segment_id"] == row.segment_id and origin["sha256"] == row.sha256
        assert origin["chunks"] == [[START_NS + GOP_NS, crcs[START_NS + GOP_NS]]]
        assert check_store(st).ok
        trim = next(a for a in st.index.audit_records() if a["action"] == "trim")
        assert trim["detail"]["verified"] and trim["detail"]["sha256"] == row.sha256
    finally:
        st.close()


# --- 5. an override names what it overrides -----------------------------------------------------


def test_max_age_override_never_shortens_tiered_footage_age(tmp_path, capsys):
    cfg = '[retention]\nmax_age = "30d"\ntiered_max_age = "3650d"\n'
    with small_store(tmp_path, cfg) as st:
        record(st, 12)
    store = str(tmp_path / "store")
    cold = tmp_path / "cold"
    assert run_cli("tier", "run", "--store", store, "--to", str(cold), "--older-than", "1s") == 0
    with open_store(store) as st:
        st.clock = __import__("vstore.base.clock", fromlist=["FakeClock"]).FakeClock(
            wall_ns=START_NS + 60 * 86400 * 10**9
        )
        from vstore.lifecycle.retention import run_retention

        plan, _ = run_retention(st, max_age_ns=60 * 86400 * 10**9, dry_run=True)
        assert len(plan.rows) == 0  # tiered footage keeps its ten years
        plan, _ = run_retention(st, tiered_max_age_ns=59 * 86400 * 10**9, dry_run=True)
        assert len(plan.rows) == 3
    capsys.readouterr()
    assert run_cli("retention", "run", "--store", store, "--max-age", "60d", "--dry-run") == 0
    assert "would delete 0 segment(s)" in capsys.readouterr().out


# --- 6. settings resolve camera -> group -> store, key by key ---------------------------------


def test_camera_section_keeps_its_groups_policy(tmp_path, capsys):
    import json

    cfg = (
        '[retention]\nmax_age = "30d"\n'
        '[retention.groups.traffic]\ncameras = ["cross-1", "cross-2"]\nmax_age = "365d"\n'
        '[retention.cameras.cross-1]\nmax_bytes = "500GB"\n'
    )
    with small_store(tmp_path, cfg) as st:
        pol = st.config.retention.policy("cross-1")
        assert pol.max_age_ns == 365 * 86400 * 10**9 and pol.max_bytes == 500 * 10**9
    capsys.readouterr()
    store = str(tmp_path / "store")
    assert run_cli("config", "show", "--store", store, "--camera", "cross-1", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["retention"]["max_age_ns"]["from"] == "[retention.groups.traffic]"
    assert doc["retention"]["max_bytes"]["from"] == "[retention.cameras.cross-1]"
    assert run_cli("config", "show", "--store", store, "--camera", "cross-1") == 0
    out = capsys.readouterr().out
    assert "365d" in out and "from [retention.groups.traffic]" in out
    assert doc["cluster"] is None and "cluster" not in out
    # A cluster member's settings show who deletes tiered footage, and after what delay.
    toml = tmp_path / "store" / "vstore.toml"
    toml.write_text(
        toml.read_text()
        + '[cluster]\netcd = ["http://e1:2379"]\nname = "n1"\nprefix = "/vstore/city"\n'
    )
    assert run_cli("config", "show", "--store", store, "--json") == 0
    assert json.loads(capsys.readouterr().out)["cluster"]["deletion_delay_s"] == 600
    assert run_cli("config", "show", "--store", store) == 0
    assert "objects 600 s after the catalog stops listing them" in capsys.readouterr().out


# --- 9. sizes need units ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml",
    ['max_bytes = "500"', "max_bytes = 500", 'min_free = "1000"', "min_free = 1000"],
)
def test_bare_number_sizes_are_refused(tmp_path, toml):
    from vstore.base.errors import ConfigError

    with pytest.raises(ConfigError, match="unit"):
        small_store(tmp_path, f"[retention]\n{toml}\n")


def test_bare_number_max_bytes_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    with small_store(tmp_path) as st:
        record(st, 4)
    store = str(tmp_path / "store")
    assert run_cli("retention", "run", "--store", store, "--max-bytes", "500") == 2
    assert "needs a unit" in capsys.readouterr().err
    assert run_cli("retention", "run", "--store", store, "--max-bytes", "500B", "--dry-run") == 0


# --- 8. leases are checked at each deletion; 9. and they survive PID namespaces --------------

_LEASE_HOLDER = textwrap.dedent(
    """
    import os, sys
    from vstore.api import open_store
    st = open_store(sys.argv[1], read_only=True)
    with st.lease(ranges=[("cam", int(sys.argv[2]), int(sys.argv[3]))]):
        print("leased", os.getpid(), flush=True)
        sys.stdin.read()  # until the test closes our stdin
    """
)


class LeaseHolder:
    """A reader in another process (optionally in its own PID namespace) holding a lease."""

    def __init__(self, store_dir: Path, start_ns: int, end_ns: int, pid_ns: bool = False):
        cmd = [sys.executable, "-c", _LEASE_HOLDER, str(store_dir), str(start_ns), str(end_ns)]
        if pid_ns:
            cmd = ["unshare", "--pid", "--fork", *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("leased"), line
        self.inner_pid = int(line.split()[1])

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def test_lease_taken_after_planning_is_honoured_at_deletion(tmp_path):
    from vstore.lifecycle import retention

    st = small_store(tmp_path)
    try:
        record(st, 12)
        segs = list(st.index.segments(st.camera_num("cam")))
        plan, _ = retention.run_retention(st, max_age_ns=1, dry_run=True)
        assert len(plan.rows) == 3
        # A clip starts reading the middle segment after the plan was made.
        clip = LeaseHolder(st.root, segs[1].start_ns + 1, segs[1].start_ns + 2)
        try:
            res = retention.apply_plan(st, plan)
            assert res.deleted_segments == 2 and res.skipped_leased == 1
            assert st.layout.path(segs[1].path).exists()
        finally:
            clip.release()
        res = retention.apply_plan(st, retention.run_retention(st, max_age_ns=1, dry_run=True)[0])
        assert res.deleted_segments == 1 and list(st.layout.iter_segment_files()) == []
    finally:
        st.close()


def test_bytes_of_a_deletion_wait_for_a_reader_that_leased_them(tmp_path, monkeypatch):
    from vstore.lifecycle import retention

    st = small_store(tmp_path)
    try:
        record(st, 4)
        [seg] = list(st.index.segments(st.camera_num("cam")))

        interrupt_after_d1(st, monkeypatch)
        reader = LeaseHolder(st.root, seg.start_ns, seg.end_ns)  # planned before D1
        try:
            _plan, res = retention.run_retention(st, max_age_ns=1)
            assert res.finished_garbage == 0 and st.layout.path(seg.path).exists()
            st.close()
            st = small_store(tmp_path)  # nor does D4 on a writable open
            assert st.layout.path(seg.path).exists() and len(st.index.garbage()) == 1
        finally:
            reader.release()
        _plan, res = retention.run_retention(st, max_age_ns=1)
        assert res.finished_garbage == 1 and not st.layout.path(seg.path).exists()
    finally:
        st.close()


@pytest.mark.skipif(
    subprocess.run(
        ["unshare", "--pid", "--fork", "true"], capture_output=True, check=False
    ).returncode
    != 0,
    reason="cannot make a PID namespace here",
)
def test_lease_of_a_reader_in_another_pid_namespace_is_honoured(tmp_path):
    from vstore.lifecycle import retention

    st = small_store(tmp_path)
    try:
        record(st, 8)
        segs = list(st.index.segments(st.camera_num("cam")))
        reader = LeaseHolder(st.root, segs[0].start_ns, segs[0].end_ns, pid_ns=True)
        try:
            assert reader.inner_pid != reader.proc.pid  # its pid means nothing here
            _plan, res = retention.run_retention(st, max_age_ns=1)
            assert res.deleted_segments == 1 and st.layout.path(segs[0].path).exists()
        finally:
            reader.release()
        # A reader that is gone (its lock went with it) no longer holds anything.
        _plan, res = retention.run_retention(st, max_age_ns=1)
        assert res.deleted_segments == 1 and list(st.layout.iter_segment_files()) == []
    finally:
        st.close()


def test_lease_of_a_killed_reader_ends_with_it(tmp_path):
    import signal

    st = small_store(tmp_path)
    try:
        record(st, 4)
        reader = LeaseHolder(st.root, START_NS, START_NS + 1)
        assert st.leases()
        reader.proc.send_signal(signal.SIGKILL)
        reader.release()
        assert not st.leases() and list(st.layout.leases_dir.iterdir()) == []
    finally:
        st.close()


# --- 7. the disk-full path under load; 9. the read cache goes before footage ------------------


class Disk:
    """An injected disk: its capacity, what other programs use, and what the store's
    segment files and read cache use (measured from the files, so deletions free space)."""

    def __init__(self, root: Path, capacity: int, other: int = 0) -> None:
        self.root, self.capacity, self.other = root, capacity, other

    def __call__(self):
        from vstore.store.disk import DiskUsage

        used = 0
        for p in self.root.rglob("*"):
            try:  # (the space keeper deletes files while this walks)
                st = p.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                used += st.st_size
        return DiskUsage(self.capacity, max(0, self.capacity - used - self.other))

    def need(self, shortfall: int) -> None:
        """Another program takes the disk to ``shortfall`` bytes below the 50 % watermark."""
        self.other = 0
        self.other = self().free_bytes - (self.capacity // 2 - shortfall)


def watermark_store(tmp_path: Path, capacity: int, other: int = 0, **kw):
    d = tmp_path / "store"
    d.mkdir(exist_ok=True)
    (d / "vstore.toml").write_text(
        '[store]\nsegment_duration_s = 4\n[retention]\nmin_free = "50%"\n'
    )
    disk = Disk(d / "segments", capacity, other)
    st = open_store(d, disk_usage=disk, **kw)
    disk.root = d  # the cache counts too
    return st, disk


class LiveCamera:
    """A camera writing live (wall time from the store's fake clock), one GOP per call."""

    def __init__(self, st, clock, cam: str = "cam") -> None:
        from tests.crash_writer import GOP
        from vstore import TrackInfo

        self.clock, self.frame, self.gop = clock, 0, GOP
        video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
        self.w = st.writer(cam, [video])

    def gop_(self) -> None:
        from tests.crash_writer import FRAME
        from vstore import Packet

        for _ in range(self.gop):
            f = self.frame
            key = f % self.gop == 0
            self.w.write(Packet(0, f * FRAME, f * FRAME, key, payload(f, key)))
            self.clock.advance(FRAME * 10**9 // 90000)
            self.frame += 1


def test_recording_resumes_by_itself_after_a_lease_blocked_the_watermark(tmp_path):
    import time

    from vstore.base.clock import FakeClock

    clock = FakeClock(wall_ns=START_NS)
    st, disk = watermark_store(tmp_path, capacity=10**9, clock=clock)
    try:
        cam = LiveCamera(st, clock)
        for _ in range(12):
            cam.gop_()
        cam.w.flush()
        # Another program takes the disk to just below the watermark; the only footage
        # that deleting would free is being read by a clip in another process.
        disk.need(2000)
        reader = LeaseHolder(st.root, START_NS, START_NS + 3600 * 10**9)
        try:
            for _ in range(12):
                cam.gop_()  # never raises: a live camera pauses, it does not stop
            deadline = time.monotonic() + 20
            while cam.w._space_paused_ns is None and time.monotonic() < deadline:
                time.sleep(0.05)
                cam.gop_()
            assert cam.w._space_paused_ns is not None and cam.w.stats.dropped_disk_full > 0
        finally:
            reader.release()
        deadline = time.monotonic() + 20
        while cam.w._space_paused_ns is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            cam.gop_()
        assert cam.w._space_paused_ns is None  # resumed without a restart
        resumed_at = clock.wall_ns()
        for _ in range(4):
            cam.gop_()
        cam.w.flush()
        num = st.camera_num("cam")
        kinds = [e.kind for e in st.index.events(num, 0, 2**62)]
        assert "disk_full" in kinds and "recording_resumed" in kinds
        assert st.index.last_chunk(num).end_ns >= resumed_at
        cam.w.close()
        assert st.space.wait_idle(20)  # (a pass may still be deleting)
        assert check_store(st).ok
    finally:
        st.close()


def test_unmeetable_watermark_deletes_nothing_and_stops_as_declared(tmp_path):
    from vstore.store.space import SpaceRefused

    st, disk = watermark_store(tmp_path, capacity=10**9)
    try:
        record(st, 12)  # an import: three segments
        files = sorted(st.layout.iter_segment_files())
        disk.need(10**6)  # another program: no deletion of ours meets 50 %
        with pytest.raises(SpaceRefused, match="other data fills the disk"):
            record(st, 12, start=START_NS + 100 * GOP_NS)
        assert sorted(st.layout.iter_segment_files()) == files  # nothing deleted for nothing
        assert not any(a["action"] == "delete" for a in st.index.audit_records())
        disk.need(15_000)  # then a little more than one segment is needed
        record(st, 4, start=START_NS + 200 * GOP_NS)
        deleted = [a for a in st.index.audit_records() if a["action"] == "delete"]
        assert 1 <= len(deleted) <= 2  # the fewest oldest that meet it, not all
        assert check_store(st).ok
    finally:
        st.close()


def test_watermark_never_blocks_a_writer_on_an_object_store_that_never_answers(
    tmp_path, monkeypatch
):
    import json
    import socket
    import threading
    import time

    from vstore.base import layout
    from vstore.base.clock import FakeClock
    from vstore.index.time_index import Batch

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        hole.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hole.accept()[0])  # accepted, never answered
            except TimeoutError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    for k, v in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{hole.getsockname()[1]}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    clock = FakeClock(wall_ns=START_NS)
    st, disk = watermark_store(tmp_path, capacity=10**9, clock=clock)
    try:
        cam = LiveCamera(st, clock)
        for _ in range(12):
            cam.gop_()
        cam.w.flush()
        # A tiered deletion is pending (its object store was down when retention ran).
        b = Batch()
        rec = {"path": "cam/x.vseg", "camera": "cam", "start_ns": 1, "end_ns": 2}
        b.put(layout.garbage_key(10**9), json.dumps({**rec, "location": "s3://hole/x"}).encode())
        st.index.commit(b)
        disk.need(10_000)  # below the watermark: old footage must go
        slowest = 0.0
        for _ in range(16):
            t0 = time.monotonic()
            cam.gop_()
            slowest = max(slowest, time.monotonic() - t0)
        assert st.space.wait_idle(20) and st.space.passes >= 1
        # The keeper freed local footage without the network; no write waited on it (a
        # tier request here would hang for its 30 s read timeout, times its retries).
        assert slowest < 5.0
        assert any(a["action"] == "delete" for a in st.index.audit_records())
        assert len(st.index.garbage()) == 1  # the tiered one waits for a retention run
        cam.w.close()
    finally:
        st.close()
        stop.set()
        th.join()
        for s in held:
            s.close()
        hole.close()


def test_read_cache_is_evicted_before_any_footage(tmp_path):
    st, disk = watermark_store(tmp_path, capacity=10**9)
    try:
        record(st, 12)
        cache = st.layout.cache_dir / "0123456789abcdef"
        cache.mkdir(parents=True)
        for i in range(8):
            (cache / f"range-{i}").write_bytes(bytes(100_000))
        files = sorted(st.layout.iter_segment_files())
        disk.need(300_000)  # the cache alone covers the need
        record(st, 4, start=START_NS + 100 * GOP_NS)
        assert set(files) <= set(st.layout.iter_segment_files())  # no footage deleted
        left = sum(p.stat().st_size for p in cache.iterdir())
        assert left < 800_000
        assert not any(a["action"] == "delete" for a in st.index.audit_records())
    finally:
        st.close()


# --- 4. a step of the host clock neither wipes the archive nor stamps the future --------------

DAY_NS = 86400 * 10**9


def test_forward_clock_step_does_not_wipe_the_archive(tmp_path, capsys):
    from vstore.base.clock import FakeClock
    from vstore.lifecycle.retention import run_retention

    clock = FakeClock(wall_ns=START_NS + 3600 * 10**9)
    st = small_store(tmp_path, '[retention]\nmax_age = "30d"\n', clock=clock)
    try:
        record(st, 12)
        assert run_retention(st)[1].deleted_segments == 0
        clock.step_wall(40 * DAY_NS)  # a bad NTP server, an operator's typo
        plan, res = run_retention(st)
        assert res.deleted_segments == 0 and len(readable_chunks(st)) == 12
        assert "ahead of the time that passed" in plan.clock_warning
        # Real time passes: footage that truly expired goes, as counted by the boot clock.
        clock.advance(31 * DAY_NS)
        plan, res = run_retention(st)
        assert res.deleted_segments == 3 and plan.clock_warning
    finally:
        st.close()


def test_forward_clock_step_across_a_reboot_needs_the_operators_word(tmp_path, capsys):
    import json

    from vstore.base.clock import FakeClock
    from vstore.lifecycle.retention import run_retention

    clock = FakeClock(wall_ns=START_NS + 3600 * 10**9)
    st = small_store(tmp_path, '[retention]\nmax_age = "30d"\n', clock=clock)
    record(st, 12)
    st.close()
    clock.reboot(down_ns=40 * DAY_NS)  # no boot clock vouches for these 40 days
    st = small_store(tmp_path, '[retention]\nmax_age = "30d"\n', clock=clock)
    try:
        plan, res = run_retention(st)
        assert res.deleted_segments == 0 and "across a restart" in plan.clock_warning
        plan, res = run_retention(st, trust_clock=True)
        assert res.deleted_segments == 3
        assert any(a["action"] == "clock_trusted" for a in st.index.audit_records())
    finally:
        st.close()
    # The command line says so loudly, and --json carries it.
    clock2 = FakeClock(wall_ns=START_NS)
    st = small_store(tmp_path / "b", '[retention]\nmax_age = "30d"\n', clock=clock2)
    st.close()
    store = str(tmp_path / "b" / "store")
    # (a real process: its system clock is 2026, the store saw 2025 in a fake boot)
    capsys.readouterr()
    assert run_cli("retention", "run", "--store", store, "--dry-run", "--json") == 0
    out = capsys.readouterr()
    assert "WARNING" in out.err and json.loads(out.out)["clock_warning"]


def test_recording_after_a_backward_clock_correction_is_stamped_at_the_true_time(tmp_path):
    from vstore.base.clock import FakeClock
    from vstore.store.holds import add_hold

    clock = FakeClock(wall_ns=START_NS)
    st = small_store(tmp_path, clock=clock)
    try:
        cam = LiveCamera(st, clock)
        for _ in range(20):
            cam.gop_()
        clock.step_wall(40 * DAY_NS)  # the clock jumps ahead; the camera follows it
        for _ in range(10):
            cam.gop_()
        clock.step_wall(-40 * DAY_NS)  # and is corrected
        for _ in range(30):
            cam.gop_()
        cam.w.flush()
        now = clock.wall_ns()
        num = st.camera_num("cam")
        recent = list(st.index.chunks(num, now - 20 * 10**9, now))
        assert len(recent) >= 19  # the last 20 s are where they happened, not 40 days on
        hold = add_hold(st, "cam", now - 20 * 10**9, now, "incident", "ray")
        assert list(st.index.chunks(num, hold.from_ns, hold.to_ns))
        kinds = [e.kind for e in st.index.events(num, 0, 2**62)]
        assert "clock_stepped_back" in kinds
        cam.w.close()
        assert check_store(st).ok  # no overlap: the run ended before the later footage
    finally:
        st.close()


# --- the property: random lifecycles never lose indexed or held footage ------------------------

_DIE_AFTER_FLUSH_FROM = textwrap.dedent(
    """
    import os, sys
    from tests.crash_writer import payload, GOP, FRAME
    from vstore import Packet, TrackInfo, open_store
    st = open_store(sys.argv[1])
    w = st.writer("cam", [TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")],
                  start_ns=int(sys.argv[3]))
    for f in range(int(sys.argv[2]) * GOP):
        w.write(Packet(0, f * FRAME, f * FRAME, f % GOP == 0, payload(f, f % GOP == 0)))
    w.flush()
    os._exit(0)
    """
)


def _op_strategy():
    from hypothesis import strategies as s

    return s.one_of(
        s.tuples(s.just("record"), s.integers(1, 9)),
        s.tuples(s.just("crash"), s.integers(1, 9), s.integers(-1, 8)),
        s.tuples(s.just("tier"), s.integers(0, 20)),
        s.tuples(s.just("hold"), s.floats(0, 1), s.floats(0, 1)),
        s.tuples(s.just("release"), s.integers(0, 5)),
        s.tuples(s.just("retention"), s.sampled_from(["age", "bytes", "watermark", "tiered"])),
        s.tuples(s.just("clock"), s.sampled_from([-40, -1, 1, 40])),
        s.tuples(s.just("advance"), s.integers(1, 40)),
    )


class Lifecycle:
    """One store driven through a sequence of operations, checked after each."""

    def __init__(self, root: Path) -> None:
        from vstore.base.clock import FakeClock

        self.root = root
        self.dir = root / "store"
        self.dir.mkdir(parents=True)
        (self.dir / "vstore.toml").write_text(
            '[store]\nsegment_duration_s = 3\n[retention]\nmax_age = "30d"\n'
            'tiered_max_age = "60d"\n'
        )
        self.clock = FakeClock(wall_ns=START_NS + 3600 * 10**9)
        self.tier_dir = root / "cold"
        self.held: dict[int, set[tuple[int, int]]] = {}  # hold id -> (start_ns, crc32)
        self.acked: set[int] = set()  # chunk starts that were durable (and not deleted)

    def open(self, **kw):
        return open_store(self.dir, clock=self.clock, **kw)

    def next_start(self, st) -> int:
        num = st.index.camera_num("cam")
        last = st.index.last_chunk(num) if num is not None else None
        return START_NS if last is None else last.end_ns + 2 * GOP_NS

    def run(self, op: tuple) -> None:
        from vstore.lifecycle import retention
        from vstore.lifecycle.tiering import run_tiering
        from vstore.store.disk import DiskUsage
        from vstore.tier import LocalTier

        kind = op[0]
        if kind == "crash":
            with self.open() as st:
                start = self.next_start(st)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _DIE_AFTER_FLUSH_FROM,
                    str(self.dir),
                    str(op[1]),
                    str(start),
                ],
                check=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                cwd=ROOT,
            )
            if op[2] >= 0:  # and a byte of one of its GOPs rots before recovery
                from vstore.store.store import Store

                st = Store(self.dir, clock=self.clock)
                try:
                    [(_sid, marker)] = st.index.open_segments()
                    path = st.layout.path(marker["path"])
                    chunks = path.read_bytes().count(b"VCHK")
                    flip_byte_in_gop(path, op[2] % chunks)
                finally:
                    st.close()
            return
        with self.open() as st:
            if kind == "record":
                record(st, op[1], start=self.next_start(st))
            elif kind == "tier" and st.index.camera_num("cam") is not None:
                run_tiering(st, LocalTier(self.tier_dir), op[1] * 10**9)
            elif kind == "hold" and st.index.camera_num("cam") is not None:
                num = st.camera_num("cam")
                first = next(iter(st.index.chunks(num, -(2**62), 2**62)), None)
                last = st.index.last_chunk(num)
                if first is None or last is None:
                    return
                span = last.end_ns - first.start_ns
                a = first.start_ns + int(span * min(op[1], op[2]))
                b = first.start_ns + int(span * max(op[1], op[2])) + 1
                h = add_hold(st, "cam", a, b, "case", "prop")
                self.held[h.id] = {(c.start_ns, c.crc32) for c in st.index.chunks(num, a, b)}
            elif kind == "release":
                active = sorted(self.held)
                if active:
                    hid = active[op[1] % len(active)]
                    release_hold(st, hid, "prop")
                    del self.held[hid]
            elif kind == "retention":
                kw: dict = {}
                disk = DiskUsage(10**12, 10**12)
                if op[1] == "bytes":
                    kw["max_bytes"] = 30_000
                elif op[1] == "watermark":
                    used = sum(r.size_bytes for r in st.index.all_segment_rows())
                    disk = DiskUsage(10**12, 10**12 // 2 - used // 2)
                    st.config = st.config._replace(
                        retention=st.config.retention._replace(min_free_ratio=0.5)
                    )
                elif op[1] == "tiered":
                    kw["tiered_max_age_ns"] = 10**9
                retention.run_retention(st, disk=disk, **kw)
            elif kind == "clock":
                self.clock.step_wall(op[1] * 86400 * 10**9)
            elif kind == "advance":
                self.clock.advance(op[1] * 86400 * 10**9)

    def check(self) -> None:
        with self.open() as st:  # a writable open: recovery runs first
            rep = check_store(st)
            assert rep.ok, rep.problems
            if st.index.camera_num("cam") is None:
                assert not self.held
                return
            num = st.camera_num("cam")
            indexed = {c.start_ns: c.crc32 for c in st.index.chunks(num, -(2**62), 2**62)}
            assert sorted(readable_chunks(st)) == sorted(indexed)  # each reads and verifies
            for hid, chunks in self.held.items():
                for start, crc in chunks:
                    assert indexed.get(start) == crc, f"hold #{hid}: chunk at {start} gone"


def test_random_lifecycles_never_lose_indexed_or_held_footage(tmp_path):
    import itertools

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as s

    serial = itertools.count()

    @settings(
        max_examples=int(os.environ.get("VSTORE_LIFECYCLE_EXAMPLES", "12")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(s.lists(_op_strategy(), min_size=3, max_size=9))
    def run(ops: list) -> None:
        life = Lifecycle(tmp_path / str(next(serial)))
        for op in ops:
            life.run(op)
            life.check()

    run()


def test_check_reports_and_repair_cancels_a_pending_deletion_of_held_footage(tmp_path, monkeypatch):

    st = small_store(tmp_path)
    try:
        record(st, 4)

        interrupt_after_d1(st, monkeypatch)
        [(_sid, rec)] = st.index.garbage()
        add_hold(st, "cam", rec["start_ns"], rec["start_ns"] + GOP_NS, "case", "ray")
        rep = check_store(st)
        assert [p.code for p in rep.problems] == ["C7"] and not rep.ok
        rep = check_store(st, repair=True)
        assert rep.ok and st.index.garbage() == []
        assert len(readable_chunks(st)) == 4  # adopted back (C4 repaired)
    finally:
        st.close()


# --- found by an adversarial review of the fixes above ------------------------------------------


def test_recovery_keeps_a_damaged_last_chunk_it_had_indexed(tmp_path):
    d = tmp_path / "store"
    record_and_crash(d, 10)
    seg = open_segment_file(d)
    size = seg.stat().st_size
    flip_byte_in_gop(seg, 9)
    with open_store(d) as st:
        assert st.last_recovery.damaged_chunks == 1 and st.last_recovery.truncated_bytes == 0
        assert seg.stat().st_size > size  # the rotted bytes stay; a footer follows them
        assert len(readable_chunks(st)) == 9
        [ev] = [e for e in st.index.events(st.camera_num("cam"), 0, 2**62) if e.kind == "damaged"]
        assert ev.detail["indexed_chunks"][0]["start_ns"] == START_NS + 9 * GOP_NS
        assert check_store(st).ok


def test_recovery_records_indexed_chunks_a_file_lost_with_its_tail(tmp_path):
    d = tmp_path / "store"
    record_and_crash(d, 10)
    seg = open_segment_file(d)
    raw = seg.read_bytes()
    cut = raw.index(b"VCHK", raw.index(b"VCHK", raw.index(b"VCHK") + 1) + 1)  # inside GOP 2
    seg.write_bytes(raw[: cut + 100])
    with open_store(d) as st:
        assert st.last_recovery.damaged_chunks == 8
        assert len(readable_chunks(st)) == 2
        evs = [e for e in st.index.events(st.camera_num("cam"), 0, 2**62) if e.kind == "damaged"]
        assert sum(len(e.detail["indexed_chunks"]) for e in evs) == 8
        assert any(not e.detail["in_file"] for e in evs)  # most of it is gone from the file
        assert any(a["action"] == "quarantine" for a in st.index.audit_records())
        assert check_store(st).ok


def test_trim_keeps_a_file_whose_damaged_bytes_a_hold_covers(tmp_path):
    from vstore.lifecycle import retention

    d = tmp_path / "store"
    record_and_crash(d, 10)
    seg = open_segment_file(d)
    flip_byte_in_gop(seg, 2)
    (d / "vstore.toml").write_text('[retention]\nmax_age = "1h"\n')
    with open_store(d) as st:
        add_hold(st, "cam", START_NS + 2 * GOP_NS, START_NS + 3 * GOP_NS, "c", "r")
        _plan, res = retention.run_retention(st)
        assert res.trimmed_segments == 0 and "damaged bytes a hold covers" in res.errors[0]
        assert seg.exists() and len(readable_chunks(st)) == 9


def test_a_short_hold_cancels_a_pending_deletion_of_its_only_copy(tmp_path, monkeypatch):
    from vstore.lifecycle import retention

    st = small_store(tmp_path)
    try:
        record(st, 12)

        interrupt_after_d1(st, monkeypatch)
        [(_sid, rec)] = st.index.garbage()
        at = rec["end_ns"] - 400_000_000  # 0.4 s before its end, into the next segment
        add_hold(st, "cam", at, rec["end_ns"] + GOP_NS, "case", "ray")
        assert [p.code for p in check_store(st).problems] == ["C7"]
        retention.run_retention(st, max_age_ns=10**18)
        assert st.layout.path(rec["path"]).exists()
    finally:
        st.close()


def test_a_clock_that_runs_fast_a_little_at_a_time_is_caught(tmp_path):
    from vstore.base.clock import FakeClock
    from vstore.lifecycle.retention import run_retention

    clock = FakeClock(wall_ns=START_NS + 3600 * 10**9)
    st = small_store(tmp_path, '[retention]\nmax_age = "10d"\n', clock=clock)
    try:
        record(st, 12)
        for _ in range(100):  # 100 true hours; the wall clock runs three times as fast
            clock.advance(3600 * 10**9)
            clock.step_wall(2 * 3600 * 10**9)
            plan, res = run_retention(st)
            assert res.deleted_segments == 0
        assert plan.clock_warning
    finally:
        st.close()


def test_a_corrected_backward_step_leaves_the_clock_trusted(tmp_path):
    from vstore.base.clock import FakeClock
    from vstore.lifecycle.retention import run_retention

    clock = FakeClock(wall_ns=START_NS + 3600 * 10**9)
    st = small_store(tmp_path, '[retention]\nmax_age = "30d"\n', clock=clock)
    try:
        record(st, 12)
        clock.step_wall(-40 * DAY_NS)
        assert run_retention(st)[1].deleted_segments == 0
        clock.step_wall(40 * DAY_NS)  # corrected
        clock.advance(31 * DAY_NS)
        plan, res = run_retention(st)
        assert res.deleted_segments == 3 and not plan.clock_warning
    finally:
        st.close()


def test_a_stores_shorter_tiered_age_never_cuts_a_groups_longer_max_age(tmp_path):
    cfg = (
        '[retention]\nmax_age = "30d"\ntiered_max_age = "90d"\n'
        '[retention.groups.evidence]\ncameras = ["lobby"]\nmax_age = "3650d"\n'
    )
    with small_store(tmp_path, cfg) as st:
        pol = st.config.retention.policy("lobby")
        assert pol.age_limit_ns(True) == pol.age_limit_ns(False) == 3650 * DAY_NS
        assert st.config.retention.policy("other").age_limit_ns(True) == 90 * DAY_NS


def test_recovery_of_a_sealed_file_indexes_only_chunks_that_verify(tmp_path):
    """A crash between a seal's fsync and its index batch, and then one rotted chunk."""
    from vstore.store.store import Store

    d = tmp_path / "store"
    record_and_crash(d, 10)
    st = Store(d)
    try:
        [(_sid, marker)] = st.index.open_segments()
        path = st.layout.path(marker["path"])
        # Seal it as W3 would, without the index batch (the crash point).
        from vstore.segment.reader import FileSource, scan_chunks
        from vstore.segment.seal import seal_file

        with FileSource(path) as src:
            scan = scan_chunks(src)
        fd = st.fs.open_rw(path)
        try:
            seal_file(st.fs, fd, path, scan.entries, scan.valid_end)
        finally:
            st.fs.close(fd)
    finally:
        st.close()
    flip_byte_in_gop(path, 4)
    with open_store(d) as st:
        assert st.last_recovery.damaged_chunks == 1
        assert len(readable_chunks(st)) == 9  # every indexed chunk reads and verifies (I1)
        assert check_store(st).ok  # the damage is recorded and known


@pytest.mark.parametrize("repair", [False, True])
def test_a_segment_a_live_writer_opens_while_check_reads_is_no_orphan(tmp_path, repair):
    """`check` reads the index, then lists the files: a segment a live writer opened in
    between (its index rows written first, W0) is neither reported nor adopted (adopting it
    ran recovery under the writer, which discarded its file)."""
    from tests.test_timestamps import VIDEO, push

    st = open_store(tmp_path / "s")
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 50)
    w.flush()
    listing = st.layout.iter_segment_files

    def listed_after_a_new_segment():
        w.new_run(reason="test")  # a new segment: indexed, then its file created
        push(w, 50, start=50 * 3600, first_index=50)
        w.flush()
        yield from listing()

    st.layout.iter_segment_files = listed_after_a_new_segment  # type: ignore[method-assign]
    rep = check_store(st, repair=repair)
    st.layout.iter_segment_files = listing  # type: ignore[method-assign]
    assert [p for p in rep.problems if p.code == "C4"] == [], rep.problems
    push(w, 50, start=100 * 3600, first_index=100)
    w.close()
    rep = check_store(st)
    assert rep.ok, rep.problems
    segs = list(st.index.segments(st.camera_num("cam")))
    assert len(segs) == 2 and all(st.layout.path(s.path).exists() for s in segs)
    st.close()


def test_an_unmet_watermark_is_said_once_while_it_lasts_and_room_made_is_logged(tmp_path, caplog):
    """Asked every second while the disk stays below its watermark, the keeper says so when
    it starts (and when its reason changes), not every second; a deletion that makes room
    is in the log as well as the audit log."""
    import logging

    st, disk = watermark_store(tmp_path, capacity=10**9)
    try:
        record(st, 12)
        disk.need(10**6)  # another program fills the disk: nothing of ours meets it
        with caplog.at_level(logging.INFO, logger="vstore"):
            for _ in range(5):
                assert st.space.free_space() > 0 and "other data" in st.space.unmet_why
            said = [r for r in caplog.records if "below the watermark by" in r.message]
            assert len(said) == 1 and "other data" in said[0].message
            caplog.clear()
            disk.need(15_000)  # now deleting the oldest segment meets it
            assert st.space.free_space() == 0
            assert any("oldest segment(s)" in r.message for r in caplog.records), caplog.records
            caplog.clear()
            disk.need(10**6)  # short again: said again at once, as a new shortfall
            assert st.space.free_space() > 0
            assert [r for r in caplog.records if "below the watermark by" in r.message]
    finally:
        st.close()
