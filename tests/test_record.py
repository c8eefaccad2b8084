"""Live recording over real sockets: MPEG-TS over TCP and UDP from tools.camsim, RTSP from
GStreamer's server (tools/rtsp_server.py, when installed), several cameras at once, and a
camera that drops its connection (reconnect with backoff, gap recorded)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tools.camsim import StreamSpec, TcpCamera, UdpPusher
from vstore.ingest.recorder import Recorder, record_many
from vstore.lifecycle.check import check_store

ROOT = Path(__file__).resolve().parents[1]
SPEC = StreamSpec(codec="h264", width=320, height=240, fps=25, gop_frames=25)


def decoded_ok(store, cam):
    from tests.test_roundtrip import decode_counters

    num = store.camera_num(cam)
    seg = next(store.index.segments(num))
    with store.segment_reader(seg) as rd:
        track = rd.meta.tracks[0]
        video = [p for p in rd.iter_packets() if p.track == 0]
    counters = decode_counters(track, video)
    # Consecutive frame counters: nothing lost or reordered inside the recording.
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    return counters


@pytest.mark.parametrize("demuxer", ["auto", "ffmpeg"])
def test_record_tcp_camera(tmp_path, demuxer):
    from vstore.api import open_store

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(f'[store]\ndemuxer = "{demuxer}"\n')
    with open_store(d) as store:
        _record_tcp(store, demuxer)


def _record_tcp(store, demuxer):
    with TcpCamera(SPEC) as cam:
        status = Recorder(store, "tcp-cam", cam.url, duration_s=3.0).run()
    # "auto" demuxes MPEG-TS natively; the frame counters below prove nothing is lost.
    assert status.demuxer == ("native" if demuxer == "auto" else "ffmpeg")
    assert status.writer["packets"] >= 40
    assert status.writer["dropped_before_keyframe"] < 25
    assert check_store(store).ok
    assert len(decoded_ok(store, "tcp-cam")) >= 40
    [summary] = store.cameras()
    # Live footage is anchored to the receive clock: it ends about now.
    assert abs(summary.last_ns - time.time_ns()) < 5 * 10**9


def test_record_udp_push(store):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder(store, "udp-cam", f"udp://127.0.0.1:{port}", duration_s=3.5)
    import threading

    t = threading.Thread(target=rec.run)
    t.start()
    time.sleep(0.3)
    with UdpPusher(SPEC, port, duration_s=3.0):
        t.join(timeout=20)
    assert rec.status.writer.get("packets", 0) >= 25 and rec.status.demuxer == "native"
    assert check_store(store).ok
    decoded_ok(store, "udp-cam")


def test_several_cameras_at_once_and_a_dead_one_does_not_stall_others(store):
    with TcpCamera(SPEC) as a, TcpCamera(StreamSpec(codec="hevc", audio="aac")) as b:
        statuses = record_many(
            store,
            [("a", a.url), ("b", b.url), ("dead", "tcp://127.0.0.1:9")],
            duration_s=3.0,
        )
    by = {s.camera: s for s in statuses}
    assert by["a"].writer["packets"] >= 40 and by["b"].writer["packets"] >= 40
    assert by["b"].demuxer == "native"  # H.265 with AAC, natively
    assert by["dead"].last_error and not by["dead"].writer
    assert check_store(store).ok
    assert {c.camera for c in store.cameras()} == {"a", "b"}


def test_camera_dropping_connection_is_reconnected_and_gap_recorded(store):
    with TcpCamera(SPEC) as cam:
        rec = Recorder(store, "flaky", cam.url, duration_s=6.0, backoff_max_s=0.5)
        import threading

        t = threading.Thread(target=rec.run)
        t.start()
        time.sleep(2.5)
        cam.drop_clients()
        t.join(timeout=30)
    assert rec.status.reconnects >= 1
    assert check_store(store).ok
    tl = store.timeline("flaky", None, None)
    # The reconnect is on the timeline whether or not the outage was long enough to be a gap.
    assert any(
        e["kind"] in ("gap", "reconnect") and e["detail"]["reason"] == "reconnect"
        for e in tl.events
    )
    segs = list(store.index.segments(store.camera_num("flaky")))
    assert len(segs) >= 2


def test_record_cli_json(store_dir, capsys):
    from vstore.cli.main import main

    with TcpCamera(SPEC) as cam:
        code = main(
            [
                "record",
                cam.url,
                "--camera",
                "c1",
                "--duration",
                "2",
                "--json",
                "--store",
                str(store_dir),
            ]
        )
    assert code == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["cameras"][0]["writer"]["packets"] > 0


def test_unreachable_source_without_reconnect_is_a_clear_error(store_dir, capsys):
    from vstore.cli.main import main

    code = main(
        [
            "record",
            "tcp://127.0.0.1:9",
            "--camera",
            "c1",
            "--duration",
            "2",
            "--no-reconnect",
            "--store",
            str(store_dir),
        ]
    )
    assert code == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err and "tcp://127.0.0.1:9" in err


RTSP_OK = (
    Path("/usr/bin/python3").exists()
    and subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            (
                "import gi; gi.require_version('GstRtspServer', '1.0');"
                "from gi.repository import GstRtspServer"
            ),
        ],
        capture_output=True,
        check=False,
    ).returncode
    == 0
)


@pytest.mark.skipif(not RTSP_OK, reason="GStreamer RTSP server not installed (see .ci/run)")
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_record_rtsp_camera(store, media, tmp_path, codec):
    src = media(f"rtsp-{codec}.ts", 8.0, codec=codec, gop_frames=25)
    gst = "h265" if codec == "hevc" else "h264"
    with subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tools/rtsp_server.py"), "--port", "0", f"cam={src}:{gst}"],
        stdout=subprocess.PIPE,
        text=True,
    ) as srv:
        try:
            assert srv.stdout is not None
            line = srv.stdout.readline()
            assert line.startswith("ready "), line
            url = line.split()[1] + "/cam"
            status = Recorder(store, "rtsp-cam", url, duration_s=4.0).run()
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    assert status.writer["packets"] >= 25
    assert check_store(store).ok
    assert len(decoded_ok(store, "rtsp-cam")) >= 25


def test_a_camera_whose_disk_writes_fail_stops_alone(store_dir):
    """The writer pool runs every camera's writes: one camera's I/O failure must stop that
    camera (its error reported) while the others go on recording every frame."""
    import errno
    import os

    from vstore.api import open_store
    from vstore.base.fsutil import Fs

    class FailingForCamera(Fs):
        def __init__(self) -> None:
            self.bad: set[int] = set()

        def open_new(self, path, mode=0o644):
            fd = super().open_new(path, mode)
            if "/sick/" in str(path):
                self.bad.add(fd)
            return fd

        def writev(self, fd, parts):
            if fd in self.bad and sum(map(len, parts)) > 10_000:  # chunks, not the header
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return super().writev(fd, parts)

    with open_store(store_dir, fs=FailingForCamera()) as store:
        with TcpCamera(SPEC) as a, TcpCamera(SPEC) as b:
            statuses = record_many(store, [("sick", a.url), ("well", b.url)], duration_s=3.0)
        by = {s.camera: s for s in statuses}
        assert "Input/output error" in by["sick"].last_error
        assert by["sick"].reconnects == 0  # a failed writer ends the camera, no retry loop
        assert by["well"].writer["packets"] >= 40 and not by["well"].last_error
        assert len(decoded_ok(store, "well")) >= 40
    # The failed segment was left open for recovery (W5), which the next open runs.
    with open_store(store_dir) as store:
        assert check_store(store).ok


def test_record_exits_7_when_the_disk_filled_under_a_camera(store_dir, monkeypatch, capsys):
    """A camera whose writes hit ENOSPC stopped (its footage from then on not recorded) and
    `vstore record` exited 0, as the README's exit 7 says it must not."""
    import errno
    import json
    import os

    from vstore.base.fsutil import Fs
    from vstore.cli.main import main

    bad: set[int] = set()
    open_new, writev = Fs.open_new, Fs.writev

    def opening(self, path, mode=0o644):
        fd = open_new(self, path, mode)
        if "/sick/" in str(path):
            bad.add(fd)
        return fd

    def writing(self, fd, parts):
        if fd in bad and sum(map(len, parts)) > 10_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return writev(self, fd, parts)

    monkeypatch.setattr(Fs, "open_new", opening)
    monkeypatch.setattr(Fs, "writev", writing)
    with TcpCamera(SPEC) as a, TcpCamera(SPEC) as b:
        args = ["record", a.url, b.url, "--camera", "sick", "--camera", "well"]
        code = main([*args, "--store", str(store_dir), "--duration", "3", "--json"])
    assert code == 7
    doc = json.loads(capsys.readouterr().out)
    by = {c["camera"]: c for c in doc["cameras"]}
    assert by["sick"]["stopped_by"] == "StorageFull" and by["well"]["writer"]["packets"] >= 40


def test_ctrl_c_ends_a_recording_cleanly_and_exits_130(store_dir):
    """Ctrl-C stops `vstore record` as SIGTERM does (every segment sealed, the audit log
    signed), and says it was interrupted (130), as the README's exit codes do: a script can
    tell a cut-short run."""
    import os
    import signal
    import sys

    from vstore.api import open_store

    root = Path(__file__).resolve().parents[1]
    with TcpCamera(SPEC) as cam:
        p = subprocess.Popen(
            [sys.executable, "-m", "vstore.cli.main", "record", cam.url, "--camera", "c",
             "--store", str(store_dir), "--duration", "60"],
            env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)
        p.send_signal(signal.SIGINT)
        out, _err = p.communicate(timeout=30)
    assert p.returncode == 130, out
    from vstore.evidence.audit_chain import verify

    with open_store(store_dir) as store:
        assert check_store(store).ok and decoded_ok(store, "c")
        # Its audit records signed at the stop, as a node's are.
        audit = verify(store)
        assert audit.ok and audit.uncovered == 0, audit.findings


class ReplaySource:
    """A Source (vstore.ingest.source) of the packets of a file, pushed in batches as the
    native path does: the recorder must take any source that follows the protocol."""

    demuxer = "replay"

    def __init__(self, path: Path) -> None:
        import av

        from vstore.ingest.source import RawPacket
        from vstore.ingest.tracks import tracks_from_av

        with av.open(str(path)) as c:
            self._tracks = tracks_from_av(c)
            m = self._tracks.stream_to_track
            self.packets = [
                RawPacket(
                    m[p.stream.index], p.pts, p.dts, bool(p.is_keyframe), bytes(p), None, False
                )
                for p in c.demux([c.streams[i] for i in m])
                if p.size
            ]
        self.closed = False

    def tracks(self):
        return self._tracks

    def pump(self, sink, t0):
        for i in range(0, len(self.packets), 10):
            if sink.stopping(t0):
                return
            batch = self.packets[i : i + 10]
            sink.enqueue(batch, any(p.is_key for p in batch if p.track == 0), key_at=None)

    def close(self):
        from vstore.ingest.source import SourceDamage

        self.closed = True
        return SourceDamage(continuity_errors=2)


def test_any_source_following_the_protocol_records_through_the_recorder(store, media):
    source = ReplaySource(media("replay.mp4", 3.0, gop_frames=25))

    class ReplayRecorder(Recorder):
        def _connect(self):
            return source

    status = ReplayRecorder(store, "replay", "replay://file", reconnect=False).run()
    assert source.closed and status.ts_continuity_errors == 2
    assert status.writer["packets"] == len(source.packets) == 75
    assert decoded_ok(store, "replay")[:1] == [0]
    assert check_store(store).ok
