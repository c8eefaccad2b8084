"""The FFmpeg source: anything PyAV opens (files, RTSP, URLs with FFmpeg options), demuxed and
never decoded, with options that make live inputs fail fast instead of hanging."""

from __future__ import annotations

from typing import Any

from vstore.base.errors import SourceError
from vstore.base.redaction import redact_url
from vstore.ingest.source import PacketSink, RawPacket, SourceDamage
from vstore.ingest.tracks import SourceTracks, tracks_from_av


def open_container(url: str, options: dict[str, str] | None = None, timeout_s: float = 10.0) -> Any:
    """A PyAV input container, or a SourceError a person can act on."""
    import av  # PyAV: heavy, loaded on first use

    try:
        return av.open(url, "r", options=options or {}, timeout=timeout_s)
    except FileNotFoundError:
        raise SourceError(f"{url}: no such file") from None
    except av.FFmpegError as exc:
        # FFmpeg's text without its errno (AVERROR codes such as 1094995529 mean nothing to
        # a person), then what it usually means for a file.
        why = exc.strerror or str(exc)
        hint = " (not a recording FFmpeg can read)" if "Invalid data" in why else ""
        raise SourceError(f"cannot open {redact_url(url)}: {why}{hint}") from exc
    except OSError as exc:
        raise SourceError(f"cannot open {redact_url(url)}: {exc.strerror or exc}") from exc


def source_options(url: str) -> dict[str, str]:
    """FFmpeg options that make live sources fail fast instead of hanging."""
    if url.startswith(("rtsp://", "rtsps://")):
        return {"rtsp_transport": "tcp", "timeout": "5000000"}
    if url.startswith("udp://"):
        return {"timeout": "5000000", "fifo_size": "1000000", "overrun_nonfatal": "1"}
    if url.startswith("tcp://"):
        return {"timeout": "5000000"}
    return {}


class AvSource:
    """A live source FFmpeg demuxes (PyAV)."""

    demuxer = "ffmpeg"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.container = open_container(url, source_options(url), timeout_s=timeout_s)
        self._src: SourceTracks | None = None

    def tracks(self) -> SourceTracks:
        if self._src is None:
            self._src = tracks_from_av(self.container)
        return self._src

    def pump(self, sink: PacketSink, t0: float) -> None:
        import av  # PyAV: heavy, loaded on first use

        src = self.tracks()
        streams = [self.container.streams[i] for i in src.stream_to_track]
        mapping = src.stream_to_track
        video_track = next(t.index for t in src.tracks if t.kind == "video")
        try:
            for pkt in self.container.demux(streams):
                if sink.stopping(t0):
                    return
                if pkt.size == 0:
                    continue
                track = mapping[pkt.stream.index]
                key = bool(pkt.is_keyframe)
                item = RawPacket(track, pkt.pts, pkt.dts, key, bytes(pkt), sink.wall_ns(),
                                 bool(pkt.is_corrupt))  # fmt: skip
                sink.enqueue(item, track == video_track and key)
        except av.FFmpegError as exc:
            raise SourceError(f"{self.url}: {exc}") from exc

    def close(self) -> SourceDamage:
        self.container.close()
        return SourceDamage()
