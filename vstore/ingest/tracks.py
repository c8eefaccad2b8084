"""Source tracks: which streams of a demuxed source vstore keeps, as TrackInfo, and the map
from stream index to track index (shared by every source: files, RTSP, native MPEG-TS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vstore.base.errors import SourceError
from vstore.segment.format import TrackInfo

VIDEO_CODECS = {"h264", "hevc"}
AUDIO_CODECS = {"aac", "pcm_mulaw", "pcm_alaw", "mp3", "opus", "adpcm_g726", "pcm_s16le"}


def _bitstream(codec: str, extradata: bytes) -> str:
    if codec not in VIDEO_CODECS:
        return ""
    # avcC/hvcC records start with configurationVersion = 1; Annex-B starts with 00 00 (00) 01.
    return "avcc" if extradata[:1] == b"\x01" else "annexb"


@dataclass(frozen=True)
class SourceTracks:
    """The tracks vstore keeps from a demuxed source, and stream index -> track index."""

    tracks: tuple[TrackInfo, ...]
    stream_to_track: dict[int, int]
    ignored: tuple[str, ...] = ()


def tracks_from_av(container: Any) -> SourceTracks:
    """Pick the first H.264/H.265 video stream and the supported audio streams."""
    tracks: list[TrackInfo] = []
    mapping: dict[int, int] = {}
    ignored: list[str] = []
    video = None
    for s in container.streams:
        cc = s.codec_context
        name = cc.name if cc is not None else "?"
        if s.type == "video" and video is None:
            if name not in VIDEO_CODECS:
                raise SourceError(
                    f"video codec {name!r} is not supported (vstore stores H.264 and H.265)"
                )
            video = s
    if video is None:
        raise SourceError("the source has no video stream")
    for s in [video, *[a for a in container.streams if a.type == "audio"]]:
        cc = s.codec_context
        name = cc.name
        if s.type == "audio" and name not in AUDIO_CODECS:
            ignored.append(
                f"audio stream {s.index} ({name}): not stored (vstore keeps AAC, G.711, "
                "MP3, Opus, G.726 and 16-bit PCM sound as recorded, and transcodes nothing)"
            )
            continue
        if s.time_base is None:
            raise SourceError(f"stream {s.index} has no time base")
        extradata = bytes(cc.extradata or b"")
        info = TrackInfo(
            index=len(tracks),
            kind=s.type,
            codec=name,
            time_base=(s.time_base.numerator, s.time_base.denominator),
            extradata=extradata,
            width=int(getattr(cc, "width", 0) or 0) if s.type == "video" else 0,
            height=int(getattr(cc, "height", 0) or 0) if s.type == "video" else 0,
            sample_rate=int(getattr(cc, "sample_rate", 0) or 0) if s.type == "audio" else 0,
            channels=_channels(cc) if s.type == "audio" else 0,
            bitstream=_bitstream(name, extradata),
        )
        mapping[s.index] = info.index
        tracks.append(info)
    ignored.extend(
        f"{s.type} stream {s.index}"
        for s in container.streams
        if s.index not in mapping and s.type != "audio"
    )
    return SourceTracks(tuple(tracks), mapping, tuple(ignored))


def _channels(cc: Any) -> int:
    layout = getattr(cc, "layout", None)
    if layout is not None and getattr(layout, "nb_channels", None):
        return int(layout.nb_channels)
    return int(getattr(cc, "channels", 0) or 0)
