"""Recorder processes (``[service] recorders``): a node's cameras spread over processes that
write segment files into the node's store and their index calls through the node. Footage
written through the link is the footage a node's own writer stores; a recorder process
killed with SIGKILL loses nothing acknowledged (the node seals what it left open and starts
it again, the gap shown); a node killed with SIGKILL takes its recorder processes with it,
and its next start seals what they left."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from multiprocessing import Pipe
from urllib.parse import quote

import av
import pytest

from tests.conftest import START_NS
from tests.service_helpers import make_token, start_node, vstore, wait_for
from tests.test_timestamps import VIDEO, push
from tools.camsim import StreamSpec, TcpCamera
from vstore.api import open_store
from vstore.base import cpus
from vstore.base.errors import LinkLost, VstoreError
from vstore.base.timebase import format_time
from vstore.index.time_index import Batch
from vstore.lifecycle.check import check_store
from vstore.store.camera_writer import open_writer
from vstore.store.space import SpaceRefused
from vstore.store.store_link import LinkedStore, _error, serve_link

SPEC = StreamSpec(width=160, height=120, fps=10, gop_frames=10)


def _rows(st, cam):
    num = st.camera_num(cam)
    return [
        (r.start_ns, r.end_ns, r.packet_count, r.offset, r.length, r.crc32, r.flags)
        for r in st.index.chunks(num, -(2**62), 2**62)
    ]


def test_footage_written_through_the_link_is_what_the_node_s_own_writer_stores(store_dir):
    st = open_store(store_dir)
    here, there = Pipe()
    served = serve_link(st, here, "test")
    linked = LinkedStore(store_dir, there, st.config, st.uuid)
    try:
        for store, cam in ((linked, "linked"), (st, "direct")):
            w = open_writer(store, cam, [VIDEO])  # live: wall time from the packets
            for run in range(3):  # three runs: three segments
                if run:
                    w.new_run(reason="test")
                first = run * 100
                push(w, 100, start=first * 3600, first_index=first, wall=lambda i, f=first:
                     START_NS + (f + i) * 40_000_000)  # fmt: skip
            w.close()
        assert _rows(st, "linked") == _rows(st, "direct") != []
        segs = {
            c: [(s.start_ns, s.end_ns, s.state) for s in st.index.segments(st.camera_num(c))]
            for c in ("linked", "direct")
        }
        assert segs["linked"] == segs["direct"]
        rep = check_store(st)
        assert rep.ok, rep
        # Each sealed segment took its link in the camera's recording chain, signed by the
        # node (the recording key is the node's).
        heads = {c: st.index.chain_head(st.camera_num(c)) for c in ("linked", "direct")}
        assert heads["linked"].seq == heads["direct"].seq > 1
        assert heads["linked"].signature
    finally:
        linked.close()
        served.join(10)
        st.close()
    assert not served.is_alive()  # the link ends with the recorder's side


def test_the_node_s_errors_cross_the_link_as_themselves_and_a_gone_node_fails_every_call(
    store_dir,
):
    assert type(_error("SpaceRefused", "below the watermark")) is SpaceRefused
    assert type(_error("NoSuchError", "x")) is VstoreError
    st = open_store(store_dir)
    here, there = Pipe()
    serve_link(st, here, "test")
    linked = LinkedStore(store_dir, there, st.config, st.uuid)
    # What the node would not do for a recorder process is refused, not done.
    with pytest.raises(VstoreError, match="other than an index batch"):
        linked._calls.call("commit", [("camera/x", b"1")], True)
    with pytest.raises(VstoreError):
        linked._calls.call("close")
    here.close()  # the node goes
    with pytest.raises(LinkLost):
        linked.index.new_segment_id()
    with pytest.raises(LinkLost):
        open_writer(linked, "cam", [VIDEO])
    st.close()


def test_writers_unsynced_commits_go_merged_and_each_waits_for_the_call_that_carried_it(
    store_dir,
):
    st = open_store(store_dir)
    here, there = Pipe()
    serve_link(st, here, "test")
    linked = LinkedStore(store_dir, there, st.config, st.uuid)
    calls: list[tuple[str, int]] = []
    call = linked._calls.call

    def counted(op, *args):
        calls.append((op, args[0].count if op == "commit" else 0))
        return call(op, *args)

    linked._calls.call = counted  # type: ignore[method-assign]

    def writer(k: int, errors: list[Exception]) -> None:
        for i in range(40):
            b = Batch()
            b.put(f"test/{k}/{i:03d}".encode(), b"row")
            try:
                linked.index.commit(b, sync=False)
            except Exception as exc:  # noqa: BLE001 - what each writer is told
                errors.append(exc)
                return

    def eight_writers() -> list[Exception]:
        errors: list[Exception] = []
        threads = [threading.Thread(target=writer, args=(k, errors)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return errors

    assert eight_writers() == []
    # Every row is in the node's index once its commit returned, in fewer calls than commits.
    stored = [k for k in st.index._db.keys(from_key=b"test/") if k.startswith(b"test/")]
    assert len(stored) == 320
    merged = [n for op, n in calls if op == "commit"]
    assert sum(merged) == 320 and len(merged) < 320
    # A synced commit, or one that seals, goes as itself.
    b = Batch()
    b.put(b"test/synced", b"row")
    linked.index.commit(b, sync=True)
    assert calls[-1] == ("commit", 1)
    # The node's error reaches every writer whose rows the failed call carried.
    st.close()
    errors = eight_writers()
    assert len(errors) == 8 and all(isinstance(e, VstoreError) for e in errors)
    linked.close()
    with pytest.raises(LinkLost):
        linked.index.commit(b, sync=False)


@pytest.fixture
def cameras():
    cams = {f"cam-{i}": TcpCamera(SPEC) for i in range(5)}
    yield cams
    for c in cams.values():
        c.close()


def _configure(store, cameras, names):
    lines = ["[store]", "segment_duration_s = 2", "[service]", "recorders = 2"]
    for cam in names:
        lines += [f"[cameras.{cam}]", f'url = "{cameras[cam].url}"']
    (store / "vstore.toml").write_text("\n".join(lines) + "\n")


def _statuses(node, tok, cams):
    out = {}
    for cam in cams:
        r = node.get(f"/api/v1/cameras/{cam}", tok)
        out[cam] = json.loads(r.body).get("status", {}) if r.status == 200 else {}
    return out


def _recording(node, tok, cams):
    st = _statuses(node, tok, cams)
    return st if all(s.get("recording") for s in st.values()) else None


def _two_cameras_node(tmp_path, cameras, new_session=False):
    """A new store recording cam-0 and cam-1 through two recorder processes: (store, its
    running node, an admin token)."""
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    _configure(store, cameras, ["cam-0", "cam-1"])
    node = start_node(store, new_session=new_session)
    return store, node, make_token(store, "admin", "*")


def _pids(statuses):
    return {s["recorder_process"]["pid"] for s in statuses.values()}


def _gone(pids):
    def gone():
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    return gone


def test_cameras_are_spread_over_recorder_processes_and_a_killed_one_loses_nothing(
    tmp_path, cameras, media
):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    first = ["cam-0", "cam-1", "cam-2", "cam-3"]
    _configure(store, cameras, first)
    node = start_node(store)
    tok = make_token(store, "admin", "*")
    try:
        st = wait_for(lambda: _recording(node, tok, first), 20, "four cameras recording")
        by_pid: dict[int, list[str]] = {}
        for cam, s in st.items():
            by_pid.setdefault(s["recorder_process"]["pid"], []).append(cam)
        assert sorted(len(v) for v in by_pid.values()) == [2, 2]  # two processes, two each
        assert node.proc.pid not in by_pid
        # Each keeps to a core of its own, every thread of it (pin_recorders, the default,
        # with as many cores as processes); the node itself is not pinned.
        if len(cpus.one_per_core()) >= 2:
            pins = {s["recorder_process"]["pid"]: s["recorder_process"]["cpu"] for s in st.values()}
            assert sorted(pins.values()) == sorted(cpus.one_per_core()[:2])
            for pid, cpu in pins.items():
                for tid in os.listdir(f"/proc/{pid}/task"):
                    assert os.sched_getaffinity(int(tid)) == {cpu}
            assert len(os.sched_getaffinity(node.proc.pid)) == len(cpus.usable_cpus())
        time.sleep(2)
        # The node serves what its recorder processes write, the segment being written too
        # (half a frame inside each end: the frames shown from 1.5 s to 0.6 s before it).
        end = _statuses(node, tok, ["cam-1"])["cam-1"]["durable_end_ns"]
        frm, to = (quote(format_time(t)) for t in (end - 145 * 10**7, end - 55 * 10**7))
        r = node.get(f"/api/v1/cameras/cam-1/clip.mp4?from={frm}&to={to}", tok)
        assert r.status == 200, r.body[:200]
        clip = tmp_path / "live.mp4"
        clip.write_bytes(r.body)
        with av.open(str(clip)) as c:
            assert len(list(c.decode(video=0))) == 10  # 1 s at 10 fps, frame-exact
        victim_pid = st["cam-0"]["recorder_process"]["pid"]
        victims = by_pid[victim_pid]
        before = _statuses(node, tok, victims)
        os.kill(victim_pid, signal.SIGKILL)
        killed_ns = time.time_ns()
        again = wait_for(
            lambda: (
                (s := _recording(node, tok, victims))
                and victim_pid not in _pids(s)
                and all(x["writer"]["packets"] > 0 for x in s.values())
                and s
            ),
            15,
            "the victims recorded again by a new process",
        )
        assert len(_pids(again)) == 1
        metrics = node.get("/metrics", tok).body.decode()
        assert "vstore_cameras_recording 4.0" in metrics
        # Started again, the process's cameras are still its own (M2): an import into one is
        # refused, a check finds nothing wrong, and a repair leaves its open segment alone.
        src = media("rp-src.ts", 3.0, codec="h264", gop_frames=10)
        r = vstore("import", str(src), "--camera", victims[0], "--start", "-1h", "--store",
                   str(store), check=False)  # fmt: skip
        assert r.returncode != 0 and "already has an open writer" in r.stderr, r
        for extra in ([], ["--repair"]):
            r = vstore("check", "--store", str(store), "--json", *extra, check=False)
            assert json.loads(r.stdout)["ok"], r.stdout
        # Killed again: what it left open is sealed again.
        second = next(iter(_pids(again)))
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: (s := _recording(node, tok, victims)) and second not in _pids(s),
                 15, "the victims recorded again after a second kill")  # fmt: skip
        # A reload: a new camera goes to a process, a removed one stops and seals.
        _configure(store, cameras, ["cam-0", "cam-2", "cam-3", "cam-4"])
        os.kill(node.proc.pid, signal.SIGHUP)
        wait_for(lambda: _recording(node, tok, ["cam-4"]), 15, "cam-4 recording")
        assert not _statuses(node, tok, ["cam-1"])["cam-1"].get("recording")
        pids = _pids(_statuses(node, tok, ["cam-0", "cam-2", "cam-3", "cam-4"]))
        time.sleep(2)
    finally:
        assert node.stop() == 0
    wait_for(_gone(pids), 10, "the recorder processes to end with the node")
    rep = json.loads(vstore("check", "--store", str(store), "--json", check=False).stdout)
    assert rep["ok"], rep
    with open_store(store, read_only=True) as st2:
        for cam in victims:
            # Everything acknowledged before the kill is there, then a gap, then more.
            durable = before[cam]["durable_end_ns"]
            covered = st2.timeline(cam, 0, 2**62).covered
            assert any(a <= durable - 1 < b for a, b in covered), (cam, covered)
            assert any(a > killed_ns - 2 * 10**9 for a, _b in covered[1:])
            assert len(covered) >= 2  # the gap is visible
        assert st2.writing_cameras() == set()
    log = (tmp_path / "serve.log").read_text()
    assert log.count("died (exit -9)") == 2
    assert "reason=restart" in log  # (a recorder process logs at its node's level)


def test_a_camera_taken_off_a_hung_process_and_given_again_goes_on_only_once_that_one_is_sealed(
    tmp_path, cameras, media
):
    """An operator takes a camera off a process that hangs and adds it again: the removal
    waits until the hung process is killed, and the camera went to the other process while
    the dead one was not yet sealed. Its sealing then took the camera's new live segment for
    its own: recovered under its writer (its file deleted when it had no whole chunk yet,
    a false chain break otherwise), and the camera given back to the store (an import into
    it accepted) while it recorded. The dead one is sealed first now."""
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    cams = ["cam-0", "cam-1", "cam-2"]
    _configure(store, cameras, cams)
    node = start_node(store, new_session=True)
    tok = make_token(store, "admin", "*")
    hung = None
    try:
        st = wait_for(lambda: _recording(node, tok, cams), 30, "three cameras recording")
        hung = st["cam-0"]["recorder_process"]["pid"]
        for cam in cams:  # (the other process left with no camera)
            if st[cam]["recorder_process"]["pid"] != hung:
                assert node.request("DELETE", f"/api/v1/cameras/{cam}", tok).status == 200
        time.sleep(1.5)
        os.kill(hung, signal.SIGSTOP)
        r = node.request("DELETE", "/api/v1/cameras/cam-0", tok)  # (until it is killed)
        assert r.status == 200, r
        r = node.request("PUT", "/api/v1/cameras/cam-0", tok, body={"url": cameras["cam-0"].url})
        assert r.status in (200, 201), r
        st = wait_for(lambda: _recording(node, tok, ["cam-0"]), 20, "cam-0 recording again")
        assert st["cam-0"]["recorder_process"]["pid"] != hung
        time.sleep(2.5)  # (past its first whole chunk, into its next segment)
        src = media("rp-src.ts", 3.0, codec="h264", gop_frames=10)
        r = vstore("import", str(src), "--camera", "cam-0", "--start", "-1h", "--store",
                   str(store), check=False)  # fmt: skip
        assert r.returncode != 0 and "already has an open writer" in r.stderr, r
    finally:
        if hung is not None:
            try:
                os.kill(hung, signal.SIGCONT)
            except ProcessLookupError:
                pass
        assert node.stop() == 0
    # (a live segment recovered under its writer: its file gone (C2), or its chain broken)
    rep = json.loads(vstore("check", "--store", str(store), "--json", check=False).stdout)
    assert rep["ok"], rep["problems"]


def test_a_killed_node_takes_its_recorder_processes_along_and_its_next_start_seals_their_segments(
    tmp_path, cameras
):
    cams = ["cam-0", "cam-1"]
    store, node, tok = _two_cameras_node(tmp_path, cameras)
    st = wait_for(lambda: _recording(node, tok, cams), 20, "two cameras recording")
    pids = _pids(st)
    assert len(pids) == 2
    time.sleep(2)
    durable = {c: s["durable_end_ns"] for c, s in _statuses(node, tok, cams).items()}
    # One of them stopped (SIGSTOP) when the node dies: it must not outlive it, and on a
    # SIGCONT write into segments the node's next start sealed.
    os.kill(min(pids), signal.SIGSTOP)
    node.proc.kill()
    node.proc.wait()
    node.proc.stdout.close()
    wait_for(_gone(pids), 10, "the recorder processes to end with their node")
    with open_store(store, read_only=True) as st2:
        assert [m["camera"] for _i, m in st2.index.open_segments()]  # left open by them
    node = start_node(store)  # recovery seals them (R1-R4)
    assert node.stop() == 0
    rep = json.loads(vstore("check", "--store", str(store), "--json", check=False).stdout)
    assert rep["ok"], rep
    with open_store(store, read_only=True) as st2:
        for cam in cams:
            covered = st2.timeline(cam, 0, 2**62).covered
            assert any(a <= durable[cam] - 1 < b for a, b in covered), cam


def test_a_recorder_process_writes_a_camera_only_before_its_lease_deadline(tmp_path, cameras):
    """In a cluster the node pushes each camera's lease deadline to its recorder process;
    once the deadline passes unrenewed (etcd unreachable), the process writes nothing more
    of the camera, as the node's own recorders stop (O4)."""
    from vstore.service.recorder_pool import RecorderPool
    from vstore.store.config import load_config

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    _configure(store, cameras, ["cam-0"])
    st = open_store(store)
    deadline = [time.monotonic() + 3600.0]
    pool = RecorderPool(st, 1, lambda cam: deadline[0])
    try:
        pool.start()
        config = load_config(store / "vstore.toml")
        pool.place(config, dict(config.cameras))
        wait_for(lambda: pool.statuses()["cam-0"].get("recording"), 20, "cam-0 recording")
        time.sleep(1.5)
        # The lease stops renewing: the deadline stands 1 s from now.
        deadline[0] = time.monotonic() + 1.0
        deadline_wall_ns = time.time_ns() + 10**9
        wait_for(lambda: not pool.statuses()["cam-0"].get("recorder_running"), 10,
                 "the recorder to stop at the deadline")  # fmt: skip
        status = pool.statuses()["cam-0"]
        assert status["dropped_fenced"] > 0
        time.sleep(1.0)
        pool.place(config, {})  # (the member gives the camera up: it seals)
    finally:
        pool.stop()
    rows = list(st.index.chunks(st.camera_num("cam-0"), 0, 2**62))
    assert rows and max(r.end_ns for r in rows) <= deadline_wall_ns + 10**9 // 2
    assert st.writing_cameras() == set()
    rep = check_store(st)
    assert rep.ok, rep
    st.close()


def test_recorders_is_a_whole_number_or_auto_and_its_mistakes_are_named(tmp_path):
    from vstore.base.errors import ConfigError
    from vstore.store.config import load_config

    p = tmp_path / "vstore.toml"
    p.write_text('[service]\nrecorders = "auto"\n')
    assert load_config(p).service.recorders == len(cpus.one_per_core())  # (its cores)
    p.write_text("")
    assert load_config(p).service.recorders == 1
    assert load_config(p).service.pin_recorders is True
    p.write_text('[service]\npin_recorders = "yes"\n')
    with pytest.raises(ConfigError, match="pin_recorders must be true or false"):
        load_config(p)
    for bad in ("0", "1.5", "true", '"many"', "1000"):
        p.write_text(f"[service]\nrecorders = {bad}\n")
        with pytest.raises(ConfigError, match=r"recorders must be a whole number within 1\.\.256"):
            load_config(p)
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    (store / "vstore.toml").write_text("[service]\nrecorders = 0\n")
    r = vstore("serve", "--store", str(store), check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r
    assert "recorders must be a whole number" in r.stderr


def test_systemd_s_sigterm_to_the_group_seals_everything_and_a_hung_recorder_is_replaced(
    tmp_path, cameras
):
    cams = ["cam-0", "cam-1"]
    store, node, tok = _two_cameras_node(tmp_path, cameras, new_session=True)
    try:
        st = wait_for(lambda: _recording(node, tok, cams), 20, "two cameras recording")
        # A recorder process stopped (SIGSTOP: hung, as far as anyone can tell): statuses
        # answer at once, saying so; it is killed and started again.
        frozen = st["cam-0"]["recorder_process"]["pid"]
        os.kill(frozen, signal.SIGSTOP)
        time.sleep(3)
        # (a reload now waits on the stopped process until it is replaced: statuses do not)
        os.kill(node.proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        t0 = time.monotonic()
        status = _statuses(node, tok, ["cam-0", "cam-1"])
        assert time.monotonic() - t0 < 6
        assert not status["cam-0"]["recording"]
        assert "not answered" in status["cam-0"]["last_error"]
        assert status["cam-1"]["recording"]
        wait_for(lambda: (s := _recording(node, tok, cams)) and frozen not in _pids(s), 30,
                 "the hung process replaced")  # fmt: skip
        pids = _pids(_statuses(node, tok, cams))
        time.sleep(2)
        # systemd stops a service by SIGTERM to its whole group: the recorder processes
        # leave it to the node, which has them seal everything.
        stopped_ns = time.time_ns()
        os.killpg(node.proc.pid, signal.SIGTERM)
        assert node.proc.wait(60) == 0
    finally:
        if node.proc.poll() is None:
            node.stop()
        node.proc.stdout.close()
    wait_for(_gone(pids | {frozen}), 10, "the recorder processes to end")
    log = (tmp_path / "serve.log").read_text()
    assert "has not answered" in log and "did not stop cleanly" not in log
    rep = json.loads(vstore("check", "--store", str(store), "--json", check=False).stdout)
    assert rep["ok"], rep
    with open_store(store, read_only=True) as st2:
        for cam in cams:
            end = st2.timeline(cam, 0, 2**62).covered[-1][1]
            assert stopped_ns - end < 1.5 * 10**9, (cam, (stopped_ns - end) / 1e9)


def test_what_a_change_does_to_a_process_waiting_to_start_again_is_said():
    from vstore.service.recorder_pool import _changes
    from vstore.store.config import CameraSettings

    a, b = CameraSettings(url="tcp://127.0.0.1:1"), CameraSettings(url="tcp://127.0.0.1:2")
    renamed = a._replace(name="Gate")
    assert _changes({"x": a, "y": a}, {"x": b, "y": renamed, "z": a}) == {
        "started": ["z"], "restarted": ["x"], "stopped": []
    }  # fmt: skip
    assert _changes({"x": a}, {})["stopped"] == ["x"]


def test_a_camera_paused_for_space_is_not_shown_as_recording(tmp_path, cameras):
    """Below the watermark with disk_full = "stop-recording", every camera pauses (S4): the
    node's recorder processes ask it for space through the link, and the status and
    metrics say the cameras are not recording, and why."""
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    _configure(store, cameras, ["cam-0", "cam-1"])
    with open(store / "vstore.toml", "a") as f:
        f.write('[retention]\nmin_free = "99.99%"\ndisk_full = "stop-recording"\n')
    node = start_node(store)
    tok = make_token(store, "admin", "*")
    try:

        def paused():
            st = _statuses(node, tok, ["cam-0", "cam-1"])
            return (
                all(s.get("writer", {}).get("dropped_disk_full", 0) > 0 for s in st.values()) and st
            )

        st = wait_for(paused, 20, "both cameras paused for space")
        for s in st.values():
            assert not s["recording"] and s["last_error"].startswith("recording paused: ")
            assert "watermark" in s["last_error"]
        assert "vstore_cameras_recording 0.0" in node.get("/metrics", tok).body.decode()
    finally:
        assert node.stop() == 0


def test_lease_deadlines_travel_as_the_lease_s_and_the_exceptions():
    """Pushed every half second to each recorder process, the deadlines stay a few bytes
    however many cameras it records: the lease's, and the cameras whose differ (one no
    longer held: 0), each camera's gate reading its own."""
    from vstore.service.recorder_pool import RecorderPool
    from vstore.service.recorder_process import _deadline
    from vstore.store.config import CameraSettings

    held = {f"cam-{i}": 1000.0 for i in range(800)} | {"lost": 0.0}
    pool = RecorderPool.__new__(RecorderPool)  # (only its deadline arithmetic is used)
    pool.deadline = held.__getitem__
    compact = pool._deadlines(dict.fromkeys(held, CameraSettings()))
    assert compact == (1000.0, {"lost": 0.0})
    assert _deadline(compact, "cam-7") == 1000.0 and _deadline(compact, "lost") == 0.0
    assert _deadline(None, "cam-7") == 0.0
