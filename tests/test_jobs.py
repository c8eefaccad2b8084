"""Operators' jobs on a store another process holds open for writing (`vstore record`, an
embedding recorder, `vstore serve`): `hold`, `retention run`, `tier run`, `import` and
`check --repair` go through its Unix socket instead of failing with exit code 4, keep their
output, progress and exit codes, are cancelled when their client is interrupted, and never
hang on a holder that is gone (lifecycle J1-J3)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import START_NS
from tests.test_cli import seed
from tools.camsim import StreamSpec, TcpCamera
from vstore.api import open_store
from vstore.base.errors import Cancelled, NotFound, StoreLocked, UsageError, VstoreError
from vstore.base.timebase import format_time
from vstore.cli.main import main
from vstore.jobs import registry
from vstore.service import job_client
from vstore.service.job_server import JobServer
from vstore.store.holds import list_holds

SPEC = StreamSpec(width=320, height=240, fps=25, gop_frames=25)


def _slow_job(store, params, progress):
    for i in range(int(params["steps"])):
        time.sleep(0.05)
        if progress is not None:
            progress(i + 1, int(params["steps"]))
    return {"steps": params["steps"]}


# A job only these tests know: the table is plain data, so a test adds to it.
registry.JOBS["test-slow"] = _slow_job


def _recorder(store_dir, url: str) -> subprocess.Popen:
    """`vstore record` in its own process, once it serves its socket and records "cam"."""
    p = subprocess.Popen(
        [sys.executable, "-m", "vstore.cli.main", "record", url, "--camera", "cam",
         "--duration", "90", "--store", str(store_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            pytest.fail(f"the recorder exited: {p.communicate()}")
        if job_client.answers(store_dir / "vstore.sock"):
            try:
                with open_store(store_dir, read_only=True) as st:
                    if [c.camera for c in st.cameras()] == ["cam"]:
                        return p
            except VstoreError:
                pass  # the index is being created
        time.sleep(0.2)
    p.kill()
    pytest.fail("the recorder did not start serving in 30 s")


def _stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)


def test_every_writing_command_reaches_a_store_that_a_recorder_holds(
    store_dir, tmp_path, media, capsys, monkeypatch
):
    src = media("jobs-import.ts", 4.0, codec="h264", gop_frames=25)
    with TcpCamera(SPEC) as cam:
        p = _recorder(store_dir, cam.url)
        try:
            base = ["--store", str(store_dir)]
            add = ["hold", "add", "--camera", "cam", "--from=-1h", "--to=now", "--reason", "case 9"]
            assert main([*add, *base]) == 0
            assert "hold #1 placed on cam" in capsys.readouterr().out
            assert main(["retention", "run", "--dry-run", "--max-age", "1d", "--json", *base]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["dry_run"] and doc["segments"] == 0
            # An error in the recorder comes back with its exit code, as one line.
            assert main(["hold", "add", "--camera", "nosuch", "--from=-1h", "--to=now",
                         "--reason", "r", *base]) == 3  # fmt: skip
            assert "unknown camera 'nosuch'" in capsys.readouterr().err
            assert main(["hold", "release", "1", "--by", "bo", "--reason", "done", *base]) == 0
            assert "hold #1 released by bo" in capsys.readouterr().out
            # The import runs in the recorder, from the file's absolute path.
            imp = ["import", str(src), "--camera", "old", "--start", format_time(START_NS)]
            assert main([*imp, "--json", *base]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["camera"] == "old" and doc["segments"] >= 1 and doc["file"] == str(src)
            assert main([*imp, *base]) == 2  # the same range again: refused, as locally
            assert "already has footage" in capsys.readouterr().err
            # A directory named relatively is the user's, wherever the recorder runs.
            cold = tmp_path / "user" / "cold"
            cold.parent.mkdir()
            monkeypatch.chdir(cold.parent)
            assert main(["tier", "run", "--to", "cold", "--older-than", "0s",
                         "--camera", "old", "--json", *base]) == 0  # fmt: skip
            assert json.loads(capsys.readouterr().out)["tiered"] >= 1
            assert any(cold.rglob("*.vseg"))
            # A repair through the recorder leaves the live camera's open segment alone:
            # sealing it would cut off what the camera records next (R1-R4 are for writers
            # that are gone).
            with open_store(store_dir, read_only=True) as st:
                open_before = {i for i, _m in st.index.open_segments()}
            assert open_before
            assert main(["check", "--repair", "--quick", "--json", *base]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["ok"] is True and not doc["problems"], doc["problems"]
            with open_store(store_dir, read_only=True) as st:
                assert open_before <= {i for i, _m in st.index.open_segments()}
            assert p.poll() is None  # recording went on throughout
        finally:
            _stop(p)
    with open_store(store_dir, read_only=True) as st:
        (h,) = list_holds(st, include_released=True)
        assert (h.camera, h.reason, h.released_by, h.release_reason) == (
            "cam",
            "case 9",
            "bo",
            "done",
        )
        recs = st.index.audit_records()
        acts = [r["action"] for r in recs if r["action"] not in ("audit_start", "job_submit")]
        assert acts[:2] == ["hold_add", "hold_release"] and "tier" in " ".join(acts)
        # Each job the commands ran through the recorder is recorded with its parameters.
        jobs = [r["detail"]["job"] for r in recs if r["action"] == "job_submit"]
        assert {"hold", "retention", "import", "tier", "check"} <= set(jobs), jobs
        # The audit names the command line that asked, not the recorder's.
        rec = next(r for r in st.index.audit_records() if r["action"] == "hold_add")
        assert rec["actor"]["command"][:3] == ["vstore", "hold", "add"]
    assert not (store_dir / "vstore.sock").exists()  # the recorder removed its socket
    assert main(["check", "--store", str(store_dir)]) == 0  # nothing cut off, nothing lost


def test_locked_store_without_a_serving_process_is_still_exit_4(store_dir, capsys):
    seed(store_dir)
    with open_store(store_dir):  # holds the lock, serves nothing
        argv = ["hold", "add", "--camera", "cam", "--from=-1h", "--to=now", "--reason", "r"]
        assert main([*argv, "--store", str(store_dir)]) == 4
    assert "open for writing by another process" in capsys.readouterr().err


def test_server_runs_jobs_and_returns_their_errors_by_class(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st, JobServer(st):
        sock = st.layout.socket_path
        params = {"action": "add", "camera": "cam", "from_ns": 1, "to_ns": 2, "reason": "r",
                  "by": "me"}  # fmt: skip
        doc = job_client.call(sock, "hold", params, None)
        assert doc["id"] == 1 and doc["objects"]["errors"] == []
        with pytest.raises(NotFound, match="unknown camera"):
            job_client.call(sock, "hold", {**params, "camera": "nosuch"}, None)
        with pytest.raises(UsageError, match="'format-disk' is not one of"):
            job_client.call(sock, "format-disk", {}, None)


def test_progress_reaches_the_client(store_dir):
    seed(store_dir)
    seen: list[tuple[int, int]] = []
    with open_store(store_dir) as st, JobServer(st):
        doc = job_client.call(st.layout.socket_path, "test-slow", {"steps": 10},
                              lambda d, t: seen.append((d, t)))  # fmt: skip
    assert doc == {"steps": 10}
    assert seen and seen[-1][1] == 10 and seen == sorted(seen)


def test_an_interrupted_client_cancels_its_job_at_a_safe_point(store_dir, monkeypatch):
    seed(store_dir)
    with open_store(store_dir) as st, JobServer(st) as server:
        calls = 0

        def interrupt(s: float) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise KeyboardInterrupt  # Ctrl-C while the client waits
            time.sleep(s)

        monkeypatch.setattr(job_client, "_pause", interrupt)
        with pytest.raises(KeyboardInterrupt):
            job_client.call(st.layout.socket_path, "test-slow", {"steps": 1200}, None)  # a minute
        (job,) = server.runner.list()
        assert job.finished.wait(10)
        assert job.state == "cancelled" and job.progress[0] < 1200


def test_shutdown_stops_a_running_job_at_a_safe_point_and_tells_its_client(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st:
        server = JobServer(st)
        server.start()
        result: list[BaseException] = []

        def client() -> None:
            try:
                job_client.call(st.layout.socket_path, "test-slow", {"steps": 1200}, None)
            except VstoreError as exc:
                result.append(exc)

        t = threading.Thread(target=client)
        t.start()
        while not server.runner.list() or server.runner.list()[0].state != "running":
            time.sleep(0.01)
        t0 = time.monotonic()
        server.close()
        t.join(30)
        assert time.monotonic() - t0 < 10  # not the minute the job wanted
        assert isinstance(result[0], Cancelled | job_client.JobChannelError), result


def test_client_says_unknown_when_the_holder_dies_mid_job(store_dir, tmp_path):
    """A holder killed while the job runs: the client stops waiting and says the outcome is
    unknown; nothing runs the job again later."""
    seed(store_dir)
    code = (
        "import sys, time\n"
        "from vstore.api import open_store\n"
        "from vstore.service.job_server import JobServer\n"
        "from tests.test_jobs import _slow_job\n"
        "with open_store(sys.argv[1]) as st, JobServer(st):\n"
        "    print('up', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(store_dir)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        err: list[BaseException] = []

        def client() -> None:
            try:
                job_client.run_job(str(store_dir), "test-slow", {"steps": 1200})
            except VstoreError as exc:
                err.append(exc)

        t = threading.Thread(target=client)
        t.start()
        time.sleep(1.0)
        holder.kill()
        t.join(30)
        assert not t.is_alive()
        assert "whether it finished is unknown" in str(err[0])
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_store_locked_error_when_nobody_serves(store_dir):
    seed(store_dir)
    with open_store(store_dir), pytest.raises(StoreLocked):
        job_client.run_job(str(store_dir), "hold", {"action": "sync"})


def test_rebuild_index_reaches_a_store_a_recorder_holds(store_dir, tmp_path, media, capsys):
    """A second store's tiered footage indexed into a store a recorder holds, through it."""
    src = media("jobs-rebuild.ts", 3.0, codec="h264", gop_frames=25)
    other = tmp_path / "other"
    cold = tmp_path / "cold"
    assert main(["import", str(src), "--camera", "far", "--start", format_time(START_NS),
                 "--store", str(other)]) == 0  # fmt: skip
    assert main(["tier", "run", "--to", str(cold), "--older-than", "0s", "--store",
                 str(other)]) == 0  # fmt: skip
    capsys.readouterr()
    with TcpCamera(SPEC) as cam:
        p = _recorder(store_dir, cam.url)
        try:
            argv = ["rebuild-index", "--from", str(cold), "--json", "--store", str(store_dir)]
            assert main(argv) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["indexed"] >= 1 and doc["foreign"] >= 1 and not doc["problems"]
        finally:
            _stop(p)
    with open_store(store_dir, read_only=True) as st:
        assert "far" in [c.camera for c in st.cameras()]


def test_a_job_nobody_waits_on_fails_loudly_and_is_counted(tmp_path, caplog):
    """A scheduled job's failure (a tier run the bucket refuses) used to be kept in the job
    list alone: footage stayed on the node's disk with nothing in its log. It is an error
    in the log now, and counted for /metrics; a client's failed job, which its client
    hears of, is a warning."""
    import logging

    from vstore.service.job_runner import JobRunner

    st = open_store(tmp_path / "s")
    runner = JobRunner(st)
    try:
        with caplog.at_level(logging.WARNING, logger="vstore.service.job_runner"):
            for by in ("schedule", "alice"):
                job = runner.submit("tier", {}, by)  # (no [tier] url: it fails)
                assert job.finished.wait(30) and job.state == "failed"
        levels = [(r.levelname, "by schedule" in r.getMessage()) for r in caplog.records]
        assert levels == [("ERROR", True), ("WARNING", False)]
        assert runner.failed_counts() == {"tier": 2}
    finally:
        runner.close()
        st.close()
