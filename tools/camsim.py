"""Camera simulator: real H.264/H.265 (+ AAC or G.711) streams made with PyAV, served the way
IP cameras serve them (MPEG-TS over TCP or UDP) or written to files.

Every picture carries its frame index as a strip of 16 black/white blocks (LSB first), robust
to lossy coding, so tests can decode a recording and check frame-exact results with
``read_frame_counter``. A bar moves across the picture so that the encoder has motion.
"""

from __future__ import annotations

import argparse
import io
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import av
import numpy as np

COUNTER_BITS = 16
_FORMATS = {".ts": "mpegts", ".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
_ENCODERS = {"h264": "libx264", "hevc": "libx265"}


@dataclass(frozen=True)
class StreamSpec:
    """What a simulated camera sends."""

    codec: str = "h264"  # "h264" | "hevc"
    width: int = 320
    height: int = 240
    fps: int = 25
    gop_frames: int = 50
    bitrate: int = 500_000
    bframes: int = 0
    audio: str | None = None  # None | "aac" | "pcm_mulaw" | "pcm_alaw"
    audio_rate: int = 0  # 0: 48000 for AAC, 8000 for G.711
    start_index: int = 0

    @property
    def sample_rate(self) -> int:
        if self.audio_rate:
            return self.audio_rate
        return 48000 if self.audio == "aac" else 8000


def _block_height(height: int) -> int:
    return max(16, height // 12)


# A 3x5 pixel font for the visible clock (digits, ':' and '.').
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
    ":": "000010000010000",
    ".": "000000000000010",
}
_GLYPHS = {
    c: np.array([int(b) for b in bits], dtype=bool).reshape(5, 3) for c, bits in _FONT.items()
}


def _draw_text(img: np.ndarray, text: str, x: int, y: int, scale: int) -> None:
    for i, ch in enumerate(text):
        glyph = np.kron(_GLYPHS[ch], np.ones((scale, scale), dtype=bool))
        x0 = x + i * 4 * scale
        region = img[y : y + glyph.shape[0], x0 : x0 + glyph.shape[1]]
        if region.shape[:2] != glyph.shape:
            return
        region[glyph] = 255


def frame_counter_pattern(index: int, width: int, height: int, fps: int = 25) -> np.ndarray:
    """An RGB24 frame: grey background, a moving bar, the index as a 16-block strip, and a
    visible clock (media time HH:MM:SS.ff) for people looking at the footage."""
    img = np.full((height, width, 3), 96, dtype=np.uint8)
    bar = (index * 4) % max(1, width - 8)
    img[:, bar : bar + 8] = (200, 60, 60)
    bw, bh = width // COUNTER_BITS, _block_height(height)
    for bit in range(COUNTER_BITS):
        img[:bh, bit * bw : (bit + 1) * bw] = 255 if (index >> bit) & 1 else 0
    secs, frame = divmod(index, fps)
    text = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frame:02d}"
    scale = max(1, width // 160)
    _draw_text(img, text, 8, bh + 8, scale)
    return img


def read_frame_counter(frame_rgb: np.ndarray) -> int:
    """Read back the index written by frame_counter_pattern from a decoded RGB frame."""
    height, width = frame_rgb.shape[:2]
    bw, bh = width // COUNTER_BITS, _block_height(height)
    value = 0
    for bit in range(COUNTER_BITS):
        y0, x0 = bh // 4, bit * bw + bw // 4
        patch = frame_rgb[y0 : bh - bh // 4, x0 : x0 + bw // 2]
        if patch.mean() >= 128:
            value |= 1 << bit
    return value


def _add_video(container: Any, spec: StreamSpec, repeat_headers: bool) -> Any:
    if spec.codec not in _ENCODERS:
        raise ValueError(f"codec must be h264 or hevc, not {spec.codec!r}")
    s = container.add_stream(_ENCODERS[spec.codec], rate=spec.fps)
    s.width, s.height, s.pix_fmt = spec.width, spec.height, "yuv420p"
    s.bit_rate = spec.bitrate
    s.time_base = Fraction(1, spec.fps)
    g = str(spec.gop_frames)
    if spec.codec == "h264":
        params = f"keyint={g}:min-keyint={g}:scenecut=0:bframes={spec.bframes}"
        if repeat_headers:
            params += ":repeat-headers=1"
        s.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": params}
    else:
        params = f"keyint={g}:min-keyint={g}:scenecut=0:bframes={spec.bframes}:log-level=error"
        if repeat_headers:
            params += ":repeat-headers=1"
        s.options = {"preset": "ultrafast", "tune": "zerolatency", "x265-params": params}
    if spec.bframes:
        s.options = {**s.options, "tune": "film"}
    return s


def _add_audio(container: Any, spec: StreamSpec) -> Any:
    s = container.add_stream(spec.audio, rate=spec.sample_rate)
    s.layout = "mono"
    s.time_base = Fraction(1, spec.sample_rate)
    return s


class _AudioGen:
    """A 440 Hz tone, in frames sized for the encoder."""

    def __init__(self, stream: Any, spec: StreamSpec) -> None:
        self.stream = stream
        self.rate = spec.sample_rate
        self.fmt = stream.codec_context.format.name
        self.samples = stream.codec_context.frame_size or self.rate // 50
        self.pos = 0

    def frames_until(self, t_s: float) -> Iterator[Any]:
        while self.pos < t_s * self.rate:
            n = self.samples
            t = (np.arange(self.pos, self.pos + n) / self.rate).astype(np.float32)
            wave = 0.2 * np.sin(2 * np.pi * 440 * t)
            if self.fmt in ("fltp", "flt"):
                arr = wave.reshape(1, n).astype(np.float32)
            else:
                arr = (wave * 32767).astype(np.int16).reshape(1, n)
            frame = av.AudioFrame.from_ndarray(arr, format=self.fmt, layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self.pos
            self.pos += n
            yield frame


def _encode(
    container: Any,
    spec: StreamSpec,
    frames: int | None,
    realtime: bool,
    repeat_headers: bool,
    stop: threading.Event | None = None,
    after_mux: Any = None,
) -> int:
    v = _add_video(container, spec, repeat_headers)
    a = _add_audio(container, spec) if spec.audio else None
    agen = _AudioGen(a, spec) if a is not None else None
    t0 = time.monotonic()
    i = 0
    while frames is None or i < frames:
        if stop is not None and stop.is_set():
            break
        if realtime:
            due = t0 + i / spec.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        img = frame_counter_pattern(spec.start_index + i, spec.width, spec.height, spec.fps)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for pkt in v.encode(frame):
            container.mux(pkt)
        if agen is not None:
            for af in agen.frames_until((i + 1) / spec.fps):
                for pkt in a.encode(af):
                    container.mux(pkt)
        if after_mux is not None:
            after_mux()
        i += 1
    for pkt in v.encode(None):
        container.mux(pkt)
    if a is not None:
        for pkt in a.encode(None):
            container.mux(pkt)
    return i


def write_file(path: str, spec: StreamSpec, duration_s: float, container: str | None = None) -> int:
    """Encode duration_s of the pattern into a file; returns the number of video frames."""
    fmt = container or _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the container of {path!r}: pass container=")
    frames = round(duration_s * spec.fps)
    with av.open(path, "w", format=fmt) as out:
        return _encode(out, spec, frames, realtime=False, repeat_headers=(fmt == "mpegts"))


class _Sink(io.RawIOBase):
    """A write-only file object that forwards muxer output to a callback."""

    def __init__(self, send: Any) -> None:
        self._send = send

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._send(data)
        return len(data)


def iter_ts_chunks(
    spec: StreamSpec,
    duration_s: float | None,
    realtime: bool = True,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """Encode live and yield MPEG-TS bytes as the muxer produces them."""
    buf: list[bytes] = []
    frames = None if duration_s is None else round(duration_s * spec.fps)
    result: dict[str, Any] = {}
    ready = threading.Condition()

    def send(data: bytes) -> None:
        with ready:
            buf.append(data)
            ready.notify()

    def produce() -> None:
        try:
            with av.open(_Sink(send), "w", format="mpegts", options={"flush_packets": "1"}) as out:
                _encode(out, spec, frames, realtime, True, stop)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            result["error"] = exc
        finally:
            with ready:
                result["done"] = True
                ready.notify()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    while True:
        with ready:
            while not buf and "done" not in result:
                ready.wait(0.5)
            chunk = b"".join(buf)
            buf.clear()
            done = "done" in result
        if chunk:
            yield chunk
        if done and not buf:
            break
    if "error" in result:
        raise result["error"]


class TcpCamera:
    """Serves MPEG-TS over TCP: every client gets its own live encoder from the first frame."""

    def __init__(
        self,
        spec: StreamSpec,
        duration_s: float | None = None,
        realtime: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.spec, self.duration_s, self.realtime = spec, duration_s, realtime
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"tcp://{host}:{self.port}"
        self._stop = threading.Event()
        self._clients: list[tuple[socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            ev = threading.Event()
            with self._lock:
                self._clients.append((conn, ev))
            t = threading.Thread(target=self._stream, args=(conn, ev), daemon=True)
            t.start()
            self._threads.append(t)

    def _stream(self, conn: socket.socket, ev: threading.Event) -> None:
        try:
            for chunk in iter_ts_chunks(self.spec, self.duration_s, self.realtime, ev):
                if self._stop.is_set() or ev.is_set():
                    break
                conn.sendall(chunk)
        except OSError:
            pass  # the client went away
        finally:
            ev.set()
            try:
                conn.close()
            except OSError:
                pass

    def drop_clients(self) -> None:
        """Close every current connection (a camera that drops its stream); keep listening."""
        with self._lock:
            clients, self._clients = self._clients, []
        for conn, ev in clients:
            ev.set()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.drop_clients()
        self._sock.close()
        self._accept.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpPusher:
    """Pushes MPEG-TS to udp://host:port in 1316-byte datagrams (7 TS packets), as cameras do."""

    DATAGRAM = 7 * 188

    def __init__(
        self,
        spec: StreamSpec,
        target_port: int,
        host: str = "127.0.0.1",
        duration_s: float | None = None,
        realtime: bool = True,
    ) -> None:
        self.spec, self.target = spec, (host, target_port)
        self.duration_s, self.realtime = duration_s, realtime
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            pending = b""
            for chunk in iter_ts_chunks(self.spec, self.duration_s, self.realtime, self._stop):
                pending += chunk
                while len(pending) >= self.DATAGRAM:
                    s.sendto(pending[: self.DATAGRAM], self.target)
                    pending = pending[self.DATAGRAM :]
                    self.sent += 1
            if pending:
                s.sendto(pending, self.target)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, not {text!r}") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError("size must be even and at least 64x64")
    return w, h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.camsim", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("file", "serve-tcp", "push-udp"):
        p = sub.add_parser(name)
        if name == "file":
            p.add_argument("out")
        p.add_argument("--duration", type=float, default=None if name != "file" else 20.0)
        p.add_argument("--codec", choices=["h264", "hevc"], default="h264")
        p.add_argument("--size", type=_size, default=(640, 360))
        p.add_argument("--fps", type=int, default=25)
        p.add_argument("--gop", type=int, default=50)
        p.add_argument("--audio", choices=["aac", "pcm_mulaw", "pcm_alaw"])
        if name == "serve-tcp":
            p.add_argument("--port", type=int, default=0)
            p.add_argument("--cameras", type=int, default=1)
        if name == "push-udp":
            p.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    spec = StreamSpec(
        codec=args.codec,
        width=args.size[0],
        height=args.size[1],
        fps=args.fps,
        gop_frames=args.gop,
        audio=args.audio,
    )
    try:
        if args.cmd == "file":
            n = write_file(args.out, spec, args.duration)
            print(f"wrote {n} frames to {args.out}")
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if args.cmd == "serve-tcp":
            cams = [
                TcpCamera(spec, args.duration, port=args.port if i == 0 else 0)
                for i in range(args.cameras)
            ]
            for c in cams:
                print(c.url, flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            finally:
                for c in cams:
                    c.close()
            return 0
        with UdpPusher(spec, args.port, duration_s=args.duration) as pusher:
            while pusher._thread.is_alive() and not stop.wait(0.5):
                pass
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, av.FFmpegError) as exc:
        print(f"camsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
