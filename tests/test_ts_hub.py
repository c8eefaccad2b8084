"""The TS hub (one thread reads every native MPEG-TS camera): a silent camera times out on its
own, a stuck writer costs its camera counted drops to the next keyframe and never stalls the
others, and the reading thread ends when no camera is left."""

from __future__ import annotations

import socket
import threading
import time

from tests.test_record import SPEC, decoded_ok
from tools.camsim import StreamSpec, TcpCamera, UdpPusher, write_file
from vstore.ingest.recorder import Recorder
from vstore.lifecycle.check import check_store


def _hub_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vstore-ts-hub"]


class _SilentCamera:
    """Accepts, sends a few seconds of MPEG-TS at once (enough to probe), then keeps the
    connection open without another byte: a camera whose encoder hung."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.srv.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        self.conns.append(conn)
        conn.sendall(self.data)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.srv.close()


def test_silent_camera_times_out_alone_and_the_others_keep_recording(store, tmp_path):
    src = tmp_path / "head.ts"
    write_file(str(src), StreamSpec(codec="h264", gop_frames=25), 3.0)
    silent = _SilentCamera(src.read_bytes())
    try:
        with TcpCamera(SPEC) as live:
            quiet = Recorder(store, "quiet", silent.url, duration_s=9.0, reconnect=False)
            busy = Recorder(store, "busy", live.url, duration_s=9.0)
            threads = [threading.Thread(target=r.run) for r in (quiet, busy)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
    finally:
        silent.close()
    assert "no data for 5 s" in quiet.status.last_error
    assert quiet.status.demuxer == "native"
    # Every frame it sent is stored, the last too (assembled until the next would begin).
    assert len(decoded_ok(store, "quiet")) == 75
    assert busy.status.writer["packets"] >= 8 * 25 and not busy.status.last_error
    decoded_ok(store, "busy")  # every frame in order: the hub never waited on the quiet one
    rep = check_store(store)
    assert rep.ok, [(p.code, p.path, p.message) for p in rep.problems]


def test_stuck_writer_drops_to_a_keyframe_counted_and_never_stalls_other_cameras(store_dir):
    from vstore.api import open_store

    store_dir.mkdir(parents=True, exist_ok=True)
    (store_dir / "vstore.toml").write_text("[cameras.stuck]\nqueue_packets = 16\n")
    store = open_store(store_dir)
    try:
        with TcpCamera(SPEC) as a, TcpCamera(SPEC) as b:
            stuck = Recorder(store, "stuck", a.url, duration_s=12.0)
            fine = Recorder(store, "fine", b.url, duration_s=12.0)
            threads = [threading.Thread(target=r.run) for r in (stuck, fine)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while stuck.writer is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            assert stuck.writer is not None
            with stuck.writer._lock:  # the disk under this camera stops answering
                time.sleep(7.0)  # a GOP's batch fills its queue of 16 packets
                # The bound counts packets, not batches: one batch (an empty queue takes any
                # size) and nothing more, where 16 batches of a GOP each would be let in.
                assert stuck._queue.qsize() <= 1
            for t in threads:
                t.join(timeout=90)
            # (both recorders ended and sealed: what check reads next is what they left)
            assert not any(t.is_alive() for t in threads)
        assert stuck.status.dropped_queue_full > 0  # counted, never silent
        assert fine.status.dropped_queue_full == 0
        decoded_ok(store, "fine")
        assert stuck.status.writer["packets"] > 0
        # Recording resumes at a keyframe: the frames before it in the batch that ends the
        # drop belong to a GOP whose start was dropped, and stored they would decode to
        # garbage inside the GOP still open. Every stored chunk is one whole run of frames.
        chunks = _chunk_counters(store, "stuck")
        assert len(chunks) >= 3
        for counters in chunks:
            assert counters == list(range(counters[0], counters[0] + len(counters)))
        rep = check_store(store)
        assert rep.ok, [(p.code, p.path, p.message) for p in rep.problems]
    finally:
        store.close()


def _chunk_counters(store, cam) -> list[list[int]]:
    """The frame counters each stored chunk of ``cam`` decodes to, chunk by chunk."""
    from tests.test_roundtrip import decode_counters

    out = []
    for seg in store.index.segments(store.camera_num(cam)):
        with store.segment_reader(seg) as rd:
            track = rd.meta.tracks[0]
            for e in rd.directory():
                video = [p for p in rd.iter_packets([e]) if p.track == 0]
                if video:
                    out.append(decode_counters(track, video))
    return out


def test_hub_thread_ends_when_no_camera_is_left(store):
    with TcpCamera(SPEC) as cam:
        Recorder(store, "c", cam.url, duration_s=2.0).run()
    deadline = time.monotonic() + 2.0
    while _hub_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _hub_threads() == []


class _CountingRecorder(Recorder):
    """A recorder that keeps every batch the hub hands to its writer queue."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[int, bool]] = []  # (packets, holds a keyframe)

    def enqueue(self, item, is_video_key, block=True, key_at=None) -> None:
        if type(item) is list:
            self.batches.append((len(item), bool(is_video_key)))
        super().enqueue(item, is_video_key, block, key_at)


def test_hub_hands_a_camera_over_once_per_gop_not_once_per_read(store):
    # Each hand-over wakes a writer thread; at hundreds of cameras those wake-ups cost more
    # than the writing. The writer needs the keyframe to close a GOP, so that is when the
    # hub hands over (and at most HANDOVER_MAX_S later for a long GOP).
    with TcpCamera(SPEC) as cam:  # 1 s GOPs, real time
        rec = _CountingRecorder(store, "c", cam.url, duration_s=8.0)
        rec.run()
    keyed = [n for n, key in rec.batches if key]
    assert len(rec.batches) >= 5
    # After the probe's head, every hand-over but the session's last carries a keyframe.
    assert len(keyed) >= len(rec.batches) - 2
    # About one per GOP: 8 s of 1 s GOPs, where reading every 0.25 s gave up to 32.
    assert len(rec.batches) <= 8 + 3, rec.batches
    decoded_ok(store, "c")


def test_udp_and_tcp_cameras_share_the_hub_and_each_is_read_at_its_own_pace(store):
    # A UDP socket is drained every 100 ms (datagrams beyond its buffer are lost), a TCP one
    # every 250 ms; in one hub the UDP camera sets the tick and the TCP one skips ticks.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TcpCamera(SPEC) as cam:
        tcp = _CountingRecorder(store, "tcp", cam.url, duration_s=6.0)
        udp = _CountingRecorder(store, "udp", f"udp://127.0.0.1:{port}", duration_s=6.0)
        threads = [threading.Thread(target=r.run) for r in (tcp, udp)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        with UdpPusher(SPEC, port, duration_s=6.0):
            for t in threads:
                t.join(timeout=30)
    for rec in (tcp, udp):
        assert rec.status.demuxer == "native" and not rec.status.last_error
        assert rec.status.ts_continuity_errors == 0  # no datagram lost between reads
        assert rec.status.writer["packets"] >= 3 * 25
        assert len(rec.batches) <= 6 + 3  # once per 1 s GOP, for both
        decoded_ok(store, rec.camera_id)
    rep = check_store(store)
    assert rep.ok, [(p.code, p.path, p.message) for p in rep.problems]
