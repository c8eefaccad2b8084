"""Bad or mistyped command-line input: refused with one clear line and a meaningful exit
code before anything is saved, never a traceback, a new store at a typo, or footage moved to
the wrong place. Each test is named after the failure it guards against."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import pytest

from tests.conftest import START_NS
from tests.test_cli import seed
from vstore import _native
from vstore.api import open_store
from vstore.base.errors import UsageError
from vstore.base.timebase import MAX_TIME_NS, MIN_TIME_NS, TimeRange, parse_time_ns
from vstore.cli.main import _join_relative_times, main
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip
from vstore.ingest.file_import import import_file
from vstore.store.holds import list_holds
from vstore.tier.factory import open_tier

AFTER_2200 = "2300-01-01T00:00:00Z"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "text",
    [AFTER_2200, "1800-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "-50000d"],
)
def test_time_outside_the_stored_range_is_a_usage_error(text):
    with pytest.raises(UsageError, match="outside the range"):
        parse_time_ns(text)


def test_range_edges_are_accepted_and_a_range_no_key_holds_is_not():
    assert parse_time_ns("1900-01-01T00:00:00Z") == MIN_TIME_NS
    with pytest.raises(UsageError):
        parse_time_ns("2200-01-01T00:00:00Z")
    TimeRange(MAX_TIME_NS - 1, MAX_TIME_NS + 10**9)  # footage may run past 2200
    with pytest.raises(UsageError, match="index key"):
        TimeRange(MAX_TIME_NS, 1 << 63)
    with pytest.raises(UsageError, match="index key"):
        TimeRange(-(1 << 63) - 1, MIN_TIME_NS)


def test_hold_far_in_the_future_is_refused_before_it_is_recorded(store_dir, capsys):
    seed(store_dir)
    argv = ["hold", "add", "--store", str(store_dir), "--camera", "cam", "--reason", "x"]
    assert main([*argv, "--from", AFTER_2200, "--to", "2300-01-02T00:00:00Z"]) == 2
    assert "outside the range" in one_line_error(capsys)
    with open_store(store_dir, read_only=True) as st:
        assert list_holds(st, include_released=True) == []


def test_a_hold_job_over_the_api_keeps_to_the_instants_vstore_stores(store_dir):
    """A hold job took any 64-bit instants (the command's times are 1900..2200)."""
    from vstore.jobs import registry

    seed(store_dir)
    with open_store(store_dir) as st:
        for lo, hi in ((-(2**63), START_NS), (START_NS, 2**63 - 1)):
            params = {"action": "add", "camera": "cam", "from_ns": lo, "to_ns": hi,
                      "reason": "r", "by": "b"}  # fmt: skip
            with pytest.raises(UsageError, match="outside the range"):
                registry.run(st, "hold", params)
        assert list_holds(st, include_released=True) == []


def test_a_directory_tier_is_read_from_the_bucket_alone_as_s3_is(tmp_path, media, capsys):
    """`--store file:///DIR` was taken for the path `file:/DIR`: a directory tier (a target
    the README names) could not be read from its catalog alone, nor a store so written."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    src = media("dir-tier.ts", 8.0, gop_frames=25)
    assert main(["import", str(src), "--camera", "cam", "--start", "2025-01-17T01:00:00Z",
                 "--store", str(store)]) == 0  # fmt: skip
    cold = tmp_path / "cold"
    assert main(["tier", "run", "--store", str(store), "--to", f"file://{cold}",
                 "--older-than", "1s"]) == 0  # fmt: skip
    capsys.readouterr()
    for where in (f"file://{cold}", f"file://{store}"):
        assert main(["ls", "--store", where, "--json"]) == 0, where
        [cam] = json.loads(capsys.readouterr().out)["cameras"]
        assert cam["camera"] == "cam" and cam["segments"] == 2


def test_an_import_that_made_a_new_store_says_so(tmp_path, media, capsys):
    src = media("new-store.ts", 2.0, gop_frames=25)
    args = ["import", str(src), "--camera", "cam", "--start", "2025-01-17T01:00:00Z"]
    assert main([*args, "--store", str(tmp_path / "typo")]) == 0
    assert "there was no store at" in capsys.readouterr().err
    assert main([*args[:-1], "2025-01-17T02:00:00Z", "--store", str(tmp_path / "typo")]) == 0
    assert "no store" not in capsys.readouterr().err


def test_import_far_in_the_future_registers_no_camera(store_dir, media, capsys):
    seed(store_dir)
    src = media("bad-input.ts", 2.0, gop_frames=25)
    argv = ["import", str(src), "--store", str(store_dir), "--camera", "fut"]
    assert main([*argv, "--start", AFTER_2200]) == 2
    one_line_error(capsys)
    with open_store(store_dir) as st:
        assert [c.camera for c in st.cameras()] == ["cam"]
        with pytest.raises(UsageError, match="outside the range"):
            st.writer("fut", [], start_ns=10**19 // 2 * 2)  # the library refuses it too
        assert [c.camera for c in st.cameras()] == ["cam"]


@pytest.mark.parametrize("argv", [["timeline", "--from", AFTER_2200], ["timeline", "--to", AFTER_2200],
                                  ["snapshot", "--at", AFTER_2200, "-o", "x.jpg"]])  # fmt: skip
def test_reads_far_in_the_future_are_refused_not_crashed(store_dir, capsys, argv):
    seed(store_dir)
    assert main([*argv, "--store", str(store_dir), "--camera", "cam"]) == 2
    assert "outside the range" in one_line_error(capsys)


def test_key_codecs_refuse_a_time_that_would_wrap_around():
    for name, mods in _native.implementations().items():
        with pytest.raises(OverflowError):
            mods["keycodec"].encode_key(b"c", 1, 1 << 63)
        with pytest.raises(OverflowError):
            mods["keycodec"].encode_key(b"c", 1, -(1 << 63) - 1)
        assert mods["keycodec"].decode_key(mods["keycodec"].encode_key(b"c", 1, -5))[2] == -5, name


def test_mp4_clip_of_footage_from_before_1904_is_written(tmp_path, media):
    src = media("bad-input-old.ts", 2.0, gop_frames=25)
    start_1900 = parse_time_ns("1900-01-01T00:00:00Z")
    with open_store(tmp_path / "s") as st:
        import_file(st, src, "old", start_1900)
        plan = plan_clip(st, "old", start_1900 + 10**9, start_1900 + 2 * 10**9)
        write_clip(st, plan, tmp_path / "old.mp4")
    with av.open(str(tmp_path / "old.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 25


@pytest.mark.parametrize("url", ["ftp://x/y", "S3://bucket/p", "s3:/bucket", "http://h/b", " "])
def test_tier_url_that_is_not_s3_or_a_directory_is_refused(url):
    with pytest.raises(UsageError):
        open_tier(url)


def test_tier_run_to_an_unknown_scheme_moves_nothing(store_dir, tmp_path, capsys, monkeypatch):
    seed(store_dir)
    monkeypatch.chdir(tmp_path)
    argv = ["tier", "run", "--store", str(store_dir), "--older-than", "0s", "--to", "ftp://x/y"]
    assert main(argv) == 2
    assert "unsupported scheme" in one_line_error(capsys)
    assert not (tmp_path / "ftp:").exists()
    with open_store(store_dir, read_only=True) as st:
        assert st.cameras()[0].segments == 1


def test_a_relative_time_too_long_ago_says_so_not_that_it_is_malformed():
    with pytest.raises(UsageError, match="'-99999999d' is longer ago than vstore's time range"):
        parse_time_ns("-99999999d")


@pytest.mark.parametrize(
    "argv",
    [
        ["hold", "add", "--camera", "cam", "--from", "now", "--to=-1h", "--reason", "x"],
        ["hold", "add", "--camera", "cam", "--from=-1h", "--to", "now", "--reason", "x"],
        ["hold", "release", "1", "--by", "me"],
        ["retention", "run", "--dry-run"],
        ["tier", "run", "--dry-run", "--to", "/tmp/nowhere"],
    ],
)
def test_write_commands_never_create_a_store_at_a_mistyped_path(tmp_path, capsys, argv):
    typo = tmp_path / "typo"
    code = main([*argv, "--store", str(typo)])
    assert code in (2, 3)  # the inverted range of the first case is refused first
    one_line_error(capsys)
    assert not typo.exists()


def test_rebuild_index_from_a_missing_directory_creates_no_store(tmp_path, capsys):
    argv = ["rebuild-index", "--from", str(tmp_path / "nothing"), "--store", str(tmp_path / "s")]
    assert main(argv) == 3
    assert "no tier directory" in one_line_error(capsys)
    assert not (tmp_path / "s").exists()


def test_empty_store_path_is_refused_not_replaced_by_the_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["hold", "list", "--store", ""]) == 2
    assert "store path is empty" in one_line_error(capsys)
    assert not (tmp_path / "vstore-data").exists()


@pytest.mark.parametrize(
    "argv", [["ls"], ["hold", "add", "--camera", "c", "--from=-1h", "--to=now", "--reason", "r"]]
)
def test_store_path_that_is_a_file_says_so(tmp_path, capsys, argv):
    afile = tmp_path / "afile"
    afile.write_text("not a store")
    assert main([*argv, "--store", str(afile)]) == 3
    err = one_line_error(capsys)
    assert "not a vstore store" in err and ".tmp" not in err
    assert afile.read_text() == "not a store"


def test_a_clip_whose_reader_stops_early_is_no_success(store_dir, media):
    """`vstore clip -o - | head -c 100`: the clip was cut short and the command said 0, as
    for an `ls` piped to head. A clip its reader did not take whole is an error."""
    import os
    import subprocess
    import sys

    with open_store(store_dir) as st:
        import_file(st, media("pipe.ts", 12.0, gop_frames=25), "cam", START_NS)
    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen(
        [sys.executable, "-m", "vstore.cli.main", "clip", "--store", str(store_dir), "--camera",
         "cam", "--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:12Z", "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(root)),
    )  # fmt: skip
    assert p.stdout is not None and len(p.stdout.read(100)) == 100
    p.stdout.close()
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and b"before the clip was whole" in err, err


def test_clip_to_stdout_with_json_is_refused(store_dir, capsys):
    seed(store_dir)
    argv = ["clip", "--store", str(store_dir), "--camera", "cam", "--from", "2025-01-17T01:00:00Z"]
    assert main([*argv, "--to", "2025-01-17T01:00:02Z", "-o", "-", "--json"]) == 2
    captured = capsys.readouterr()
    assert "both want stdout" in captured.err
    assert json.loads(captured.out)["error"]["exit_code"] == 2  # stdout: one JSON document


def test_clip_over_an_existing_file_needs_overwrite(store_dir, tmp_path, capsys):
    seed(store_dir)
    out = tmp_path / "evidence.mp4"
    out.write_bytes(b"earlier export")
    argv = ["clip", "--store", str(store_dir), "--camera", "cam", "--from", "2025-01-17T01:00:00Z"]
    argv += ["--to", "2025-01-17T01:00:02Z", "-o", str(out)]
    assert main(argv) == 2
    assert "exists" in one_line_error(capsys)
    assert out.read_bytes() == b"earlier export"
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() != b"earlier export"


@pytest.mark.parametrize("duration", ["nan", "inf", "-1", "0"])
def test_record_duration_that_is_not_a_positive_number_is_refused(store_dir, capsys, duration):
    argv = ["record", "tcp://127.0.0.1:1", "--camera", "a", "--store", str(store_dir)]
    assert main([*argv, f"--duration={duration}"]) == 2
    assert "--duration" in one_line_error(capsys)


def test_record_stops_at_its_duration_while_a_refused_source_backs_off(store_dir, capsys):
    # Backoffs of 0.5, 1, 2, 4 s: uncapped, the last one would end the run at 7.5 s.
    argv = ["record", "tcp://127.0.0.1:1", "--camera", "a", "--store", str(store_dir)]
    t0 = time.monotonic()
    assert main([*argv, "--duration", "3.6"]) == 6  # recorded nothing: source unreadable
    assert time.monotonic() - t0 < 5.5


def test_relative_times_may_follow_their_option_after_a_space():
    assert _join_relative_times(["clip", "--from", "-10m", "--to", "-5m", "-o", "-"]) == [
        "clip", "--from=-10m", "--to=-5m", "-o", "-"]  # fmt: skip
    assert _join_relative_times(["snapshot", "--at", "-5m"]) == ["snapshot", "--at=-5m"]
    assert _join_relative_times(["x", "--from", "-v"]) == ["x", "--from", "-v"]  # not a time


def test_readme_style_relative_range_reaches_the_command(store_dir, capsys):
    seed(store_dir)
    argv = ["timeline", "--store", str(store_dir), "--camera", "cam", "--from", "-1h"]
    assert main(argv) == 3  # parsed (not argparse's exit 2): there is no footage in the last hour
    assert "no footage from" in one_line_error(capsys)


def test_json_error_is_one_json_document_on_stdout(tmp_path, capsys):
    assert main(["ls", "--store", str(tmp_path / "none"), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["command"] == "ls" and doc["error"]["exit_code"] == 3
    assert "no store" in doc["error"]["message"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["cluster", "stauts", "--json"], "invalid choice: 'stauts'"),
        (["node", "drain", "--json"], "required: NAME"),
        (["ls", "--json", "--jsn"], "unrecognized arguments: --jsn"),
    ],
)
def test_a_usage_error_under_json_is_a_json_document_too(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["exit_code"] == 2 and says in doc["error"]["message"]


@pytest.mark.parametrize(
    "argv",
    [
        ["retention", "run", "--dry-run", "--camera", "nosuch"],
        ["tier", "run", "--dry-run", "--to", "/tmp/t", "--camera", "nosuch"],
        ["hold", "add", "--camera", "nosuch", "--from=-1h", "--to=now", "--reason", "r"],
    ],
)
def test_unknown_camera_in_a_job_is_not_found_not_a_silent_no_op(store_dir, capsys, argv):
    seed(store_dir)
    assert main([*argv, "--store", str(store_dir)]) == 3
    assert "unknown camera 'nosuch'" in one_line_error(capsys)
    with open_store(store_dir, read_only=True) as st:
        assert list_holds(st, include_released=True) == []


def test_timeline_with_no_footage_in_an_open_range_is_not_found(store_dir, capsys):
    seed(store_dir)
    base = ["timeline", "--store", str(store_dir), "--camera", "cam"]
    assert main([*base, "--from", "2026-01-01T00:00:00Z"]) == 3  # after the footage
    assert "no footage from 2026" in one_line_error(capsys)
    assert main([*base, "--to", "2020-01-01T00:00:00Z"]) == 3  # before it
    assert "no footage up to 2020" in one_line_error(capsys)
    # A range given in full is shown, even when all of it is a gap.
    assert main([*base, "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-01T00:01:00Z"]) == 0
    assert "GAP" in capsys.readouterr().out
    assert main([*base, "--from", ""]) == 2  # empty is a bad time, not "not given"
    one_line_error(capsys)


def test_import_of_garbage_names_the_problem_without_an_errno(store_dir, tmp_path, capsys):
    bad = tmp_path / "garbage.ts"
    bad.write_bytes(b"\x00\x01garbage" * 1000)
    argv = ["import", str(bad), "--camera", "x", "--start", "now", "--store", str(store_dir)]
    assert main(argv) == 6
    err = one_line_error(capsys)
    assert "not a recording FFmpeg can read" in err and "Errno" not in err


def test_snapshot_into_a_missing_directory_is_a_clear_error(store_dir, tmp_path, media, capsys):
    with open_store(store_dir) as st:
        import_file(st, media("bad-input.ts", 2.0, gop_frames=25), "cam", START_NS)
    out = tmp_path / "nodir" / "f.jpg"
    argv = ["snapshot", "--store", str(store_dir), "--camera", "cam", "-o", str(out)]
    assert main([*argv, "--at", "2025-01-17T01:00:01Z"]) == 1
    assert "cannot write the snapshot" in one_line_error(capsys)


def test_seeded_footage_is_where_these_tests_assume():
    assert parse_time_ns("2025-01-17T01:00:00Z") == START_NS


def _faststart_copy(src, dst) -> None:
    """Remux with the index (moov) first, as cameras and exporters often write MP4."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = s
                o.mux(pkt)


def test_import_of_a_truncated_mp4_warns_that_footage_is_missing(tmp_path, media, capsys):
    whole = tmp_path / "whole.mp4"
    _faststart_copy(media("bad-input-long.mp4", 6.0, gop_frames=25), whole)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    base = ["import", "--store", str(tmp_path / "s"), "--json", "--start"]
    assert main([*base, "2025-01-17T01:00:00Z", str(whole), "--camera", "whole"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    assert main([*base, "2025-01-17T01:00:00Z", str(cut), "--camera", "cut"]) == 0
    captured = capsys.readouterr()
    (warning,) = json.loads(captured.out)["warnings"]
    assert "declares 6.0 s of pictures" in warning and "truncated" in warning
    assert "may be truncated" in captured.err


def test_sound_running_on_past_the_last_picture_is_no_truncation(tmp_path, media, capsys):
    """A whole MP4 whose sound lasts 2 s longer than its pictures was said to be truncated
    ("declares 6.0 s but only 4.0 s could be read"): its length counts the sound."""
    src = media("bad-input-sound-tail.mp4", 6.0, gop_frames=25, audio="aac")
    out = tmp_path / "tail.mp4"
    with av.open(str(src)) as i, av.open(str(out), "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        a = o.add_stream_from_template(i.streams.audio[0])
        for pkt in i.demux():
            if pkt.dts is None:
                continue
            is_video = pkt.stream.type == "video"
            if is_video and pkt.pts * pkt.time_base >= 4:
                continue  # (pictures end at 4 s, sound runs on to 6 s)
            pkt.stream = v if is_video else a
            o.mux(pkt)
    args = ["import", "--store", str(tmp_path / "s"), "--json", "--start", "2025-01-17T01:00:00Z"]
    assert main([*args, str(out), "--camera", "cam"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


@pytest.mark.parametrize("text", ["-1x", "-", "--5m"])
def test_bad_relative_time_is_named_as_the_user_typed_it(text):
    with pytest.raises(UsageError, match=f"bad relative time '{text}'"):
        parse_time_ns(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["retention", "run", "--dry-run", "--max-age", "nan"],
        ["retention", "run", "--dry-run", "--max-age", "1e30"],
        ["retention", "run", "--dry-run", "--max-age", "inf"],
        ["retention", "run", "--dry-run", "--max-age", "30"],  # a bare number: seconds?
        ["retention", "run", "--dry-run", "--max-age", "0d"],  # would delete everything
        ["retention", "run", "--dry-run", "--max-bytes", "0"],
        ["retention", "run", "--every", "nan", "--max-age", "30d"],
        ["retention", "run", "--every", "1e30", "--max-age", "30d"],
        ["tier", "run", "--dry-run", "--to", "/tmp/t", "--older-than", "nan"],
        ["tier", "run", "--dry-run", "--to", "/tmp/t", "--older-than", "7"],
    ],
)
def test_policy_duration_that_is_not_a_sane_age_is_refused_before_any_deletion(
    store_dir, capsys, argv
):
    seed(store_dir)
    assert main([*argv, "--store", str(store_dir)]) == 2
    one_line_error(capsys)
    with open_store(store_dir, read_only=True) as st:
        assert st.cameras()[0].segments == 1  # nothing deleted, nothing moved


@pytest.mark.parametrize(
    "toml", ["max_age = 30\n", 'max_age = "0d"\n', "max_bytes = 0\n", 'tiered_max_age = "5"\n']
)
def test_config_retention_that_would_delete_everything_is_a_config_error(store_dir, capsys, toml):
    seed(store_dir)
    (store_dir / "vstore.toml").write_text("[retention]\n" + toml)
    assert main(["retention", "run", "--dry-run", "--store", str(store_dir)]) == 2
    assert "retention" in one_line_error(capsys)


@pytest.mark.parametrize("hold_id", ["-1", "0", "99999999999999999999999"])
def test_hold_release_of_an_impossible_id_is_not_found(store_dir, capsys, hold_id):
    seed(store_dir)
    assert main(["hold", "release", hold_id, "--by", "me", "--store", str(store_dir)]) == 3
    assert f"no hold #{hold_id}" in one_line_error(capsys)


def test_hold_release_reason_is_kept_and_shown(store_dir, capsys):
    seed(store_dir)
    base = ["hold", "--store", str(store_dir)]
    assert main(["hold", "add", "--store", str(store_dir), "--camera", "cam", "--from",
                 "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:02Z", "--reason",
                 "case 7", "--by", "ann"]) == 0  # fmt: skip
    assert main(["hold", "release", "1", "--by", "bo", "--reason", "case closed",
                 "--store", str(store_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*base[:1], "list", "--all", "--json", *base[1:]]) == 0
    (h,) = json.loads(capsys.readouterr().out)["holds"]
    assert (h["reason"], h["release_reason"]) == ("case 7", "case closed")
    assert main(["audit", "--store", str(store_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    release_line = next(ln for ln in lines if ln.split()[2] == "hold_release")  # the action
    assert "release_reason=case closed" in release_line and "case 7" not in release_line


def test_hold_add_with_an_empty_by_is_refused(store_dir, capsys):
    seed(store_dir)
    assert main(["hold", "add", "--store", str(store_dir), "--camera", "cam", "--from=-1h",
                 "--to=now", "--reason", "r", "--by", ""]) == 2  # fmt: skip
    one_line_error(capsys)


def test_meta_json_that_is_not_an_object_is_corrupt_not_a_traceback(store_dir, capsys):
    seed(store_dir)
    (store_dir / "meta.json").write_text("[1, 2]\n")
    assert main(["ls", "--store", str(store_dir)]) == 5
    assert "meta.json is unreadable" in one_line_error(capsys)


def _only_segment(store_dir):
    (seg,) = sorted((store_dir / "segments").rglob("*.vseg"))
    return seg


@pytest.mark.parametrize("how", ["other-camera", "renamed-id", "copy-same-id"])
def test_check_repair_does_not_adopt_a_file_whose_name_and_header_disagree(store_dir, capsys, how):
    seed(store_dir)
    seg = _only_segment(store_dir)
    start_s, seg_id = seg.stem.split("-")
    if how == "other-camera":
        dest = store_dir / "segments" / "newcam" / "2025" / "01" / "18" / seg.name
    elif how == "renamed-id":
        dest = seg.with_name(f"{start_s}-{int(seg_id, 16) + 0x50:016x}.vseg")
    else:  # the same name in another day's directory: same id as the indexed one
        dest = seg.parent.parent / "18" / seg.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(seg.read_bytes())
    with open_store(store_dir, read_only=True) as st:
        before = [(c.camera, c.segments, c.recorded_ns) for c in st.cameras()]
    assert main(["check", "--repair", "--store", str(store_dir)]) == 8
    assert "not adopted" in capsys.readouterr().out
    with open_store(store_dir, read_only=True) as st:
        assert [(c.camera, c.segments, c.recorded_ns) for c in st.cameras()] == before


def test_camera_id_that_looks_like_a_segment_file_is_refused(store_dir, capsys):
    assert main(["record", "tcp://127.0.0.1:1", "--camera", "x.vseg", "--store",
                 str(store_dir)]) == 2  # fmt: skip
    assert "may not end in .vseg" in one_line_error(capsys)


def test_record_refuses_one_camera_id_twice_before_recording(store_dir, capsys):
    argv = ["record", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "--camera", "a", "--camera", "a"]
    assert main([*argv, "--store", str(store_dir), "--duration", "5"]) == 2
    assert "more than once" in one_line_error(capsys)


@pytest.mark.parametrize("url", ["s3://", "s3:///x"])
def test_s3_url_without_a_bucket_is_a_usage_error(url):
    with pytest.raises(UsageError, match="no bucket"):
        open_tier(url)


def test_times_in_a_zone_with_a_seconds_offset_print_as_iso_8601():
    from zoneinfo import ZoneInfo

    from vstore.base.timebase import format_time

    t = parse_time_ns("1900-01-01T00:00:00Z")
    text = format_time(t, ZoneInfo("Asia/Bangkok"))  # local mean time then: +06:42:04
    assert text.endswith("+06:42") and parse_time_ns(text) == t


def test_import_start_may_be_relative_after_a_space():
    assert _join_relative_times(["import", "f.ts", "--start", "-1h"]) == [
        "import", "f.ts", "--start=-1h"]  # fmt: skip


def test_every_engine_error_has_the_exit_code_the_readme_documents():
    import re

    from vstore.base import errors
    from vstore.cli.exit_codes import exit_code_of

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    line = readme[readme.index("Exit codes: 0 ok") :].split("\n\n")[0]
    documented = {int(n) for n in re.findall(r"(\d+) [a-z`]", line)}
    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    codes = {c.__name__: exit_code_of(c) for c in classes if issubclass(c, errors.VstoreError)}
    assert set(codes.values()) | {0} == documented, codes
    assert codes["StoreReadOnly"] == 1 and codes["NotFound"] == 3


def test_an_error_a_job_server_reports_is_rebuilt_as_its_own_class():
    from vstore.base.errors import NotFound, VstoreError, error_class

    assert error_class("NotFound") is NotFound
    assert error_class("NoSuchError") is VstoreError


def test_an_endpoint_that_is_not_a_url_is_a_usage_error(monkeypatch, capsys):
    """`AWS_ENDPOINT_URL=127.0.0.1:9000` (the scheme forgotten): one line, exit 2."""
    from vstore.cli.main import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    assert main(["ls", "--store", "s3://cctv/site-a"]) == 2
    err = capsys.readouterr().err
    assert "must be a URL such as http://" in err and "Traceback" not in err


def test_a_bucket_given_to_a_command_that_needs_a_store_is_named_as_such(capsys):
    from vstore.cli.main import main

    assert main(["hold", "list", "--store", "s3://cctv/site-a"]) == 2
    assert "is a bucket: ls, timeline, clip, snapshot and verify" in capsys.readouterr().err
    assert main(["ls", "--store", "S3://cctv/site-a"]) == 2
    assert "a bucket is written s3://BUCKET/PREFIX" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["clip", "snapshot"])
def test_video_to_a_terminal_is_refused(store_dir, command):
    """`-o -` with stdout a terminal would spray binary over it: refused, exit 2."""
    import os
    import pty
    import subprocess
    import sys

    seed(store_dir)
    argv = [sys.executable, "-m", "vstore.cli.main", command, "--store", str(store_dir)]
    argv += ["--camera", "cam", "-o", "-"]
    if command == "clip":
        argv += ["--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:02Z"]
    else:
        argv += ["--at", "2025-01-17T01:00:01Z"]
    primary, secondary = pty.openpty()
    try:
        r = subprocess.run(argv, stdout=secondary, stderr=subprocess.PIPE, text=True, check=False)
    finally:
        os.close(secondary)
        os.close(primary)
    assert r.returncode == 2 and "which is a terminal" in r.stderr


def test_import_inputs_named_as_a_new_user_meets_them(store_dir, media, tmp_path, capsys):
    """A raw H.264 stream (no timestamps) is refused saying so, and leaves no camera behind;
    footage that would run past now is refused before anything is stored; the least
    --max-rate is named; a lower-case Z is an offset; a package that is not there is
    not found (3)."""
    seed(store_dir)
    src = media("raw-src.ts", 2.0, gop_frames=25)
    raw = tmp_path / "cam.264"
    with av.open(str(src)) as i, av.open(str(raw), "w", format="h264") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(video=0):
            if pkt.size:
                pkt.stream = out
                o.mux(pkt)
    base = ["import", "--store", str(store_dir), "--start", "2025-01-17T01:00:00z"]
    assert main([*base, str(raw), "--camera", "raw"]) == 6
    assert "raw H.264/H.265 stream carries no timestamps" in one_line_error(capsys)
    future = ["import", "--store", str(store_dir), "--start", "now", "--camera", "fut"]
    assert main([*future, str(media("long.mp4", 5.0, gop_frames=25))]) == 2
    assert "after now" in one_line_error(capsys)
    with open_store(store_dir, read_only=True) as st:
        assert [c.camera for c in st.cameras()] == ["cam"]
    assert main([*base, str(src), "--camera", "slow", "--max-rate", "30KB"]) == 2
    assert "least rate, 64KB a second" in one_line_error(capsys)
    assert main([*base, str(src), "--camera", "paced", "--max-rate", "64KB", "--json"]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "no-such.zip")]) == 3
    assert "does not exist" in one_line_error(capsys)


def test_sound_vstore_cannot_keep_or_deliver_is_named_on_stderr(store_dir, media, tmp_path, capsys):
    """Sound an import leaves out (MP2 here) is a warning on stderr, not a line among the
    results; 16-bit PCM is stored and a MOV clip delivers it."""
    import numpy as np

    src = media("pcm-src.mp4", 3.0, gop_frames=25)
    mov = tmp_path / "old-dvr.mov"
    with av.open(str(src)) as i, av.open(str(mov), "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        sounds = [o.add_stream(codec, rate=48000, layout="mono") for codec in ("pcm_s16le", "mp2")]
        for pkt in i.demux(video=0):
            if pkt.size:
                pkt.stream = v
                o.mux(pkt)
        for s in sounds:
            for k in range(3 * 48000 // 1152):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), "s16", "mono")
                frame.sample_rate, frame.pts = 48000, k * 1152
                o.mux(s.encode(frame))
            o.mux(s.encode(None))
    base = ["--store", str(store_dir), "--camera", "dvr"]
    assert main(["import", str(mov), *base, "--start", "2025-01-17T01:00:00Z"]) == 0
    out = capsys.readouterr()
    assert "warning: ignored audio stream 2 (mp2): not stored" in out.err
    clip = tmp_path / "c.mov"
    argv = ["clip", *base, "--from", "2025-01-17T01:00:01Z", "--to", "2025-01-17T01:00:02Z"]
    assert main([*argv, "-o", str(clip)]) == 0
    with av.open(str(clip)) as c:
        assert [s.codec_context.name for s in c.streams] == ["h264", "pcm_s16le"]


def test_relative_times_of_one_command_count_from_one_instant(store_dir, capsys):
    """`--from -50s --to -20s` spanned 30.0017 s: each relative time read the clock anew."""
    seed(store_dir)
    argv = ["timeline", "--store", str(store_dir), "--camera", "cam", "--json"]
    assert main([*argv, "--from", "-50s", "--to", "-20s"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [gap] = doc["gaps"]
    assert gap["to_ns"] - gap["from_ns"] == 30 * 10**9


def test_log_lines_carry_iso_8601_times_with_their_offset():
    import re
    import subprocess
    import sys

    code = ("from vstore.base.logger import configure; import logging; "
            "configure(20, '%(asctime)s %(levelname)s %(message)s'); "
            "logging.getLogger('x').warning('hi')")  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True).stderr  # fmt: skip
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d WARNING hi$", err), err
