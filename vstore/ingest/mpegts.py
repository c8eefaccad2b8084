"""Live MPEG-TS over TCP or UDP, read without FFmpeg's demuxer on the per-packet path.

A camera's first seconds are buffered and probed once: the codec parameters come from the
stream itself (the PMT's stream types, the keyframe's SPS, the first ADTS header), and from
PyAV only when that is not enough (other stream types, an SPS it cannot read); from then on
the compiled transport-stream demuxer
(``_native.tsdemux``) turns socket reads into packets for the writer: no demuxer or parser
object per frame, and socket reads in large blocks. The probed bytes are demuxed too, so
nothing before the switch is lost. Sources with streams the native path cannot frame (audio
other than AAC in ADTS) are left to FFmpeg (``ingest``), as are URLs with options.
"""

from __future__ import annotations

import io
import ipaddress
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vstore import _native
from vstore.base.errors import CorruptSegment, SourceError
from vstore.base.redaction import redact_url
from vstore.codec.aac import adts_to_asc, asc_sample_rate, split_adts
from vstore.codec.parameter_sets import video_size
from vstore.ingest.tracks import SourceTracks, tracks_from_av
from vstore.segment.format import TrackInfo

READ_BYTES = 256 * 1024  # at most one read: what a socket gives at once
READ_INTERVAL_S = 0.1
PROBE_MAX_BYTES = 16 * 1024 * 1024
PROBE_MAX_S = 10.0
PROBE_AUDIO_WAIT_S = 1.0  # after the first keyframe, how long to wait for listed audio
_STREAM_CODEC = {0x1B: "h264", 0x24: "hevc", 0x0F: "aac"}


def native_eligible(url: str) -> bool:
    """tcp://HOST:PORT and udp://[HOST]:PORT without FFmpeg options in a query."""
    return url.startswith(("tcp://", "udp://")) and "?" not in url


class TsSocket:
    """A TCP client connection or a bound UDP socket (joining the group when the host is a
    multicast address, as FFmpeg's udp:// input does)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        parts = urlsplit(url)
        host = (parts.hostname or "").strip("[]")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            raise SourceError(f"{url}: needs a port")
        self.timeout_s = timeout_s
        self._next_read = 0.0
        try:
            if parts.scheme == "tcp":
                self.sock = socket.create_connection((host, port), timeout=timeout_s)
                self.udp = False
            else:
                self.udp = True
                self.sock = self._bind_udp(host, port)
        except OSError as exc:
            raise SourceError(f"cannot open {redact_url(url)}: {exc.strerror or exc}") from exc
        # Non-blocking, with the wait done here (poll): a drain of what is queued must never
        # wait (Python waits out the socket timeout even for MSG_DONTWAIT on a timed socket).
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)

    @staticmethod
    def _bind_udp(host: str, port: int) -> socket.socket:
        addr = ipaddress.ip_address(host) if host and host != "@" else None
        family = socket.AF_INET6 if addr is not None and addr.version == 6 else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bursts of a 4 Mbit/s camera must not overflow the kernel buffer between reads.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        if addr is not None and addr.is_multicast:
            s.bind(("" if family == socket.AF_INET else "::", port))
            if family == socket.AF_INET:
                mreq = addr.packed + socket.inet_aton("0.0.0.0")
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                mreq = addr.packed + (0).to_bytes(4, "little")
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        else:
            s.bind((str(addr) if addr is not None else "", port))
        return s

    def read(self) -> bytes:
        """The next bytes; b"" when a TCP camera closed the connection.

        Reads are paced to at most one per READ_INTERVAL_S: the kernel buffers what arrives
        meanwhile, so a 4 Mbit/s camera costs ~10 wake-ups a second instead of one per
        network packet (a UDP camera sends ~400 datagrams a second; all that are waiting are
        taken at once). A read that fills READ_BYTES is followed at once by the next, so
        pacing never caps a camera's bitrate. The added latency is below what the writer
        holds anyway until the GOP ends."""
        wait = self._next_read - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        data, full = self._recv()
        self._next_read = 0.0 if full else time.monotonic() + READ_INTERVAL_S
        return data

    def _recv(self) -> tuple[bytes, bool]:
        """What is queued (waiting up to timeout_s for the first byte), and whether it
        filled READ_BYTES; b"" once a TCP camera closed the connection."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(left * 1000):
                raise self.silence_error()
            data, full, eof = self.read_ready()
            if data or eof:
                return data, full
            # woken without data: wait again

    def silence_error(self) -> SourceError:
        return SourceError(f"{self.url}: no data for {self.timeout_s:g} s")

    def read_ready(self) -> tuple[bytes, bool, bool]:
        """Never waits: (what is queued, whether it filled READ_BYTES, whether a TCP camera
        closed the connection)."""
        try:
            if not self.udp:
                try:
                    data = self.sock.recv(READ_BYTES)
                except (BlockingIOError, InterruptedError):
                    return b"", False, False
                return data, len(data) == READ_BYTES, not data
            parts: list[bytes] = []
            size = 0
            while size < READ_BYTES:
                try:
                    more = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                parts.append(more)
                size += len(more)
        except OSError as exc:
            raise SourceError(f"{self.url}: {exc.strerror or exc}") from exc
        data = b"".join(parts) if len(parts) > 1 else (parts[0] if parts else b"")
        return data, size >= READ_BYTES, False

    def close(self) -> None:
        self.sock.close()


class TsPacketizer:
    """Transport-stream bytes -> writer packets ``(track, pts, dts, key, data, wall_ns,
    corrupt)`` for the PIDs the probe mapped to tracks (AAC PES split into frames)."""

    def __init__(self, pid_to_track: dict[int, int], aac_pids: set[int]) -> None:
        self.demux = _native.tsdemux.TsDemuxer()
        self.pid_to_track = pid_to_track
        self.aac_pids = aac_pids

    def feed(self, data: bytes, wall_ns: int) -> list[tuple[Any, ...]]:
        return self._packets(self.demux.feed(data), wall_ns)

    def flush(self, wall_ns: int) -> list[tuple[Any, ...]]:
        return self._packets(self.demux.flush(), wall_ns)

    def _packets(self, pes: list[tuple[Any, ...]], wall_ns: int) -> list[tuple[Any, ...]]:
        out = []
        tracks, aac = self.pid_to_track, self.aac_pids
        for pid, pts, dts, rai, data, corrupt in pes:
            track = tracks.get(pid)
            if track is None:
                continue
            if pid in aac:
                frames = split_adts(data)
                if len(frames) > 1 and pts is not None:
                    for off, frame in frames:
                        p = pts + off
                        out.append((track, p, p, True, frame, wall_ns, corrupt))
                    continue
            out.append((track, pts, dts, rai, data, wall_ns, corrupt))
        return out


@dataclass
class TsProbe:
    """What the first seconds of a stream said: its tracks and how PIDs map to them."""

    tracks: Any  # ingest.SourceTracks
    pid_to_track: dict[int, int]
    aac_pids: set[int]
    head: bytes  # every byte read while probing (demuxed again, so nothing is lost)
    native: bool  # False: a kept stream needs FFmpeg's framing


def probe(
    read: Callable[[], bytes], url: str, monotonic: Callable[[], float] = time.monotonic
) -> TsProbe:
    """Buffer the stream until its PMT, a video keyframe and (briefly) its audio have been
    seen, then read the codec parameters from those bytes: natively when the program is one
    H.264/H.265 stream and AAC, else (or when that fails) with PyAV."""
    d = _native.tsdemux.TsDemuxer()
    head = bytearray()
    t0 = monotonic()
    key_at: float | None = None
    params = b""
    adts: dict[int, bytes] = {}  # audio PID -> its first ADTS frame
    while True:
        chunk = read()
        if not chunk:
            raise SourceError(f"{url}: the stream ended before its first keyframe")
        head += chunk
        for pid, _pts, _dts, _rai, data, _bad in d.feed(chunk):
            stype = d.streams.get(pid)
            if stype == 0x0F:
                adts.setdefault(pid, data)
            elif key_at is None and stype in (0x1B, 0x24):
                codec = _native.CODEC_H264 if stype == 0x1B else _native.CODEC_HEVC
                if _native.nal.nal_flags(data, codec, 0) & _native.NAL_KEY:
                    key_at = monotonic()
                    params = _native.nal.parameter_sets(data, codec, 0)
        audio = {p for p, t in d.streams.items() if t == 0x0F}
        if key_at is not None and (
            audio <= set(adts) or monotonic() - key_at >= PROBE_AUDIO_WAIT_S
        ):
            break
        if len(head) > PROBE_MAX_BYTES or monotonic() - t0 > PROBE_MAX_S:
            what = "video keyframe" if d.streams else "program map (PAT/PMT)"
            raise SourceError(f"{url}: no {what} in the first {monotonic() - t0:.0f} s")
    native = _native_probe(d.program, params, adts, bytes(head))
    if native is not None:
        return native

    return _probe_bytes(bytes(head), url, tracks_from_av, d.streams)


def _native_probe(
    program: dict[int, int], params: bytes, adts: dict[int, bytes], head: bytes
) -> TsProbe | None:
    """Tracks from the stream's own bytes, as PyAV would give them; None when the program
    holds anything but one H.264/H.265 stream and AAC in ADTS, or a header cannot be read."""
    videos = [pid for pid, t in program.items() if t in (0x1B, 0x24)]
    audios = [pid for pid, t in program.items() if t == 0x0F]
    if len(videos) != 1 or len(videos) + len(audios) != len(program) or set(audios) - set(adts):
        return None
    codec = _STREAM_CODEC[program[videos[0]]]
    try:
        width, height = video_size(codec, params)
    except CorruptSegment:
        return None
    tracks = [TrackInfo(0, "video", codec, (1, 90000), params, width, height, 0, 0, "annexb")]
    for pid in audios:
        conv = adts_to_asc(adts[pid][:7])
        chan = (conv[0][1] >> 3) & 0x0F if conv is not None else 0
        if conv is None or not (rate := asc_sample_rate(conv[0])) or not chan:
            return None  # channel configuration 0 is in the payload (a PCE): PyAV reads it
        channels = 8 if chan == 7 else chan
        tracks.append(TrackInfo(len(tracks), "audio", "aac", (1, 90000), b"", 0, 0, rate, channels))
    order = [videos[0], *audios]  # PyAV's order: the video stream first, audio as listed
    src = SourceTracks(tuple(tracks), {i: i for i in range(len(tracks))}, ())
    return TsProbe(src, {pid: i for i, pid in enumerate(order)}, set(audios), head, True)


def _probe_bytes(head: bytes, url: str, tracks_from_av: Any, framed: dict[int, int]) -> TsProbe:
    import av  # PyAV: heavy, loaded on first use

    try:
        with av.open(io.BytesIO(head), "r", format="mpegts") as container:
            src = tracks_from_av(container)
            pid_to_track = {container.streams[i].id: t for i, t in src.stream_to_track.items()}
    except av.FFmpegError as exc:
        raise SourceError(f"{url}: cannot read the stream's codec parameters: {exc}") from exc
    native = all(pid in framed for pid in pid_to_track)
    aac = {pid for pid in pid_to_track if framed.get(pid) == 0x0F}
    return TsProbe(src, pid_to_track, aac, head, native)
