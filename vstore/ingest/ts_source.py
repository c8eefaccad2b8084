"""The native MPEG-TS source: a TCP or UDP stream vstore demuxes itself, its socket read by
the process's TS hub (one thread for every camera) instead of a thread of its own."""

from __future__ import annotations

from typing import Any

from vstore import _native
from vstore.ingest import mpegts
from vstore.ingest.source import PacketSink, SourceDamage
from vstore.ingest.tracks import SourceTracks
from vstore.ingest.ts_hub import hub


class TsSource:
    """A probed MPEG-TS connection whose kept streams the native demuxer can frame."""

    demuxer = "native"

    def __init__(self, sock: mpegts.TsSocket, pr: mpegts.TsProbe) -> None:
        self.sock, self.pr = sock, pr
        self.packetizer = mpegts.TsPacketizer(pr.pid_to_track, pr.aac_pids)

    def tracks(self) -> SourceTracks:
        return self.pr.tracks

    def pump(self, sink: PacketSink, t0: float) -> None:
        """Hand the socket to the TS hub and wait until the camera closes, fails, or the
        sink says stop."""
        video = next(t for t in self.pr.tracks.tracks if t.kind == "video")
        codec = _native.CODEC_H264 if video.codec == "h264" else _native.CODEC_HEVC

        def first_key(batch: list[tuple[Any, ...]]) -> int:
            return _native.nal.first_key(batch, video.index, codec)

        hub().run(self, sink, t0, first_key)

    def close(self) -> SourceDamage:
        """Close the socket; the transport damage this connection saw."""
        self.sock.close()
        d = self.packetizer.demux
        return SourceDamage(continuity_errors=d.cc_errors, resyncs=d.resyncs)


def open_ts_source(url: str, timeout_s: float = 5.0) -> TsSource | None:
    """Connect and probe; None (connection closed) when a kept stream is not one the native
    demuxer frames (audio other than AAC in ADTS), so FFmpeg must read this source."""
    sock = mpegts.TsSocket(url, timeout_s=timeout_s)
    try:
        pr = mpegts.probe(sock.read, url)
    except BaseException:
        sock.close()
        raise
    if not pr.native:
        sock.close()
        return None
    return TsSource(sock, pr)
