"""What investigators and operators hit when they tried vstore as new users: each test is
named after the failure, reproduced through the real store, index, tier and CLI."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.crash_writer import START_NS
from tests.test_never_lose_footage import GOP_NS, readable_chunks, record, run_cli, small_store
from vstore.api import open_store
from vstore.ingest.file_import import import_file
from vstore.lifecycle.check import check_store

DAY_NS = 86400 * 10**9


# --- a store deletes only objects it owns (D6) --------------------------------------------------


def test_store_rebuilt_from_another_stores_tier_never_deletes_its_objects(tmp_path, capsys):
    cold = tmp_path / "cold"
    a = tmp_path / "a"
    with small_store(a) as st:
        record(st, 12)
    store_a = str(a / "store")
    assert run_cli("tier", "run", "--store", store_a, "--to", str(cold), "--older-than", "1s") == 0
    objects = sorted(p for p in cold.rglob("*.vseg"))
    assert len(objects) == 3
    store_b = str(tmp_path / "b")
    capsys.readouterr()
    assert run_cli("rebuild-index", "--store", store_b, "--from", str(cold)) == 0
    assert "read-only" in capsys.readouterr().out
    # The second store runs retention that would delete all of it, were it its own.
    assert (
        run_cli("retention", "run", "--store", store_b, "--max-age", "1d", "--tiered-max-age", "1d")
        == 0
    )
    assert sorted(p for p in cold.rglob("*.vseg")) == objects
    with open_store(store_b) as st:
        assert len(readable_chunks(st)) == 12 and check_store(st).ok
    with open_store(store_a) as st:
        assert len(readable_chunks(st)) == 12 and check_store(st).ok
    # A replacement node takes the objects over explicitly; then its retention owns them.
    # Not while a node of that store still has its card in the bucket (alive, or never
    # declared gone): adopted, a live store's objects would have two writers of their
    # catalog, and the adopter's retention would delete them under it.
    import socket

    from vstore.lifecycle.hot_footage import publish_card
    from vstore.tier import LocalTier

    with open_store(store_a) as st:
        publish_card(st, LocalTier(cold), "http://127.0.0.1:9")
    store_c = str(tmp_path / "c")
    capsys.readouterr()
    assert run_cli("rebuild-index", "--store", store_c, "--from", str(cold), "--adopt") == 2
    assert "3 object(s) not adopted" in capsys.readouterr().out
    assert run_cli("retention", "run", "--store", store_c, "--tiered-max-age", "1d") == 0
    assert sorted(p for p in cold.rglob("*.vseg")) == objects
    assert run_cli("node", "forget", socket.gethostname(), "--bucket", str(cold)) == 0
    # Run again once it is declared gone: what it indexed read-only is taken over too.
    capsys.readouterr()
    assert run_cli("rebuild-index", "--store", store_c, "--from", str(cold), "--adopt") == 0
    assert "are now this store's" in capsys.readouterr().out
    with open_store(store_c) as st:
        rows = list(st.index.segments(st.camera_num("cam")))
        assert len(rows) == 3 and not any(r.foreign for r in rows)
        # Adopted, each object is listed once in the catalog (as this store's), and check
        # finds no chain of its own broken by the writer's links the objects carry.
        import json

        hours = [json.loads(p.read_text()) for p in (cold / "_catalog").rglob("??.json")]
        listed = [(e["store"], e["row"]["path"]) for h in hours for e in h["segments"]]
        assert len(listed) == 3 and {s for s, _p in listed} == {st.uuid}
        assert check_store(st).ok, check_store(st).problems
    assert run_cli("retention", "run", "--store", store_c, "--tiered-max-age", "1d") == 0
    assert list(cold.rglob("*.vseg")) == []


def test_rebuild_index_help_says_foreign_objects_are_read_only(capsys):
    import pytest

    with pytest.raises(SystemExit):
        run_cli("rebuild-index", "--help")
    out = capsys.readouterr().out
    assert "--adopt" in out and "read-only" in out.replace("\n", " ")


# --- a dry run says what the run does, trims included --------------------------------------


def test_dry_run_lists_the_trims_the_run_makes(tmp_path, capsys):
    import json

    from vstore.store.holds import add_hold

    with small_store(tmp_path, '[retention]\nmax_age = "1d"\n') as st:
        record(st, 12)
        add_hold(st, "cam", START_NS + 5 * GOP_NS, START_NS + 6 * GOP_NS, "case", "ray")
    store = str(tmp_path / "store")
    capsys.readouterr()
    assert run_cli("retention", "run", "--store", store, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would delete 2 segment(s)" in out and "would trim 1 held segment(s)" in out
    assert run_cli("retention", "run", "--store", store, "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trims"] == 1 and doc["trim_estimated_freed_bytes"] > 0
    assert run_cli("retention", "run", "--store", store, "--json") == 0
    done = json.loads(capsys.readouterr().out)
    assert done["deleted_segments"] == 2 and done["trimmed_segments"] == 1


def test_watermark_on_an_empty_store_says_there_is_nothing_to_delete(tmp_path, capsys):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text('[retention]\nmin_free = "99%"\n')
    open_store(d).close()
    capsys.readouterr()
    assert run_cli("retention", "run", "--store", str(d)) == 7
    err = capsys.readouterr().err
    assert "no footage on this disk to delete" in err and "held" not in err


# --- footage that is there is shown ---------------------------------------------------------


def test_ls_and_timeline_show_an_open_segments_durable_footage(tmp_path, capsys):
    import json

    from tests.test_never_lose_footage import record_and_crash

    d = tmp_path / "store"
    record_and_crash(d, 10)  # crashed mid-segment, not yet repaired
    capsys.readouterr()
    assert run_cli("ls", "--store", str(d), "--json") == 0
    [cam] = json.loads(capsys.readouterr().out)["cameras"]
    assert cam["open_segments"] == 1 and cam["recorded_s"] >= 9 and cam["size_bytes"] > 0
    assert run_cli("ls", "--store", str(d)) == 0
    assert "(+1 open)" in capsys.readouterr().out
    assert run_cli("timeline", "--store", str(d), "--camera", "cam", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["covered"] and not doc["gaps"]
    assert doc["open"] and doc["open"][0]["to_ns"] >= START_NS + 9 * GOP_NS  # said so


def _as_nobody(*argv: str, cwd: str = "/") -> subprocess.CompletedProcess[str]:
    import os
    import subprocess

    from tests.test_never_lose_footage import ROOT

    return subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "vstore.cli.main",
            *argv,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/"},
    )


def test_a_store_this_user_cannot_write_is_read_and_writes_are_refused_plainly():
    import shutil
    import tempfile

    import pytest

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to read as another user")
    if _as_nobody("--version").returncode != 0:
        pytest.skip("this checkout is not readable by another user (a private directory)")
    base = Path(tempfile.mkdtemp(prefix="vstore-ro-"))
    try:
        os.chmod(base, 0o755)
        with small_store(base) as st:
            record(st, 4)
        store = str(base / "store")
        subprocess.run(["chmod", "-R", "a+rX,a-w", store], check=True)
        out = base / "out"
        out.mkdir()
        os.chmod(out, 0o777)
        r = _as_nobody("ls", "--store", store, "--json")
        assert r.returncode == 0, r.stderr
        r = _as_nobody("timeline", "--store", store, "--camera", "cam")
        assert r.returncode == 0, r.stderr
        r = _as_nobody("check", "--store", store)
        assert r.returncode == 0, r.stderr
        r = _as_nobody(
            "clip",
            "--store",
            store,
            "--camera",
            "cam",
            "--from",
            "2025-01-17T01:00:00Z",
            "--to",
            "2025-01-17T01:00:02Z",
            "-o",
            str(out / "c.mp4"),
        )
        assert r.returncode == 0 and (out / "c.mp4").stat().st_size > 0, r.stderr
        r = _as_nobody("retention", "run", "--store", store)
        assert r.returncode == 1 and "not writable by this user" in r.stderr
        assert "Traceback" not in r.stderr
        r = _as_nobody("retention", "run", "--store", store, "--dry-run")
        assert r.returncode == 0, r.stderr  # a dry run only reads
        r = _as_nobody("ls", "--store", "store", cwd=str(base))  # a relative path too
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


# --- audit records say who ran what, and what decided it ------------------------------------------


def test_audit_records_name_the_user_host_command_and_overrides(tmp_path, capsys):
    import getpass
    import json
    import socket

    with small_store(tmp_path, '[retention]\nmax_age = "30d"\n') as st:
        record(st, 4)
    store = str(tmp_path / "store")
    assert run_cli("retention", "run", "--store", store, "--max-age", "1d") == 0
    capsys.readouterr()
    assert run_cli("audit", "--store", store, "--camera", "cam", "--json") == 0
    [rec] = [r for r in json.loads(capsys.readouterr().out)["records"] if r["action"] == "delete"]
    assert rec["actor"]["user"] == getpass.getuser()
    assert rec["actor"]["host"] == socket.gethostname()
    assert rec["actor"]["command"][:3] == ["vstore", "retention", "run"]
    assert "--max-age" in rec["actor"]["command"]
    assert rec["detail"]["overrides"] == {"max_age": "1d00h00m"}
    assert rec["detail"]["policy"]["max_age"] == "1d00h00m"
    assert run_cli("audit", "--store", store) == 0
    assert "overrides=max_age=1d00h00m" in capsys.readouterr().out
    assert run_cli("audit", "--store", store, "--camera", "nope") == 0
    assert "no audit records match" in capsys.readouterr().out


# --- clips that say what they hold ----------------------------------------------------------------


def _imported(tmp_path: Path, media, name: str = "honest.ts", seconds: float = 8.0, **spec) -> str:
    """A store (``tmp_path/<name stem>``) holding ``seconds`` of camsim footage imported
    as camera ``cam`` from 01:00:00Z (1 s GOPs unless ``gop_frames`` says otherwise)."""
    store = str(tmp_path / name.rsplit(".", 1)[0])
    src = media(name, seconds, **{"codec": "h264", "gop_frames": 25, **spec})
    argv = ["import", str(src), "--camera", "cam", "--start", "2025-01-17T01:00:00Z"]
    assert run_cli(*argv, "--store", store) == 0
    return store


def test_a_pipe_gets_the_same_frame_exact_mp4_as_a_file(tmp_path, media):
    from tests.test_never_lose_footage import ROOT

    store = _imported(tmp_path, media)
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:02.52Z", "--to", "2025-01-17T01:00:05Z"]
    f = tmp_path / "c.mp4"
    assert run_cli("clip", "--store", store, *rng, "-o", str(f)) == 0
    r = subprocess.run(
        [sys.executable, "-m", "vstore.cli.main", "clip", "--store", store, *rng, "-o", "-"],
        capture_output=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f.read_bytes()  # moov first, an edit list: not a fragmented MP4
    assert b"moof" not in r.stdout[:4096] and b"elst" in r.stdout


def test_clip_container_follows_the_file_name(tmp_path, media, capsys):
    store = _imported(tmp_path, media)
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:02Z", "--to", "2025-01-17T01:00:04Z"]
    for name, marker in (("c1.fmp4", b"moof"), ("c2.m4s", b"moof"), ("c3.ts", b"G")):
        assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / name)) == 0
        data = (tmp_path / name).read_bytes()
        assert (marker in data[:8192]) if marker != b"G" else data[0:1] == b"G"
    capsys.readouterr()
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "c.avi")) == 2
    assert "--format" in capsys.readouterr().err
    assert (
        run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "c.mkv"), "--format", "ts")
        == 0
    )


# --- damage is contained ------------------------------------------------------------------------


def _rot_chunk(store: str, index: int) -> tuple[int, int]:
    """Four bytes of the ``index``-th indexed chunk rot; its (start, end) is returned."""
    with open_store(store, read_only=True) as st:
        num = st.camera_num("cam")
        c = list(st.index.chunks(num, -(2**62), 2**62))[index]
        row = next(r for r in st.index.segments(num) if r.segment_id == c.segment_id)
        path = st.layout.path(row.path)
    raw = bytearray(path.read_bytes())
    for i in range(4):
        raw[c.offset + c.length // 2 + i] ^= 0xFF
    path.write_bytes(raw)
    return c.start_ns, c.end_ns


def test_a_damaged_chunk_is_a_gap_in_the_clip_not_a_failure(tmp_path, media, capsys):
    import json

    store = _imported(tmp_path, media)
    bad = _rot_chunk(store, 3)
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:01.5Z", "--to", "2025-01-17T01:00:06Z"]
    for name in ("c.mp4", "c.ts", "c.fmp4"):
        capsys.readouterr()
        out = tmp_path / name
        assert run_cli("clip", "--store", store, *rng, "-o", str(out), "--json") == 0
        doc = json.loads(capsys.readouterr().out)
        assert [(d["from_ns"], d["to_ns"]) for d in doc["damaged"]] == [bad], name
        assert out.stat().st_size > 0
    capsys.readouterr()
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "d.mp4")) == 0
    assert "DAMAGED" in capsys.readouterr().out
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "s.mp4"), "--strict") == 5


def test_check_repair_takes_a_damaged_chunk_out_and_keeps_the_rest_served(tmp_path, media, capsys):
    import json

    store = _imported(tmp_path, media)
    bad = _rot_chunk(store, 3)
    assert run_cli("check", "--store", store) == 8
    assert run_cli("check", "--store", store, "--repair") == 0
    assert run_cli("check", "--store", store) == 0  # known damage, recorded: not a new problem
    capsys.readouterr()
    assert run_cli("ls", "--store", store) == 0
    assert "(+1 damaged)" in capsys.readouterr().out
    capsys.readouterr()
    assert run_cli("timeline", "--store", store, "--camera", "cam", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(e["kind"] == "damaged" and e["at_ns"] == bad[0] for e in doc["events"])
    assert [(g["from_ns"], g["to_ns"]) for g in doc["gaps"]] == [bad]  # not covered
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:08Z"]
    capsys.readouterr()
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "c.mp4"), "--strict") == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "GAP" not in out  # the gap says it was damage
    with open_store(store) as st:
        assert any(a["action"] == "quarantine" for a in st.index.audit_records())
        segs = list(st.index.segments(st.camera_num("cam")))
        assert any(s.damaged for s in segs)
        assert st.layout.path(segs[0].path).exists()


# --- backfill: imports go before, between or after a camera's footage, never over it -----------


def test_import_backfills_gaps_and_refuses_only_real_overlaps(tmp_path, media, capsys):
    import json

    store = str(tmp_path / "bf")
    src = str(media("backfill.ts", 8.0, codec="h264", gop_frames=25))

    def imp(start: str, *extra: str) -> int:
        return run_cli("import", src, "--camera", "cam", "--start", start, "--store", store, *extra)

    assert imp("2025-01-17T01:00:20Z") == 0
    assert imp("2025-01-17T01:00:00Z") == 0  # before it
    assert imp("2025-01-17T01:00:10Z") == 0  # between: 10..18, before 20
    capsys.readouterr()
    assert imp("2025-01-17T01:00:02Z") == 2  # inside existing footage
    err = capsys.readouterr().err
    assert "already has footage at 2025-01-17T01:00:02" in err and "01:00:00" in err
    assert imp("2025-01-17T01:00:18.5Z", "--json") == 2  # 18.5..26.5 would run into 20..28
    assert "nothing was stored" in capsys.readouterr().out  # refused before writing
    with open_store(store) as st:
        rows = list(st.index.chunks(st.camera_num("cam"), -(2**62), 2**62))
        for a, b in itertools.pairwise(rows):
            assert a.end_ns <= b.start_ns  # nothing overlaps
        assert check_store(st).ok
        assert START_NS + 18_500_000_000 not in {c.start_ns for c in rows}
    assert run_cli("timeline", "--store", store, "--camera", "cam", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["covered"]) >= 2


# --- smaller things seen on the way ---------------------------------------------------------------


def test_a_failed_first_import_leaves_no_store_and_no_deep_directories(tmp_path, capsys):
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not a recording")
    store = tmp_path / "new"
    assert (
        run_cli("import", str(bad), "--camera", "c", "--start", "now", "--store", str(store)) == 6
    )
    assert not store.exists()
    deep = tmp_path / "no" / "such" / "store"
    assert run_cli("import", str(bad), "--camera", "c", "--start", "now", "--store", str(deep)) == 3
    assert not (tmp_path / "no").exists()


def test_clip_to_a_directory_says_so(tmp_path, capsys):
    with small_store(tmp_path) as st:
        record(st, 4)
    capsys.readouterr()
    argv = ["clip", "--store", str(tmp_path / "store"), "--camera", "cam"]
    argv += ["--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:02Z", "-o", str(tmp_path)]
    assert run_cli(*argv) == 2
    assert "is a directory" in capsys.readouterr().err


def test_record_takes_durations_like_every_other_command(tmp_path, capsys):
    argv = ["record", "--store", str(tmp_path / "s"), "--camera", "c", "tcp://127.0.0.1:9"]
    capsys.readouterr()
    assert run_cli(*argv, "--duration", "soon") == 2
    assert "90s, 15m or 2h" in capsys.readouterr().err


def test_hold_release_defaults_by_to_the_login_name_as_add_does(tmp_path, capsys):
    import getpass
    import json

    with small_store(tmp_path) as st:
        record(st, 4)
    store = str(tmp_path / "store")
    rng = ["--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:02Z"]
    assert run_cli("hold", "add", "--store", store, "--camera", "cam", *rng, "--reason", "x") == 0
    assert run_cli("hold", "release", "1", "--store", store) == 0
    capsys.readouterr()
    assert run_cli("hold", "list", "--all", "--camera", "cam", "--store", store, "--json") == 0
    [h] = json.loads(capsys.readouterr().out)["holds"]
    assert h["released_by"] == getpass.getuser()


def test_command_help_has_no_rst_markup(capsys):
    import pytest

    with pytest.raises(SystemExit):
        run_cli("check", "--help")
    assert "``" not in capsys.readouterr().out


def test_the_library_takes_datetimes_and_text_for_times(tmp_path):
    from datetime import UTC, datetime, timedelta, timezone

    import pytest

    from vstore import UsageError, to_ns

    assert to_ns(datetime(2025, 1, 17, 8, tzinfo=timezone(timedelta(hours=7)))) == START_NS
    assert to_ns("2025-01-17T01:00:00Z") == START_NS
    with pytest.raises(UsageError, match="time zone"):
        to_ns(datetime(2025, 1, 17, 1))  # naive: which zone?
    with small_store(tmp_path) as st:
        record(st, 4)
        a = datetime(2025, 1, 17, 1, 0, 1, tzinfo=UTC)
        res = st.clip("cam", a, "2025-01-17T01:00:03Z", out=tmp_path / "c.mp4")
        assert res.plan.start_ns == START_NS + GOP_NS


def _first_shown(path: Path) -> tuple[int, float | None]:
    """(frame counter of the first frame FFmpeg's decoder shows, first audio pts in s)."""
    import av

    from tools.camsim import read_frame_counter

    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        n = read_frame_counter(frame.to_ndarray(format="rgb24"))
    with av.open(str(path)) as c:
        audio = [s for s in c.streams if s.type == "audio"]
        first_audio = None
        if audio:
            pkt = next(p for p in c.demux(audio[0]) if p.pts is not None)
            first_audio = float(pkt.pts * pkt.time_base)
    return n, first_audio


def test_a_clip_between_frames_starts_on_the_frame_on_screen_like_a_snapshot(tmp_path, media):

    store = _imported(tmp_path, media)
    at = "2025-01-17T01:00:02.53Z"  # frames at .52 and .56 (25 fps): .52 is on screen
    assert run_cli("snapshot", "--store", store, "--camera", "cam", "--at", at,
                   "-o", str(tmp_path / "s.png")) == 0  # fmt: skip
    import av

    from tools.camsim import read_frame_counter

    with av.open(str(tmp_path / "s.png")) as c:
        snap = read_frame_counter(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    assert snap == 63
    out = tmp_path / "c.mp4"
    assert run_cli("clip", "--store", store, "--camera", "cam", "--from", at,
                   "--to", "2025-01-17T01:00:04Z", "-o", str(out)) == 0  # fmt: skip
    assert _first_shown(out)[0] == snap


def test_streaming_clips_tag_and_start_audio_at_their_first_frame(tmp_path, media, capsys):
    import av

    store = _imported(tmp_path, media, "withaudio.ts", gop_frames=50, audio="aac")
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:03.1Z", "--to", "2025-01-17T01:00:05Z"]
    starts = {}
    for name in ("c.fmp4", "c.ts"):
        out = tmp_path / name
        assert run_cli("clip", "--store", store, *rng, "-o", str(out)) == 0
        with av.open(str(out)) as c:
            tag = c.metadata.get("vstore_start")
            a = next(s for s in c.streams if s.type == "audio")
            pts = [float(p.pts * p.time_base) for p in c.demux(a) if p.pts is not None][:3]
        if name == "c.fmp4":  # the keyframe before 03.1 (2 s GOPs) is shown first, at 02
            assert tag == "2025-01-17T01:00:02.000+00:00"
        assert pts[0] < 0.2  # audio starts with the first frame, no hole
        assert abs((pts[1] - pts[0]) - (pts[2] - pts[1])) < 0.002  # no stretched first one
        starts[name] = pts[0]
    assert abs(starts["c.fmp4"] - starts["c.ts"]) < 0.002  # the same time in both


def test_g711_audio_is_kept_remuxed_in_a_mov_clip_and_the_mp4_says_where(tmp_path, media, capsys):
    import av

    store = _imported(tmp_path, media, "g711.mov", 6.0, audio="pcm_mulaw")
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:01.5Z", "--to", "2025-01-17T01:00:04Z"]
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "c.mov")) == 0
    with av.open(str(tmp_path / "c.mov")) as c:
        [a] = [s for s in c.streams if s.type == "audio"]
        assert a.codec_context.name == "pcm_mulaw" and a.codec_context.sample_rate == 8000
        assert sum(1 for p in c.demux(a) if p.size) > 0
    capsys.readouterr()
    assert run_cli("clip", "--store", store, *rng, "-o", str(tmp_path / "c.mp4")) == 0
    assert "--format mov" in capsys.readouterr().out


_PAGE = """<html><body><video id="v" src="clip.mp4" muted playsinline></video>
<canvas id="c"></canvas><pre id="out">pending</pre><script>
const v = document.getElementById('v');
v.addEventListener('loadeddata', () => { v.currentTime = 0; });
// A loaded machine can fire 'seeked' before the frame reaches the compositor, and the canvas
// then gets a blank picture: draw again until it holds one (or say it never did).
function draw(tries) {
  const c = document.getElementById('c');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let lit = false;
  for (let i = 0; i < px.length && !lit; i += 4) lit = px[i + 3] > 0 && (px[i] | px[i + 1] | px[i + 2]) > 0;
  if (lit) document.getElementById('out').textContent = c.toDataURL('image/png');
  else if (tries > 0) setTimeout(() => draw(tries - 1), 50);
  else document.getElementById('out').textContent = 'blank canvas';
}
v.addEventListener('seeked', () => draw(80));
v.addEventListener('error', () => {
  document.getElementById('out').textContent = 'failed ' + v.error.code;
});
</script></body></html>"""


def test_chromium_shows_the_frame_on_screen_at_the_clips_start_first(tmp_path, media):
    """The first frame a browser shows of a clip starting between two frames is the one a
    snapshot of that instant gives (Chromium, headless, drawing the video onto a canvas)."""
    import base64
    import functools
    import re
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import av
    import pytest

    from tools.camsim import read_frame_counter

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (see .ci/run)")
    store = _imported(tmp_path, media)
    site = tmp_path / "site"
    site.mkdir()
    argv = ["clip", "--store", store, "--camera", "cam", "--from", "2025-01-17T01:00:02.53Z"]
    assert run_cli(*argv, "--to", "2025-01-17T01:00:05Z", "-o", str(site / "clip.mp4")) == 0
    (site / "index.html").write_text(_PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        r = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
             "--virtual-time-budget=10000", "--dump-dom",
             f"http://127.0.0.1:{server.server_address[1]}/index.html"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", r.stdout)
    assert m, r.stdout[-2000:]
    png = tmp_path / "shown.png"
    png.write_bytes(base64.b64decode(m.group(1)))
    with av.open(str(png)) as c:
        shown = read_frame_counter(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    assert shown == 63  # the snapshot of 02.53 (25 fps: frame 63 shows from 02.52 to 02.56)


def test_tier_audit_records_name_the_command_and_the_age_that_decided(tmp_path, capsys):
    import json

    with small_store(tmp_path) as st:
        record(st, 12)
    store = str(tmp_path / "store")
    cold = str(tmp_path / "cold")
    assert run_cli("tier", "run", "--store", store, "--to", cold, "--older-than", "1s") == 0
    capsys.readouterr()
    assert run_cli("audit", "--store", store, "--json") == 0
    recs = [r for r in json.loads(capsys.readouterr().out)["records"] if r["action"] == "tier"]
    assert len(recs) == 3
    for r in recs:  # (uploads run on worker threads: the caller's actor goes with them)
        assert r["actor"]["command"][:3] == ["vstore", "tier", "run"]
        assert r["detail"]["decided_by"]["older_than"] == "1.0s"
        assert r["detail"]["decided_by"]["override"] is True


def test_a_writer_filling_a_gap_stops_at_the_footage_after_it(tmp_path):
    """The writer's own guard, for a file whose length was misstated."""
    import pytest

    from tests.crash_writer import FRAME, GOP, payload
    from vstore import Packet, TrackInfo, UsageError

    with small_store(tmp_path) as st:
        record(st, 4, start=START_NS + 20 * GOP_NS)
        video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
        w = st.writer("cam", [video], start_ns=START_NS + 18 * GOP_NS)
        with pytest.raises(UsageError, match="up to 2025-01-17T01:00:20"), w:
            for f in range(6 * GOP):
                w.write(Packet(0, f * FRAME, f * FRAME, f % GOP == 0, payload(f, f % GOP == 0)))
        starts = [c.start_ns for c in st.index.chunks(st.camera_num("cam"), 0, 2**62)]
        assert starts[:3] == [
            START_NS + 18 * GOP_NS,
            START_NS + 19 * GOP_NS,
            START_NS + 20 * GOP_NS,
        ]
        assert check_store(st).ok


def test_dry_run_trims_are_exactly_the_runs_even_for_a_segment_held_whole(tmp_path, capsys):
    import json

    from vstore.store.holds import add_hold

    with small_store(tmp_path, '[retention]\nmax_age = "1d"\n') as st:
        record(st, 12)  # segments 0-4, 4-8, 8-12 s
        add_hold(st, "cam", START_NS + 4 * GOP_NS, START_NS + 8 * GOP_NS, "whole", "ray")
        add_hold(st, "cam", START_NS + 9 * GOP_NS, START_NS + 10 * GOP_NS, "part", "ray")
    store = str(tmp_path / "store")
    for _ in range(2):  # and a second run: nothing more to trim, and it says so
        capsys.readouterr()
        assert run_cli("retention", "run", "--store", store, "--dry-run", "--json") == 0
        planned = json.loads(capsys.readouterr().out)["trims"]
        assert run_cli("retention", "run", "--store", store, "--json") == 0
        done = json.loads(capsys.readouterr().out)
        assert planned == done["trimmed_segments"]
    assert done["trimmed_segments"] == 0


def test_check_repair_never_claims_a_repair_the_next_check_contradicts(tmp_path, media, capsys):
    store = _imported(tmp_path, media)
    _rot_chunk(store, 3)
    with open_store(store, read_only=True) as st:
        [row] = list(st.index.segments(st.camera_num("cam")))[:1]
        path = st.layout.path(row.path)
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0xFF  # inside the trailer's hash
    path.write_bytes(raw)
    assert run_cli("check", "--store", store, "--repair") == 8
    assert "not repaired" in capsys.readouterr().out
    assert run_cli("check", "--store", store) == 8


def test_hold_list_filters_by_camera_and_time(tmp_path, capsys):
    import json

    with small_store(tmp_path) as st:
        record(st, 12)
    store = str(tmp_path / "store")
    for a, b in (("01:00:00", "01:00:02"), ("01:00:08", "01:00:10")):
        argv = ["--from", f"2025-01-17T{a}Z", "--to", f"2025-01-17T{b}Z", "--reason", "x"]
        assert run_cli("hold", "add", "--store", store, "--camera", "cam", *argv) == 0
    capsys.readouterr()
    argv = ["hold", "list", "--store", store, "--json", "--from", "2025-01-17T01:00:05Z"]
    assert run_cli(*argv) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["holds"]] == [2]


def test_snapshot_to_stdout(tmp_path, media):
    from tests.test_never_lose_footage import ROOT

    store = _imported(tmp_path, media)
    argv = ["snapshot", "--store", store, "--camera", "cam", "--at", "2025-01-17T01:00:02.53Z"]
    for fmt, magic in (("png", b"\x89PNG"), (None, b"\xff\xd8")):
        extra = ["--format", fmt] if fmt else []
        r = subprocess.run(
            [sys.executable, "-m", "vstore.cli.main", *argv, "-o", "-", *extra],
            capture_output=True, check=False, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(magic)


def test_a_configured_camera_without_footage_names_no_other_camera(tmp_path, media):
    """Its 404 (over HTTP too) says it has no footage; it never lists the store's cameras,
    which a principal scoped to some of them must not learn."""
    from vstore.base.errors import NotFound

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text('[cameras.new-cam]\nurl = "tcp://127.0.0.1:1"\n')
    with open_store(d) as st:
        import_file(st, media("hon-known.ts", 2.0, codec="h264", gop_frames=25), "secret-cam",
                    START_NS)  # fmt: skip
        with pytest.raises(NotFound) as exc:
            st.camera_num("new-cam")
    assert "no footage yet" in str(exc.value) and "secret-cam" not in str(exc.value)
