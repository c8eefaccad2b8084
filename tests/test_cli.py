"""The `vstore` command: exit codes that mean something, readable text, parseable --json,
and a clear one-line error (never a traceback) for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import START_NS
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.api import open_store
from vstore.cli.main import COMMANDS, main


def seed(store_dir, cam="cam", n=100, start=START_NS):
    with open_store(store_dir) as st, st.writer(cam, [VIDEO], start_ns=start) as w:
        for i in range(n):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data))


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: vstore " + cmd in capsys.readouterr().out


def test_help_wraps_at_the_terminal_width_without_importing_shutil():
    """The parser gets its width itself (COLUMNS, the terminal, 80): argparse's own lookup
    imports shutil with bz2 and lzma, ~4 ms of every short command's start-up."""
    code = (
        "import sys\n"
        "from vstore.cli.main import build_parser\n"
        "parser, _ = build_parser('hold')\n"
        "parser.parse_args(['hold', 'add', '--camera', 'c', '--from', 'now', '--to', 'now',"
        " '--reason', 'r'])\n"
        "assert 'shutil' not in sys.modules, 'shutil imported'\n"
        "parser.parse_args(['hold', 'add', '--help'])\n"
    )
    for cols in (50, 120):
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": str(cols)},
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("usage: vstore hold add")
        assert max(map(len, lines)) <= cols - 2
        assert max(map(len, lines)) > 40


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_ls_text_and_json(store_dir, capsys):
    seed(store_dir)
    assert main(["ls", "--store", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "cam" in out and "2025-01-17T01:00:00.000+00:00" in out
    assert main(["ls", "--store", str(store_dir), "--json", "--tz", "Asia/Bangkok"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [cam] = doc["cameras"]
    assert cam["camera"] == "cam" and cam["segments"] == 1 and cam["gaps"] == 0
    assert cam["first_ns"] == START_NS


def test_ls_prints_times_in_requested_zone(store_dir, capsys):
    seed(store_dir)
    assert main(["ls", "--store", str(store_dir), "--tz", "Asia/Bangkok"]) == 0
    assert "2025-01-17T08:00:00.000+07:00" in capsys.readouterr().out


def test_timeline_json_lists_gaps(store_dir, capsys):
    seed(store_dir, n=50)
    seed(store_dir, n=50, start=START_NS + 60 * 10**9)
    assert main(["timeline", "--store", str(store_dir), "--camera", "cam", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["covered"]) == 2 and len(doc["gaps"]) == 1
    assert doc["gaps"][0]["from"] == "2025-01-17T01:00:02.000+00:00"
    assert [e["kind"] for e in doc["events"]] == ["gap"]


@pytest.mark.parametrize(
    "argv,code,msg",
    [
        (["timeline", "--camera", "nope"], 3, "unknown camera 'nope'"),
        (["timeline", "--camera", "cam", "--from", "2025-01-17T08:00:00"], 2, "no UTC offset"),
        (["timeline", "--camera", "cam", "--from", "now", "--to=-1h"], 2, "after --from"),
        (["import", "/nonexistent.mp4", "--camera", "x", "--start", "now"], 6, "no such file"),
        (["import", "/nonexistent.mp4", "--camera", "bad id", "--start", "now"], 2, "camera id"),
        (["ls", "--tz", "Mars/Olympus"], 2, "time zone"),
        (["record", "tcp://127.0.0.1:1", "--camera", "a", "--camera", "b"], 2, "one --camera"),
    ],
)
def test_bad_input_gets_exit_code_and_one_line(store_dir, capsys, argv, code, msg):
    seed(store_dir)
    assert main([*argv, "--store", str(store_dir)]) == code
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_missing_store_is_not_found(tmp_path, capsys):
    assert main(["ls", "--store", str(tmp_path / "none")]) == 3
    assert "no store" in capsys.readouterr().err


def test_garbage_file_import_is_a_clear_error(store_dir, tmp_path, capsys):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 1000)
    assert (
        main(["import", str(bad), "--camera", "x", "--start", "now", "--store", str(store_dir)])
        == 6
    )
    err = capsys.readouterr().err
    assert "cannot open" in err and "Traceback" not in err


def test_second_writer_process_is_locked_out_but_readers_work(store_dir):
    seed(store_dir)
    with open_store(store_dir):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "vstore.cli.main",
                "record",
                "tcp://127.0.0.1:9",
                "--camera",
                "x",
                "--store",
                str(store_dir),
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        assert r.returncode == 4, r.stderr
        assert "open for writing by another process" in r.stderr
        r = subprocess.run(
            [sys.executable, "-m", "vstore.cli.main", "ls", "--store", str(store_dir), "--json"],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["cameras"][0]["camera"] == "cam"


def test_init_writes_template(tmp_path, capsys):
    d = tmp_path / "s"
    assert main(["init", "--store", str(d)]) == 0
    assert (d / "vstore.toml").read_text().startswith("# vstore store configuration")


def _vstore(*argv: str) -> subprocess.CompletedProcess:
    """A fresh `vstore` process through the console entry point (fast exit included)."""
    return subprocess.run(
        [sys.executable, "-c", "from vstore.cli.main import entry; entry()", *argv],
        capture_output=True,
        check=False,
        timeout=120,
    )


def test_quick_exit_loses_no_piped_output(store_dir):
    """A quick command skips interpreter teardown: its stdout must still arrive whole."""
    from vstore.base.timebase import format_time

    seed(store_dir, n=500)
    rng = ["--from", format_time(START_NS), "--to", format_time(START_NS + 20 * 10**9)]
    r = _vstore(
        "clip", "--store", str(store_dir), "--camera", "cam", *rng, "-o", "-", "--format", "ts"
    )
    assert r.returncode == 0, r.stderr
    with open_store(store_dir, read_only=True) as st:
        from vstore.export.clip import clip_bytes

        want = b"".join(clip_bytes(st, "cam", START_NS, START_NS + 20 * 10**9, format="ts"))
    assert len(want) > 64 * 1024  # more than one pipe buffer
    assert r.stdout == want
    r = _vstore("ls", "--store", str(store_dir), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["cameras"][0]["camera"] == "cam"


def test_quick_exit_keeps_exit_codes(store_dir):
    seed(store_dir)
    r = _vstore("clip", "--store", str(store_dir), "--camera", "nope", "--from=-1h", "--to=now")
    assert r.returncode == 2 and r.stderr == b"vstore clip: error: give -o FILE (or --plan)\n"
    r = _vstore(
        "clip", "--store", str(store_dir), "--camera", "nope", "--from=-1h", "--to=now", "--plan"
    )
    assert r.returncode == 3 and b"Traceback" not in r.stderr
    assert b"nope" in r.stderr


def test_quick_exit_reports_output_it_could_not_write(store_dir):
    """Skipping teardown must not hide a failed final flush: stdout on a full device."""
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    seed(store_dir)
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "from vstore.cli.main import entry; entry()",
                "ls",
                "--store",
                str(store_dir),
                "--json",
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            check=False,
            timeout=120,
        )
    assert r.returncode == 7  # disk full
    assert b"No space left" in r.stderr and b"Traceback" not in r.stderr


def test_reports_show_wall_clock_fields_as_iso_text_beside_the_integer():
    from vstore.base.jsonio import to_jsonable
    from vstore.store.holds import Hold

    doc = to_jsonable(Hold(1, "cam", 0, 10**18, "case 7", "ann", 5 * 10**17))
    assert doc["from"] == "1970-01-01T00:00:00.000+00:00" and doc["from_ns"] == 0
    assert doc["to"].startswith("2001-09-09T01:46:40") and doc["released"] is None
    assert doc["active"] is True and doc["reason"] == "case 7"
    assert "reason_ns" not in doc and "id" in doc


def test_a_progress_bar_only_moves_forward_and_stays_within_its_total():
    """An import reports its audio's times too: the first comes before the first frame (an
    AAC priming frame) and later ones a little out of order; the bar shows none of that."""
    from vstore.cli.common import Progress

    class Bar:
        n: float = 0
        total: float | None = None

        def refresh(self) -> None:
            pass

    bar = Bar()
    p = Progress(bar)
    p(-0.021333333333333333, 120.0)
    assert bar.n == 0 and bar.total == 120.0
    p(119.55199999999999)
    assert bar.n == 119.6
    p(119.4)
    assert bar.n == 119.6
    p(121.0)
    assert bar.n == 120.0
