"""Operators' jobs on a store that a recorder holds open for writing: `vstore hold` and
`vstore retention run` go through the recorder (vstore.service.control) instead of failing with exit
code 4, keep their output and exit codes, and never hang on a recorder that is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.test_cli import seed
from tools.camsim import StreamSpec, TcpCamera
from vstore.api import open_store
from vstore.base.errors import NotFound, StoreLocked, VstoreError
from vstore.base.layout import StoreLayout
from vstore.cli.main import main
from vstore.jobs import registry
from vstore.service import control
from vstore.store.holds import list_holds

SPEC = StreamSpec(width=320, height=240, fps=25, gop_frames=25)


def _recorder(store_dir, url: str) -> subprocess.Popen:
    """`vstore record` in its own process, once it serves requests and records "cam"."""
    p = subprocess.Popen(
        [sys.executable, "-m", "vstore.cli.main", "record", url, "--camera", "cam",
         "--duration", "60", "--store", str(store_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            pytest.fail(f"the recorder exited: {p.communicate()}")
        if control.serving(StoreLayout(store_dir)):
            try:
                with open_store(store_dir, read_only=True) as st:
                    if [c.camera for c in st.cameras()] == ["cam"]:
                        return p
            except VstoreError:
                pass  # the index is being created
        time.sleep(0.2)
    p.kill()
    pytest.fail("the recorder did not start serving in 30 s")


def _claim_serving(layout: StoreLayout, fresh_s: float = 0.0) -> None:
    """Make this process look like the store's server (its heartbeat fresh for fresh_s)."""
    layout.control_dir.mkdir(exist_ok=True)
    layout.control_server_path.write_text(json.dumps({"pid": os.getpid()}))
    beat = time.time() + fresh_s
    os.utime(layout.control_server_path, (beat, beat))


def _stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)


def test_holds_and_retention_reach_a_store_that_a_recorder_holds(store_dir, capsys):
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
        assert [r["action"] for r in st.index.audit_records()][:2] == ["hold_add", "hold_release"]
    assert list((store_dir / "control").iterdir()) == []  # every request answered, server gone


def test_locked_store_without_a_serving_process_is_still_exit_4(store_dir, capsys):
    seed(store_dir)
    with open_store(store_dir):  # holds the lock, serves nothing
        argv = ["hold", "add", "--camera", "cam", "--from=-1h", "--to=now", "--reason", "r"]
        assert main([*argv, "--store", str(store_dir)]) == 4
    assert "open for writing by another process" in capsys.readouterr().err


def test_server_runs_jobs_and_returns_their_errors_by_class(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st, control.ControlServer(st) as server:
        params = {"action": "add", "camera": "cam", "from_ns": 1, "to_ns": 2, "reason": "r",
                  "by": "me"}  # fmt: skip
        doc = control.call(st.layout, "hold", params)
        assert doc["id"] == 1 and doc["objects"]["errors"] == []
        with pytest.raises(NotFound, match="unknown camera"):
            control.call(st.layout, "hold", {**params, "camera": "nosuch"})
        with pytest.raises(VstoreError, match="unknown job"):
            control.call(st.layout, "format-disk", {})
        assert server.served == 3


def test_request_left_running_by_a_dead_server_is_answered_as_unknown(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st:
        st.layout.control_dir.mkdir()
        st.layout.control_running_path("abc").write_text('{"job": "hold", "params": {}}')
        with control.ControlServer(st):
            reply = json.loads(st.layout.control_response_path("abc").read_text())
        assert "stopped while it ran" in reply["error"]["message"]
        assert not st.layout.control_running_path("abc").exists()


def test_request_nobody_takes_is_withdrawn_not_waited_on_forever(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st:
        layout = st.layout
        _claim_serving(layout, fresh_s=60)  # a live process that never serves (hung)
        with pytest.raises(VstoreError, match="did not answer"):
            control.call(layout, "hold", {"action": "sync"}, timeout_s=0.5)
        assert list(layout.control_dir.glob("*.request.json")) == []  # withdrawn


def test_client_stops_waiting_when_the_server_dies_mid_job(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st:
        layout = st.layout
        _claim_serving(layout)

        def take_then_die() -> None:  # a server that takes the request, then is gone
            while not (reqs := list(layout.control_dir.glob("*.request.json"))):
                time.sleep(0.01)
            reqs[0].rename(reqs[0].with_name(reqs[0].name.replace("request", "running")))
            layout.control_server_path.unlink()

        t = threading.Thread(target=take_then_die)
        t.start()
        with pytest.raises(VstoreError, match="whether the job ran is unknown"):
            control.call(layout, "hold", {"action": "sync"}, timeout_s=30)
        t.join()


def test_store_locked_error_names_the_lock(store_dir):
    seed(store_dir)
    with open_store(store_dir), pytest.raises(StoreLocked):
        control.run_job(str(store_dir), "hold", {"action": "sync"})


@pytest.fixture
def quick_heartbeat(monkeypatch):
    monkeypatch.setattr(control, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(control, "STALE_S", 0.5)


def _slow_job(store, params, progress):
    for i in range(int(params["steps"])):
        time.sleep(0.1)
        if progress is not None:
            progress(i + 1, int(params["steps"]))
    return {"steps": params["steps"]}


# A job only these tests know: the table is plain data, so a test adds to it.
registry.JOBS["test-slow"] = _slow_job


def test_a_job_longer_than_the_heartbeat_timeout_is_waited_for(store_dir, quick_heartbeat):
    seed(store_dir)
    with open_store(store_dir) as st, control.ControlServer(st):
        assert control.call(st.layout, "test-slow", {"steps": 15}) == {"steps": 15}  # 1.5 s


def test_shutdown_stops_a_running_job_at_a_safe_point_and_tells_its_client(store_dir):
    seed(store_dir)
    with open_store(store_dir) as st:
        server = control.ControlServer(st)
        server.start()
        result: list[BaseException] = []

        def client() -> None:
            try:
                control.call(st.layout, "test-slow", {"steps": 600})  # a minute
            except VstoreError as exc:
                result.append(exc)

        t = threading.Thread(target=client)
        t.start()
        while not list(st.layout.control_dir.glob("*.running.json")):
            time.sleep(0.01)
        t0 = time.monotonic()
        server.close()
        t.join(30)
        assert time.monotonic() - t0 < 10  # not the minute the job wanted
        assert "stopping" in str(result[0])


def test_a_request_whose_client_was_killed_is_not_run(store_dir):
    seed(store_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open_store(store_dir) as st:
        st.layout.control_dir.mkdir()
        st.layout.control_request_path("x").write_text(
            json.dumps({"job": "hold", "params": {"action": "sync"}, "pid": dead.pid})
        )
        with control.ControlServer(st) as server:
            deadline = time.monotonic() + 10
            while st.layout.control_request_path("x").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert server.served == 0
        assert list(st.layout.control_dir.iterdir()) == []


def test_an_interrupted_client_withdraws_its_request(store_dir, monkeypatch):
    seed(store_dir)
    with open_store(store_dir) as st:
        layout = st.layout
        _claim_serving(layout, fresh_s=60)

        def interrupt(_s: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(control.time, "sleep", interrupt)
        with pytest.raises(KeyboardInterrupt):
            control.call(layout, "hold", {"action": "sync"})
        assert list(layout.control_dir.glob("*.request.json")) == []
