"""Camera simulator: makes real H.264/H.265 (+ AAC or G.711) streams with PyAV and serves them
the way IP cameras do (MPEG-TS over TCP or UDP), or writes them to files, so that the recorder
can be tested over real sockets.

Every picture carries its frame index as a strip of 16 black/white blocks along the top (LSB
first), robust to lossy coding, so tests can decode a recording and check frame-exact results
with ``read_frame_counter``. A bar moves across the picture so that the encoder has motion, and
a small clock (media time) is drawn for people looking at the footage.

Library use::

    from tools.camsim import StreamSpec, TcpCamera, write_file
    write_file("/tmp/a.ts", StreamSpec(codec="hevc"), 10.0)
    with TcpCamera(StreamSpec(), realtime=True) as cam:
        record(cam.url)

Script use: ``python -m tools.camsim {file,serve-tcp,push-udp} --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
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

__all__ = [
    "COUNTER_BITS",
    "StreamSpec",
    "TcpCamera",
    "UdpPusher",
    "frame_counter_pattern",
    "iter_ts_chunks",
    "main",
    "read_frame_counter",
    "write_file",
]

COUNTER_BITS = 16
"""Bits in the pixel counter: indices are stored (and read back) modulo 2**16."""

TS_PACKET = 188
_FORMATS = {".ts": "mpegts", ".m2ts": "mpegts", ".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
_ENCODERS = {"h264": "libx264", "hevc": "libx265"}
_AUDIO_CODECS = ("aac", "pcm_mulaw", "pcm_alaw")
_TONE_HZ = 440.0


@dataclass(frozen=True)
class StreamSpec:
    """What a simulated camera sends. Invalid values raise ValueError on construction."""

    codec: str = "h264"  # "h264" | "hevc"
    width: int = 320
    height: int = 240
    fps: int = 25
    gop_frames: int = 50  # a keyframe (IDR, closed GOP) every gop_frames frames
    # Open GOPs (x265's and many cameras' default): each keyframe after the first is a CRA
    # (HEVC) or a recovery-point I-frame (H.264) whose leading B-frames, sent after it, are
    # shown before it and refer to the GOP before.
    open_gop: bool = False
    bitrate: int = 500_000
    bframes: int = 0
    audio: str | None = None  # None | "aac" | "pcm_mulaw" | "pcm_alaw"
    audio_rate: int = 0  # 0: the codec's usual rate (48000 for AAC, 8000 for G.711)
    start_index: int = 0  # the counter of the first frame
    # Random texture below the counter strip (0: none; up to 128): busy scenes that make the
    # encoder spend its bitrate, as a real street does, instead of a few kbit/s.
    noise: int = 0

    def __post_init__(self) -> None:
        if self.codec not in _ENCODERS:
            raise ValueError(f"codec must be 'h264' or 'hevc', not {self.codec!r}")
        if self.width < 2 * COUNTER_BITS or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(
                f"size must be even and at least 32x16, not {self.width}x{self.height}"
            )
        if not 1 <= self.fps <= 240:
            raise ValueError(f"fps must be 1..240, not {self.fps}")
        if self.gop_frames < 1:
            raise ValueError(f"gop_frames must be >= 1, not {self.gop_frames}")
        if not 0 <= self.bframes <= 16:
            raise ValueError(f"bframes must be 0..16, not {self.bframes}")
        if self.bitrate <= 0:
            raise ValueError(f"bitrate must be > 0, not {self.bitrate}")
        if not 0 <= self.noise <= 128:
            raise ValueError(f"noise must be 0..128, not {self.noise}")
        if self.audio is not None and self.audio not in _AUDIO_CODECS:
            raise ValueError(f"audio must be one of {', '.join(_AUDIO_CODECS)}, not {self.audio!r}")
        if self.audio_rate < 0:
            raise ValueError(f"audio_rate must be >= 0, not {self.audio_rate}")
        if self.start_index < 0:
            raise ValueError(f"start_index must be >= 0, not {self.start_index}")

    @property
    def sample_rate(self) -> int:
        """The audio sample rate actually used (audio_rate, or the codec's default)."""
        if self.audio_rate:
            return self.audio_rate
        return 48000 if self.audio == "aac" else 8000


# --------------------------------------------------------------------------- the picture


def _block_size(width: int, height: int) -> tuple[int, int]:
    """Width and height of one counter block."""
    return width // COUNTER_BITS, max(16, height // 12)


@functools.lru_cache(maxsize=16)
def _base_pattern(width: int, height: int) -> np.ndarray:
    """The static part of every picture: a grey background with a soft vertical gradient."""
    ramp = np.linspace(72, 120, height, dtype=np.float32).astype(np.uint8)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = ramp[:, None, None]
    img.setflags(write=False)
    return img


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


@functools.lru_cache(maxsize=8)
def _glyphs(scale: int) -> dict[str, np.ndarray]:
    ones = np.ones((scale, scale), dtype=bool)
    return {
        c: np.kron(np.array([b == "1" for b in bits]).reshape(5, 3), ones)
        for c, bits in _FONT.items()
    }


def _draw_text(img: np.ndarray, text: str, x: int, y: int, scale: int) -> None:
    glyphs = _glyphs(scale)
    for i, ch in enumerate(text):
        glyph = glyphs[ch]
        x0 = x + i * 4 * scale
        region = img[y : y + glyph.shape[0], x0 : x0 + glyph.shape[1]]
        if region.shape[:2] != glyph.shape:
            return  # does not fit: clip the rest of the text
        region[glyph] = 255


def frame_counter_pattern(index: int, width: int, height: int, fps: int = 25) -> np.ndarray:
    """An RGB24 (height, width, 3) uint8 picture for frame ``index``.

    The top strip holds ``index % 2**16`` as 16 pure black/white blocks (LSB first, each
    ``width // 16`` wide and at least 16 px tall); below it a clock shows the media time
    (HH:MM:SS.ff at ``fps``); a red bar moves 4 px per frame.
    """
    if width < 2 * COUNTER_BITS or height < 16:
        raise ValueError(f"picture too small for the counter: {width}x{height}")
    img = _base_pattern(width, height).copy()
    bar = (index * 4) % max(1, width - 8)
    img[:, bar : bar + 8] = (200, 60, 60)
    bw, bh = _block_size(width, height)
    bits = (index >> np.arange(COUNTER_BITS)) & 1
    img[:bh, : bw * COUNTER_BITS] = np.repeat(bits.astype(np.uint8) * 255, bw)[None, :, None]
    secs, frame = divmod(index, fps)
    text = f"{secs // 3600 % 100:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frame:02d}"
    _draw_text(img, text, 8, bh + 8, max(1, width // 160))
    return img


def read_frame_counter(frame_rgb: np.ndarray) -> int:
    """Read back the index (modulo 2**16) drawn by frame_counter_pattern from a decoded frame.

    Accepts an RGB (h, w, 3) or grey (h, w) array; samples the central half of each block and
    thresholds its mean at 128.
    """
    if frame_rgb.ndim not in (2, 3):
        raise ValueError(f"expected an (h, w) or (h, w, 3) array, got shape {frame_rgb.shape}")
    height, width = frame_rgb.shape[:2]
    bw, bh = _block_size(width, height)
    strip = frame_rgb[bh // 4 : bh - bh // 4, : bw * COUNTER_BITS].astype(np.float32)
    if strip.ndim == 3:
        strip = strip.mean(axis=2)
    blocks = strip.reshape(strip.shape[0], COUNTER_BITS, bw)[:, :, bw // 4 : bw - bw // 4]
    on = blocks.mean(axis=(0, 2)) >= 128
    return int(np.sum(on.astype(np.int64) << np.arange(COUNTER_BITS)))


def _add_noise(img: np.ndarray, spec: StreamSpec, index: int) -> None:
    """Texture below the counter strip (left readable), different in every frame."""
    _bw, bh = _block_size(spec.width, spec.height)
    rng = np.random.default_rng(index)
    region = img[bh * 2 :]
    noise = rng.integers(-spec.noise, spec.noise + 1, size=region.shape[:2], dtype=np.int16)
    region[:] = np.clip(region.astype(np.int16) + noise[:, :, None], 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- encoding


def _add_video(container: Any, spec: StreamSpec, repeat_headers: bool) -> Any:
    s = container.add_stream(_ENCODERS[spec.codec], rate=spec.fps)
    s.width, s.height, s.pix_fmt = spec.width, spec.height, "yuv420p"
    s.bit_rate = spec.bitrate
    s.time_base = Fraction(1, spec.fps)
    s.codec_context.time_base = Fraction(1, spec.fps)
    g = spec.gop_frames
    # GOPs of exactly g frames, no scene-cut keyframes: what IP cameras do.
    params = f"keyint={g}:min-keyint={g}:scenecut=0:bframes={spec.bframes}"
    params += f":open-gop={int(spec.open_gop)}"
    if spec.codec == "hevc":
        params += ":log-level=error"
        if spec.bframes:  # zerolatency has no lookahead, which x265 needs for B-frames
            params += f":rc-lookahead={spec.bframes + 1}"
    if repeat_headers:  # SPS/PPS (and VPS) in-band before every keyframe
        params += ":repeat-headers=1"
    s.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(g),
        "keyint_min": str(g),
        "bf": str(spec.bframes),
        f"{_ENCODERS[spec.codec][3:]}-params": params,  # x264-params / x265-params
    }
    return s


def _add_audio(container: Any, spec: StreamSpec) -> Any:
    s = container.add_stream(spec.audio, rate=spec.sample_rate)
    s.layout = "mono"
    s.time_base = Fraction(1, spec.sample_rate)
    return s


class _Tone:
    """A mono sine tone cut into encoder-sized frames (AAC: 1024 fltp, G.711: 20 ms s16)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.rate = spec.sample_rate
        self.aac = spec.audio == "aac"
        self.samples = 1024 if self.aac else max(1, self.rate // 50)
        self.pos = 0

    def frames_until(self, t_s: float) -> Iterator[av.AudioFrame]:
        while self.pos < t_s * self.rate:
            n = self.samples
            t = np.arange(self.pos, self.pos + n, dtype=np.float64) / self.rate
            wave = (0.2 * np.sin(2 * np.pi * _TONE_HZ * t)).reshape(1, n)
            if self.aac:
                frame = av.AudioFrame.from_ndarray(wave.astype(np.float32), "fltp", "mono")
            else:
                frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16), "s16", "mono")
            frame.sample_rate = self.rate
            frame.time_base = Fraction(1, self.rate)
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
) -> Iterator[int]:
    """Encode and mux frame after frame; yields each video frame's number once it is muxed.

    Encoders are flushed when the generator is exhausted (not when it is closed early).
    """
    v = _add_video(container, spec, repeat_headers)
    a = _add_audio(container, spec) if spec.audio else None
    tone = _Tone(spec) if a is not None else None
    t0 = time.monotonic()
    i = 0
    while frames is None or i < frames:
        if stop is not None and stop.is_set():
            return
        if realtime:
            delay = t0 + i / spec.fps - time.monotonic()
            if delay > 0:
                if stop is not None:
                    if stop.wait(delay):
                        return
                else:
                    time.sleep(delay)
        img = frame_counter_pattern(spec.start_index + i, spec.width, spec.height, spec.fps)
        if spec.noise:
            _add_noise(img, spec, i)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, spec.fps)
        container.mux(v.encode(frame))
        if tone is not None:
            for af in tone.frames_until((i + 1) / spec.fps):
                container.mux(a.encode(af))
        yield i
        i += 1
    container.mux(v.encode(None))
    if a is not None:
        container.mux(a.encode(None))


def _check_ts_audio(spec: StreamSpec) -> None:
    if spec.audio is not None and spec.audio.startswith("pcm_"):
        raise ValueError(f"MPEG-TS cannot carry {spec.audio} audio: use aac, or a .mov file")


def _frame_count(duration_s: float | None, fps: int) -> int | None:
    if duration_s is None:
        return None
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration must be > 0 seconds, not {duration_s}")
    return max(1, round(duration_s * fps))


def write_file(
    path: str | os.PathLike[str],
    spec: StreamSpec,
    duration_s: float,
    container: str | None = None,
) -> int:
    """Encode ``duration_s`` of the pattern (and a tone if ``spec.audio``) into a file.

    The format comes from ``container`` or the extension (.ts, .mp4, .mkv, .mov). Video pts are
    frame numbers in time base 1/fps. Returns the number of video frames written.
    """
    fmt = container or _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the container of {str(path)!r}: pass container=")
    frames = _frame_count(duration_s, spec.fps)
    if fmt == "mpegts":
        _check_ts_audio(spec)
    if not Path(path).parent.is_dir():  # PyAV would only say "No such file or directory"
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(Path(path).parent))
    with av.open(str(path), "w", format=fmt) as out:
        return sum(1 for _ in _encode(out, spec, frames, False, fmt == "mpegts"))


class _Sink:
    """A write-only, non-seekable file object collecting muxer output."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def iter_ts_chunks(
    spec: StreamSpec,
    duration_s: float | None,
    realtime: bool = True,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """Encode live and yield MPEG-TS bytes as the muxer produces them (whole 188-byte packets).

    ``realtime`` paces frames to the wall clock at spec.fps, otherwise as fast as the consumer
    takes them (the generator does the work, so a slow consumer slows the encoder). SPS/PPS
    are repeated before every keyframe so that a receiver can join mid-stream.
    ``duration_s=None`` streams forever; setting ``stop`` or closing the generator ends it.
    """
    frames = _frame_count(duration_s, spec.fps)
    _check_ts_audio(spec)
    sink = _Sink()
    # flush_packets: hand every muxed packet to the sink at once instead of filling a buffer.
    out = av.open(sink, "w", format="mpegts", options={"flush_packets": "1"})
    finished = False
    try:
        for _ in _encode(out, spec, frames, realtime, True, stop):
            data = sink.drain()
            if data:
                yield data
        finished = True
    finally:
        out.close()
    if finished:
        data = sink.drain()
        if data:
            yield data


# --------------------------------------------------------------------------- network cameras


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class TcpCamera:
    """Serves MPEG-TS over TCP like an IP camera: every client that connects gets its own live
    encoder, starting at ``spec.start_index``. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        spec: StreamSpec,
        duration_s: float | None = None,
        realtime: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        _frame_count(duration_s, spec.fps)  # validate now, not in a thread
        _check_ts_audio(spec)
        self.spec, self.duration_s, self.realtime = spec, duration_s, realtime
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"tcp://{_url_host(host)}:{self.port}"
        self.connections = 0  # clients accepted so far
        self.errors: list[BaseException] = []  # unexpected failures of client threads
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, tuple[threading.Event, threading.Thread]] = {}
        self._accept = threading.Thread(target=self._serve, name=f"camsim-tcp-{self.port}")
        self._accept.daemon = True
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listening socket closed
            conn.settimeout(None)
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                ev = threading.Event()
                t = threading.Thread(target=self._stream, args=(conn, ev), daemon=True)
                self._clients[conn] = (ev, t)
                self.connections += 1
                t.start()

    def _stream(self, conn: socket.socket, ev: threading.Event) -> None:
        try:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            chunks = iter_ts_chunks(self.spec, self.duration_s, self.realtime, ev)
            with contextlib.closing(chunks):
                for chunk in chunks:
                    if ev.is_set() or self._stop.is_set():
                        break
                    conn.sendall(chunk)
        except OSError:
            pass  # the client went away or was dropped
        except Exception as exc:  # noqa: BLE001 - kept for the owner, never kills the server
            self.errors.append(exc)
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.close()

    @property
    def client_count(self) -> int:
        """Clients currently being streamed to."""
        with self._lock:
            return len(self._clients)

    def drop_clients(self, timeout: float = 5.0) -> None:
        """Cut every current connection (a camera dropping its stream) but keep listening, so
        that the recorder can reconnect. Waits up to ``timeout`` for the client threads."""
        with self._lock:
            clients = list(self._clients.items())
        for conn, (ev, _) in clients:
            ev.set()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, (_, t) in clients:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop listening, cut all clients and join the threads (with a timeout)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accept.join(timeout=5)
        self.drop_clients()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TcpCamera({self.url}, {self.spec.codec} {self.spec.width}x{self.spec.height})"


class UdpPusher:
    """Pushes MPEG-TS to udp://host:target_port in datagrams of 7 TS packets (1316 bytes), as
    cameras do, from a background thread. Use as a context manager or call ``close()``."""

    DATAGRAM = 7 * TS_PACKET

    def __init__(
        self,
        spec: StreamSpec,
        target_port: int,
        host: str = "127.0.0.1",
        duration_s: float | None = None,
        realtime: bool = True,
    ) -> None:
        _frame_count(duration_s, spec.fps)
        _check_ts_audio(spec)
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port must be 1..65535, not {target_port}")
        self.spec, self.target = spec, (host, target_port)
        self.duration_s, self.realtime = duration_s, realtime
        self.url = f"udp://{_url_host(host)}:{target_port}"
        self.sent = 0  # datagrams sent
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camsim-udp-{target_port}")
        self._thread.daemon = True
        self._thread.start()

    def _run(self) -> None:
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                pending = bytearray()
                chunks = iter_ts_chunks(self.spec, self.duration_s, self.realtime, self._stop)
                with contextlib.closing(chunks):
                    for chunk in chunks:
                        pending += chunk
                        full = len(pending) - len(pending) % self.DATAGRAM
                        for off in range(0, full, self.DATAGRAM):
                            s.sendto(pending[off : off + self.DATAGRAM], self.target)
                            self.sent += 1
                        del pending[:full]
                if pending and not self._stop.is_set():
                    s.sendto(pending, self.target)
                    self.sent += 1
        except Exception as exc:  # noqa: BLE001 - kept for the owner
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end (duration reached); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- command line


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, not {text!r}") from None
    if w < 32 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even and at least 32x16, not {text!r}")
    return w, h


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, not {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {port}")
    return port


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.camsim",
        description="Simulated IP cameras: real H.264/H.265 MPEG-TS over TCP/UDP, or files.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{file,serve-tcp,push-udp}")
    helps = {
        "file": "write a recording (.ts, .mp4, .mkv, .mov)",
        "serve-tcp": "serve N cameras on tcp://, print one URL per line, run until Ctrl-C",
        "push-udp": "push MPEG-TS datagrams to udp://HOST:PORT",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == "file":
            p.add_argument("out", help="output file; the extension picks the container")
            p.add_argument("--container", help="container format, e.g. mpegts (default: ext)")
        p.add_argument(
            "--duration",
            type=_positive(float),
            default=20.0 if name == "file" else None,
            help="seconds" + (" (default 20)" if name == "file" else " (default: forever)"),
        )
        p.add_argument("--codec", choices=sorted(_ENCODERS), default="h264")
        p.add_argument("--size", type=_size, default=(640, 360), help="WxH (default 640x360)")
        p.add_argument("--fps", type=_positive(int), default=25)
        p.add_argument("--gop", type=_positive(int), default=50, help="frames per keyframe")
        p.add_argument("--bframes", type=int, default=0)
        p.add_argument("--bitrate", type=_positive(int), default=500_000, help="bits/s")
        p.add_argument("--audio", choices=_AUDIO_CODECS)
        p.add_argument("--start-index", type=int, default=0, help="counter of the first frame")
        if name != "file":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--fast", action="store_true", help="as fast as possible, not real time")
        if name == "serve-tcp":
            p.add_argument("--port", type=_port, default=0, help="first port (0: any free ports)")
            p.add_argument("--cameras", type=_positive(int), default=1)
        if name == "push-udp":
            p.add_argument("--port", type=_port, required=True, help="destination port")
    return ap


def _run_until_stopped(done: Any) -> None:
    """Block until ``done()`` is true, Ctrl-C (KeyboardInterrupt) or SIGTERM."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not done() and not stop.wait(0.2):
            pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 for bad arguments or failures)."""
    ap = _parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    cams: list[TcpCamera] = []
    try:
        spec = StreamSpec(
            codec=args.codec,
            width=args.size[0],
            height=args.size[1],
            fps=args.fps,
            gop_frames=args.gop,
            bframes=args.bframes,
            bitrate=args.bitrate,
            audio=args.audio,
            start_index=args.start_index,
        )
        if args.cmd == "file":
            n = write_file(args.out, spec, args.duration, args.container)
            print(f"wrote {n} frames to {args.out}")
            return 0
        realtime = not args.fast
        if args.cmd == "serve-tcp":
            if args.port and args.port + args.cameras > 65536:
                raise ValueError(f"ports {args.port}+{args.cameras} go past 65535")
            for i in range(args.cameras):
                port = args.port + i if args.port else 0
                cams.append(TcpCamera(spec, args.duration, realtime, args.host, port))
            for cam in cams:
                print(cam.url, flush=True)
            _run_until_stopped(lambda: False)
            return 0
        with UdpPusher(spec, args.port, args.host, args.duration, realtime) as pusher:
            print(pusher.url, flush=True)
            _run_until_stopped(lambda: not pusher.running)
        if pusher.error is not None:
            raise pusher.error
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, av.FFmpegError) as exc:
        msg, filename = str(exc), getattr(exc, "filename", None)
        if filename and str(filename) not in msg:
            msg += f": {filename}"
        print(f"camsim: error: {msg}", file=sys.stderr)
        return 2
    finally:
        for cam in cams:
            cam.close()


if __name__ == "__main__":
    sys.exit(main())
