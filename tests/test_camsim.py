"""tools.camsim: real encoded footage whose frames carry their index, served over TCP and UDP."""

from __future__ import annotations

import io
import socket
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tools.camsim import (
    StreamSpec,
    TcpCamera,
    UdpPusher,
    frame_counter_pattern,
    iter_ts_chunks,
    main,
    read_frame_counter,
    write_file,
)

GOP = 10


def counters_of(frames) -> list[int]:
    return [read_frame_counter(f.to_ndarray(format="rgb24")) for f in frames]


def decode_ts(data: bytes) -> tuple[list[av.Packet], list[int]]:
    """Demux MPEG-TS bytes; decode from the first keyframe on. Returns (video packets, counters)."""
    with av.open(io.BytesIO(data), format="mpegts") as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        counters: list[int] = []
        started = False
        for p in packets:
            started = started or bool(p.is_keyframe)
            if started:
                counters += counters_of(stream.codec_context.decode(p))
        counters += counters_of(stream.codec_context.decode(None))
    return packets, counters


@pytest.mark.parametrize("index", [0, 1, 2, 255, 256, 12345, 65535])
def test_counter_pattern_reads_back(index):
    img = frame_counter_pattern(index, 320, 240)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert read_frame_counter(img) == index
    assert read_frame_counter(img[:, :, 0]) == index  # grey works too
    assert not np.array_equal(img, frame_counter_pattern(index + 1, 320, 240))


@pytest.mark.parametrize(
    "name,spec",
    [
        ("h264.ts", StreamSpec(codec="h264", gop_frames=GOP, start_index=7)),
        ("hevc.mp4", StreamSpec(codec="hevc", gop_frames=GOP)),
        ("h264-aac.mkv", StreamSpec(codec="h264", gop_frames=GOP, audio="aac")),
        ("h264-mulaw.mov", StreamSpec(codec="h264", gop_frames=GOP, audio="pcm_mulaw")),
        ("h264-bframes.mp4", StreamSpec(codec="h264", gop_frames=GOP, bframes=2)),
        ("hevc-bframes-aac.ts", StreamSpec(codec="hevc", gop_frames=GOP, bframes=2, audio="aac")),
    ],
)
def test_write_file_frames_keyframes_counters(tmp_path: Path, name, spec):
    path = tmp_path / name
    n = write_file(str(path), spec, 2.0)
    assert n == 50
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == spec.codec
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        packets = [p for p in c.demux(video) if p.size]
        assert len(packets) == n
        pts = [p.pts * p.time_base for p in packets]
        display = sorted(range(n), key=pts.__getitem__)  # decode order -> display order
        keyframes = sorted(display.index(i) for i, p in enumerate(packets) if p.is_keyframe)
        assert keyframes == list(range(0, n, GOP))
        assert sorted(pts) == [min(pts) + Fraction(i, spec.fps) for i in range(n)]
        reordered = sum(p.pts != p.dts for p in packets)
        assert reordered > 0 if spec.bframes else reordered == 0
        assert [s.codec_context.name for s in c.streams.audio] == (
            [spec.audio] if spec.audio else []
        )
    if spec.audio:
        with av.open(str(path)) as c:
            samples = sum(f.samples for f in c.decode(audio=0))
        assert abs(samples / spec.sample_rate - 2.0) < 0.1
    with av.open(str(path)) as c:
        assert counters_of(c.decode(video=0)) == list(range(spec.start_index, spec.start_index + n))


def test_write_file_is_fast(tmp_path: Path):
    t0 = time.perf_counter()
    assert write_file(tmp_path / "fast.ts", StreamSpec(), 20.0) == 500
    assert time.perf_counter() - t0 < 5.0  # typically < 1 s; generous for loaded CI


def test_write_file_rejects_bad_input(tmp_path: Path):
    with pytest.raises(ValueError, match="container"):
        write_file(tmp_path / "x.xyz", StreamSpec(), 1.0)
    with pytest.raises(ValueError, match="duration"):
        write_file(tmp_path / "x.ts", StreamSpec(), 0)
    with pytest.raises(ValueError, match="codec"):
        StreamSpec(codec="vp9")
    with pytest.raises(ValueError, match="size"):
        StreamSpec(width=321)
    with pytest.raises(ValueError, match="MPEG-TS"):
        write_file(tmp_path / "x.ts", StreamSpec(audio="pcm_mulaw"), 1.0)
    with pytest.raises(ValueError, match="MPEG-TS"):
        TcpCamera(StreamSpec(audio="pcm_mulaw"))


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_ts_stream_can_be_joined_mid_stream(codec):
    chunks = list(iter_ts_chunks(StreamSpec(codec=codec, gop_frames=GOP), 2.0, realtime=False))
    assert len(chunks) > 10
    assert all(len(c) % 188 == 0 and c[0] == 0x47 for c in chunks)
    data = b"".join(chunks)
    packets, counters = decode_ts(data)
    assert len(packets) == 50 and counters == list(range(50))
    # A receiver joining halfway starts at the next keyframe: headers are repeated in-band.
    _, counters = decode_ts(data[len(data) // 2 // 188 * 188 :])
    assert counters and counters[0] % GOP == 0 and counters[0] > 0
    assert counters == list(range(counters[0], 50))


def test_iter_ts_chunks_realtime_is_paced():
    t0 = time.monotonic()
    n = sum(1 for _ in iter_ts_chunks(StreamSpec(fps=25), 0.8, realtime=True))
    elapsed = time.monotonic() - t0
    assert n >= 20
    assert 0.7 < elapsed < 5.0


def test_tcp_camera_serves_each_client_from_the_start():
    spec = StreamSpec(gop_frames=GOP, start_index=100)
    with TcpCamera(spec, duration_s=2.0, realtime=False) as cam:
        assert cam.url == f"tcp://127.0.0.1:{cam.port}"
        for _ in range(2):  # a new encoder per client
            with av.open(cam.url, timeout=10) as c:
                video = c.streams.video[0]
                packets = [p for p in c.demux(video) if p.size]
                assert len(packets) == 50
                assert packets[0].is_keyframe
                frames = [f for p in packets[:5] for f in video.codec_context.decode(p)]
                frames += video.codec_context.decode(None)
                assert counters_of(frames) == [100, 101, 102, 103, 104]
        assert cam.connections == 2
        assert cam.errors == []


def assert_closed_soon(s: socket.socket, within_s: float = 5.0) -> None:
    """Read until EOF or reset; fail if the peer is still sending after within_s."""
    deadline = time.monotonic() + within_s
    try:
        while s.recv(65536):
            assert time.monotonic() < deadline, "the camera did not drop the connection"
    except ConnectionResetError:
        pass


def test_tcp_camera_drop_clients_then_reconnect():
    with TcpCamera(StreamSpec(), realtime=True) as cam:
        with socket.create_connection(("127.0.0.1", cam.port), timeout=10) as s:
            first = s.recv(4096)
            assert first[:1] == b"\x47"
            cam.drop_clients()
            assert_closed_soon(s)
        assert cam.client_count == 0
        with socket.create_connection(("127.0.0.1", cam.port), timeout=10) as s:
            assert s.recv(4096)[:1] == b"\x47"  # still listening
        port = cam.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert cam.errors == []


def test_udp_pusher_sends_real_time_ts_datagrams():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5.0)
        grams: list[tuple[float, bytes]] = []
        with UdpPusher(StreamSpec(gop_frames=GOP), rx.getsockname()[1], duration_s=2.0) as pusher:
            grams.append((time.monotonic(), rx.recv(65536)))
            rx.settimeout(0.3)
            while True:
                try:
                    grams.append((time.monotonic(), rx.recv(65536)))
                except TimeoutError:
                    if not pusher.running:
                        break
            assert pusher.wait(timeout=5)
        assert pusher.error is None
    assert len(grams) == pusher.sent > 10
    assert all(g[:1] == b"\x47" and len(g) % 188 == 0 and len(g) <= 1316 for _, g in grams)
    assert all(len(g) == 1316 for _, g in grams[:-1])
    assert 1.5 < grams[-1][0] - grams[0][0] < 5.0  # paced at 25 fps, not a burst
    _, counters = decode_ts(b"".join(g for _, g in grams))
    assert counters == list(range(50))


def test_cli_file_and_errors(tmp_path: Path, capsys):
    out = tmp_path / "cli.ts"
    assert main(["file", str(out), "--duration", "1", "--size", "160x120", "--gop", "5"]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.width == 160
        assert counters_of(c.decode(video=0)) == list(range(25))
    capsys.readouterr()
    assert main(["file", str(tmp_path / "x.xyz"), "--duration", "1"]) == 2
    assert main(["file", str(tmp_path / "no" / "x.ts"), "--duration", "1"]) == 2
    assert main(["file", str(out), "--size", "big"]) == 2
    assert main(["file", str(out), "--duration", "-1"]) == 2
    assert main(["serve-tcp", "--cameras", "0"]) == 2
    assert main(["push-udp"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot tell the container" in err and "--size" in err
