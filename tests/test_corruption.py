"""Corrupt and missing bytes are found by `check` and refused by readers, never served.

Failure modes: a flipped payload byte, a truncated sealed file, a deleted file, garbage where
a segment should be, an orphan file (adopted by --repair from its own bytes).
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import START_NS
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.api import open_store
from vstore.base.errors import CorruptSegment, SegmentMissing
from vstore.cli.exit_codes import exit_code
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip
from vstore.lifecycle.check import check_store
from vstore.segment.reader import SegmentReader


def record(st, n=100, cam="cam", start=START_NS):
    with st.writer(cam, [VIDEO], start_ns=start) as w:
        for i in range(n):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data + bytes(200)))
    return list(st.index.segments(st.camera_num(cam)))


def codes(rep):
    return sorted({p.code for p in rep.problems if not p.repaired})


def test_clean_store_checks_clean(store):
    record(store)
    rep = check_store(store)
    assert rep.ok and rep.segments == 1 and rep.chunks == 4


def test_flipped_payload_byte_is_detected(store):
    [seg] = record(store)
    path = store.layout.path(seg.path)
    raw = bytearray(path.read_bytes())
    raw[seg.size_bytes // 2] ^= 0x40
    path.write_bytes(raw)
    rep = check_store(store)
    assert codes(rep) == ["C2"]
    with pytest.raises(CorruptSegment):
        list(store.read_packets("cam", START_NS, START_NS + 10**12))


def test_flipped_byte_found_by_quick_check_too(store):
    [seg] = record(store)
    path = store.layout.path(seg.path)
    raw = bytearray(path.read_bytes())
    raw[700] ^= 0x01  # inside the first chunk
    path.write_bytes(raw)
    assert not check_store(store, verify_hashes=False).ok


def test_truncated_sealed_segment_is_detected(store):
    [seg] = record(store)
    path = store.layout.path(seg.path)
    with open(path, "r+b") as f:
        f.truncate(seg.size_bytes - 100)
    assert codes(check_store(store)) == ["C2"]


def test_a_sealed_segment_cut_short_is_repaired_as_damage_and_the_rest_stays_served(store):
    """A sealed file whose tail is gone (its trailer and its last chunk's end): --repair
    reads the chunks the index names one by one (the file's own directory went with the
    trailer), takes the one whose bytes are gone out of the index (I1) as recorded damage
    (R6), keeps the file as it is, and the next check is clean."""
    [seg] = record(store)
    path = store.layout.path(seg.path)
    with open(path, "r+b") as f:
        f.truncate(seg.size_bytes - 3000)  # (the footer, trailer and a chunk's end)
    assert codes(check_store(store)) == ["C2"]
    rep = check_store(store, repair=True)
    (fixed,) = [p for p in rep.problems if p.code == "C2"]
    assert fixed.repaired and "1 damaged chunk(s) left out of the index" in fixed.message
    assert check_store(store).ok
    assert path.stat().st_size == seg.size_bytes - 3000  # (kept as it is)
    chunks = list(store.index.chunks(seg.camera_num, 0, 2**62))
    assert len(chunks) == 3  # (of 4)
    events = [e for e in store.index.events(seg.camera_num, 0, 2**62) if e.kind == "damaged"]
    assert len(events) == 1
    plan = plan_clip(store, "cam", START_NS, START_NS + 10**12)  # the rest is served
    assert sum(len(p.chunks) for p in plan.parts) == 3 and plan.gaps
    assert len(list(store.read_packets("cam", START_NS, START_NS + 10**12))) == 75


def test_missing_segment_file_is_detected(store):
    [seg] = record(store)
    store.layout.path(seg.path).unlink()
    rep = check_store(store)
    assert codes(rep) == ["C2"]
    assert "missing" in rep.problems[0].message
    # Footage the index names and the disk lost is damage, never "no footage here": a clip
    # leaves it out as damaged (and --strict fails, exit 5), as for bytes that do not verify.
    with pytest.raises(SegmentMissing, match="missing"):
        list(store.read_packets("cam", START_NS, START_NS + 10**12))
    plan = plan_clip(store, "cam", START_NS, START_NS + 10**10)
    assert plan.parts  # (the plan still names it: the index does)
    with pytest.raises(CorruptSegment, match="missing"):
        write_clip(store, plan, store.root / "c.mp4", strict=True)
    assert exit_code(SegmentMissing("x")) == 5


def test_a_clip_starting_inside_a_missing_segment_leaves_it_out_as_damage(store, tmp_path):
    """An MP4 clip whose start falls in a segment whose file is gone failed whole (exit 5)
    where the footage after it is whole: the missing range is left out as damage."""
    for k in range(3):
        record(store, start=START_NS + k * 4 * 10**9)
    gone = sorted(store.index.segments(store.camera_num("cam")), key=lambda r: r.start_ns)[1]
    store.layout.path(gone.path).unlink()
    plan = plan_clip(store, "cam", START_NS + 5 * 10**9, START_NS + 11 * 10**9)
    res = write_clip(store, plan, tmp_path / "c.mp4")
    assert res.video_packets >= 60 and res.plan.damaged
    with pytest.raises(SegmentMissing):
        plan = plan_clip(store, "cam", START_NS + 5 * 10**9, START_NS + 11 * 10**9)
        write_clip(store, plan, tmp_path / "c.mp4", strict=True)


def test_two_segments_of_one_id_are_named_by_check_not_mixed_up(store):
    """Another store's object indexed under its own id by an older rebuild-index: check
    says so instead of verifying one segment against the other's chunks."""
    from vstore.index.time_index import Batch

    [seg] = record(store)
    other = seg._replace(start_ns=seg.start_ns + 3600 * 10**9, owner="another-store",
                         location="s3://b/p", path="cam/x.vseg")  # fmt: skip
    b = Batch()
    b.put(other.key(), other.value())
    store.index.commit(b)
    rep = check_store(store, verify_hashes=False)
    assert any(p.code == "C1" and "names two segments" in p.message for p in rep.problems)


def test_garbage_segment_file_is_refused(tmp_path):
    p = tmp_path / "x.vseg"
    p.write_bytes(b"this is not a segment at all" * 10)
    with pytest.raises(CorruptSegment, match="magic"):
        SegmentReader.open(p)


def test_orphan_file_is_reported_and_adopted_by_repair(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with open_store(a) as st:
        [seg] = record(st)
    with open_store(b) as st:
        record(st, cam="other")
        dest = st.layout.path(seg.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(a / seg.path, dest)
        rep = check_store(st)
        assert codes(rep) == ["C4"]
    with open_store(b) as st:
        rep = check_store(st, repair=True)
        assert rep.ok
        assert check_store(st).ok
        # The adopted segment is served from its own bytes under its own camera id.
        pk = list(st.read_packets("cam", START_NS, START_NS + 10**12))
        assert len(pk) == 100


def test_check_cli_exit_codes(store_dir):
    from vstore.cli.main import main

    with open_store(store_dir) as st:
        [seg] = record(st)
    assert main(["check", "--store", str(store_dir)]) == 0
    path = store_dir / seg.path
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF
    path.write_bytes(raw)
    assert main(["check", "--store", str(store_dir)]) == 8
    assert main(["check", "--store", str(store_dir), "--json"]) == 8


def test_paced_check_reads_no_faster_than_its_rate(store, capsys):
    """A full check reads every byte back; beside live recording it must leave the disk to
    the cameras. Paced, it waits its share for every byte it reads (a fake clock shows it)."""
    from vstore.base.ratelimit import RateLimiter

    record(store, cam="a")
    record(store, cam="b")
    with store.writer("open", [VIDEO], start_ns=START_NS) as w:  # left open: read by chunks
        for i in range(60):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data + bytes(200)))
        w.flush()
        now = [0.0]

        def sleep(s):
            now[0] += s

        rate = RateLimiter(10_000, clock=lambda: now[0], sleep=sleep)
        rep = check_store(store, rate=rate)
        assert rep.ok and rep.segments == 3
        # Every byte verified passed the cap once: a 0.1 s burst, then 10 kB/s.
        assert now[0] == pytest.approx((rep.bytes_verified - 1_000) / 10_000, rel=0.01)


def test_check_cli_max_rate(store_dir, capsys):
    from vstore.cli.main import main

    with open_store(store_dir) as st:
        record(st)
    assert main(["check", "--store", str(store_dir), "--max-rate", "200MB"]) == 0
    assert main(["check", "--store", str(store_dir), "--max-rate", "auto"]) == 2
    assert "a size per second" in capsys.readouterr().err


def test_check_beside_a_live_recorder_is_clean(store_dir):
    """Open segments of a recorder running in another process are not problems."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, time\n"
        "from tests.test_timestamps import VIDEO, au\n"
        "from vstore import Packet, open_store\n"
        f"st = open_store({str(store_dir)!r})\n"
        "w = st.writer('cam', [VIDEO], start_ns=1737075600000000000)\n"
        "for i in range(100):\n"
        "    k, d = au(i)\n"
        "    w.write(Packet(0, i * 3600, i * 3600, k, d))\n"
        "w.flush()\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root
    ) as p:
        try:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
            with open_store(store_dir, read_only=True) as st:
                assert st.recording_elsewhere()
                rep = check_store(st)
                assert rep.ok, rep.problems
                assert rep.chunks == 4  # flushed chunks are indexed and verified
        finally:
            p.kill()
            p.wait()
    time.sleep(0.1)
    with open_store(store_dir, read_only=True) as st:
        assert not st.recording_elsewhere()
        assert not check_store(st).ok  # now the open segment's writer is gone (C3)
    with open_store(store_dir) as st:  # recovery seals it
        assert check_store(st).ok
