"""An import is replayable from its source until it reports done (lifecycle F1-F4): killed
midway, the same `vstore import` runs again and replaces what the unfinished run wrote,
instead of refusing it as an overlap; held footage is never replaced; and the import makes
its footage durable segment by segment, not GOP by GOP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base.errors import UsageError
from vstore.base.fsutil import Fs
from vstore.base.timebase import format_time
from vstore.ingest.file_import import import_file
from vstore.jobs import registry
from vstore.lifecycle.check import check_store
from vstore.store import imports
from vstore.store.holds import add_hold, release_hold

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000


def _store(path: Path) -> Path:
    path.mkdir()
    (path / "vstore.toml").write_text("[store]\nsegment_duration_s = 2\n")
    return path


def _footage(st, cam: str = "cam") -> list[tuple[int, int, int]]:
    num = st.index.camera_num(cam)
    return [(c.start_ns, c.end_ns, c.packet_count) for c in st.index.chunks(num, 0, 2**63 - 1)]


class _Stop(BaseException):
    """The process dies (as KeyboardInterrupt would, but no test runner catches it)."""


def _import_until(st, src: Path, stop_after_s: float) -> None:
    def progress(done_s: float, _total_s: float) -> None:
        if done_s >= stop_after_s:
            raise _Stop

    with pytest.raises(_Stop):
        import_file(st, src, "cam", START_NS, progress=progress)


def test_an_import_killed_midway_runs_again_and_replaces_what_it_left(tmp_path, media):
    src = media("replay.ts", 12.0, gop_frames=25)
    clean = _store(tmp_path / "clean")
    with open_store(clean) as st:
        import_file(st, src, "cam", START_NS)
        want = _footage(st)
    store = _store(tmp_path / "store")
    cmd = [sys.executable, "-m", "vstore.cli.main", "import", str(src), "--camera", "cam"]
    cmd += ["--start", format_time(START_NS), "--store", str(store), "--json"]
    # Paced to about 4 s of work: killed after the first segments are sealed.
    rate = f"{max(1, src.stat().st_size // 4000)}KB"
    paced = subprocess.Popen([*cmd, "--max-rate", rate], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    time.sleep(1.5)
    paced.send_signal(signal.SIGKILL)
    paced.wait()
    with open_store(store) as st:  # (recovery seals the open segment)
        [left] = imports.unfinished(st)
        assert left.camera == "cam" and left.start_ns == START_NS and left.segment_ids
        partial = _footage(st)
        assert partial and len(partial) < len(want)
        # (a segment that had only its header when the process died is gone: recovery, W4)
        kept = {r.segment_id for r in st.index.segments(left.camera_num)}
        assert kept and kept <= set(left.segment_ids)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["replaced_segments"] == len(kept)
    with open_store(store) as st:
        assert _footage(st) == want  # the same footage as an import that never crashed
        assert imports.unfinished(st) == []
        assert check_store(st).ok
        deleted = [a for a in st.index.audit_records() if a["action"] == "delete"]
        assert {a["detail"]["segment_id"] for a in deleted} == kept
        assert {a["detail"]["reason"] for a in deleted} == {"import_replaced"}


def test_a_finished_import_is_not_replaced_but_refused_as_an_overlap(tmp_path, media):
    src = media("replay.ts", 12.0, gop_frames=25)
    with open_store(_store(tmp_path / "store")) as st:
        import_file(st, src, "cam", START_NS)
        before = _footage(st)
        with pytest.raises(UsageError, match="already has"):
            import_file(st, src, "cam", START_NS)
        assert _footage(st) == before


def test_held_footage_of_an_unfinished_import_is_never_replaced(tmp_path, media):
    src = media("replay.ts", 12.0, gop_frames=25)
    with open_store(_store(tmp_path / "store")) as st:
        _import_until(st, src, 6.0)
        partial = _footage(st)
        [left] = imports.unfinished(st)
        hold = add_hold(st, "cam", START_NS + NS, START_NS + 2 * NS, "case 7", "tester")
        with pytest.raises(UsageError, match=f"hold {hold.id} covers"):
            import_file(st, src, "cam", START_NS)
        assert _footage(st) == partial and imports.unfinished(st)
        release_hold(st, hold.id, "tester", "case closed")
        res = import_file(st, src, "cam", START_NS)
        assert res.replaced_segments == len(left.segment_ids) > 0
        assert imports.unfinished(st) == []


def test_another_file_at_an_unfinished_import_s_camera_and_start_is_refused(tmp_path, media):
    """Only the same import run again replaces what an unfinished one stored: another
    recording given the same camera and start deleted that footage (all there was of it,
    its file perhaps gone) and the marker saying it was still to be imported."""
    src = tmp_path / "rec.ts"
    data = media("replay.ts", 12.0, gop_frames=25).read_bytes()
    src.write_bytes(data)
    other = media("other.ts", 4.0, gop_frames=25)
    with open_store(_store(tmp_path / "store")) as st:
        _import_until(st, src, 6.0)
        partial = _footage(st)
        with pytest.raises(UsageError, match=f"earlier import of {src}.*did not finish"):
            import_file(st, other, "cam", START_NS)
        src.write_bytes(data + data[:188])  # (another recording under the same name)
        with pytest.raises(UsageError, match="did not finish"):
            import_file(st, src, "cam", START_NS)
        assert _footage(st) == partial and imports.unfinished(st)
        src.write_bytes(data)
        res = import_file(st, src, "cam", START_NS)  # (the same import: replaced)
        assert res.replaced_segments > 0 and imports.unfinished(st) == []


class _CountingFs(Fs):
    def __init__(self) -> None:
        self.fsyncs = 0

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        super().fsync(fd)


def test_an_import_is_made_durable_segment_by_segment(tmp_path, media):
    """Durability at segment granularity: one fsync a segment (its seal), not one a GOP;
    the source is the durable copy until the import reports done."""
    src = media("replay.ts", 12.0, gop_frames=25)
    fs = _CountingFs()
    with open_store(_store(tmp_path / "store"), fs=fs) as st:
        res = import_file(st, src, "cam", START_NS)
        gops = len(_footage(st))
    assert res.segments >= 4 and gops >= 2 * res.segments
    assert fs.fsyncs <= res.segments + 2  # (+ the store's own files)


def test_check_in_a_recording_process_names_an_import_nobody_runs(tmp_path, media):
    """In the process that holds the store and records (a node running check as a job), an
    import that never reported done is reported unless a writer of its camera is open
    there: live recording of other cameras no longer hides it."""
    from tests.test_timestamps import VIDEO

    src = media("unfinished.ts", 8.0, gop_frames=25)
    with open_store(_store(tmp_path / "store")) as st:
        _import_until(st, src, 3.0)
        with st.writer("live", [VIDEO], start_ns=START_NS + 3600 * NS):
            assert [p.code for p in check_store(st, verify_hashes=False).problems] == ["C8"]
            with st.writer("cam", [VIDEO], start_ns=START_NS + 7200 * NS):  # (being imported)
                assert check_store(st, verify_hashes=False).ok


@pytest.mark.parametrize("how", ["keep", "discard"])
def test_an_unfinished_import_can_be_given_up(tmp_path, media, capsys, how):
    """An import that died, whose file is gone (or whose --start was wrong), used to keep
    `check` failing for good: only the same import run again resolved it. It is given up:
    what it stored kept, or deleted (audited either way)."""
    from vstore.cli.main import main

    src = media("replay.ts", 12.0, gop_frames=25)
    store = _store(tmp_path / "store")
    with open_store(store) as st:
        _import_until(st, src, 5.0)
    with open_store(store) as st:
        [left] = imports.unfinished(st)
        partial = _footage(st)
        assert partial and not check_store(st).ok
    argv = ["import", "--camera", "cam", "--start", format_time(START_NS), "--store", str(store)]
    assert main([*argv, "--abandon", how, str(src)]) == 2  # (no file with it)
    capsys.readouterr()
    from tests.test_timestamps import VIDEO

    # (a writer of the camera is open here: the import may still run, and is not given up)
    with (
        open_store(store) as st,
        st.writer("cam", [VIDEO], start_ns=START_NS + 99 * NS),
        pytest.raises(UsageError, match="being written here now"),
    ):
        registry.run(st, "import", {"camera": "cam", "start_ns": START_NS, "abandon": how})
    assert main([*argv, "--abandon", how, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["abandoned"] == how and doc["segments"] >= 1
    assert main([*argv, "--abandon", how]) == 3  # (nothing left to give up)
    capsys.readouterr()
    with open_store(store) as st:
        assert imports.unfinished(st) == [] and check_store(st).ok
        assert _footage(st) == (partial if how == "keep" else [])
        records = list(st.index.audit_records())
        if how == "keep":
            (rec,) = [a for a in records if a["action"] == "import_abandoned"]
            assert rec["detail"]["file"] == left.file
        else:
            deleted = [a for a in records if a["action"] == "delete"]
            assert {a["detail"]["reason"] for a in deleted} == {"import_discarded"}


def test_another_store_s_objects_never_share_an_id_with_this_store_s_segments(tmp_path, media):
    """Segment ids count per store: another store's objects indexed here (rebuild-index
    from a shared bucket) repeated ids of this store's own segments, so check verified one
    segment's file against the other's chunks (calling healthy objects corrupt, never
    reading the damaged file), and giving up an unfinished import deleted the other store's
    objects that carried its ids (D6). They are indexed under fresh ids."""
    from vstore.lifecycle.tiering import rebuild_index_from_tier, run_tiering
    from vstore.tier import LocalTier

    tier = LocalTier(tmp_path / "shared")
    src = media("replay.ts", 12.0, gop_frames=25)
    with open_store(_store(tmp_path / "a")) as a:
        import_file(a, src, "cam", START_NS + 3600 * NS)
        run_tiering(a, tier, 0)
        theirs = sorted(o.key for o in tier.list_prefix("") if o.key.endswith(".vseg"))
        assert theirs and check_store(a).ok
    b_dir = _store(tmp_path / "b")
    with open_store(b_dir) as b:
        _import_until(b, src, 5.0)
    with open_store(b_dir) as b:
        [left] = imports.unfinished(b)
        got = rebuild_index_from_tier(b, tier)
        assert got.foreign == len(theirs)
        assert rebuild_index_from_tier(b, tier).already_indexed == len(theirs)  # (no twice)
        num = b.index.camera_num("cam")
        rows = list(b.index.segments(num))
        own = {r.segment_id for r in rows if not r.foreign}
        foreign = {r.segment_id for r in rows if r.foreign}
        assert own >= set(left.segment_ids) and not own & foreign
        assert [p.code for p in check_store(b).problems] == ["C8"]
        # Damage of this store's own file is found, not hidden behind the other's chunks.
        mine = next(r for r in rows if not r.foreign and r.state == "sealed")
        path = b.layout.path(mine.path)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        assert any(p.code == "C2" and p.path == mine.path for p in check_store(b).problems)
        # Given up, the import deletes only what it wrote.
        imports.replace(b, left, "test", "import_discarded")
        assert sorted(o.key for o in tier.list_prefix("") if o.key.endswith(".vseg")) == theirs
        assert {r.segment_id for r in b.index.segments(num)} == foreign
    with open_store(tmp_path / "a") as a:
        assert check_store(a).ok
