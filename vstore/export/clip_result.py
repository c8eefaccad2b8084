"""What writing a clip produced: its plan, size and format, and the frames it begins and
ends on, as the CLI prints them."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads.

from typing import Any, NamedTuple

from vstore.export.clip_plan import ClipPlan


class ClipResult(NamedTuple):
    plan: ClipPlan
    format: str
    bytes_written: int
    video_packets: int
    audio_packets: int
    elapsed_s: float
    first_byte_s: float | None
    dropped_tracks: list[str]
    # "native" (vstore's writer: the file written once, front to back) or "ffmpeg"
    muxer: str = "ffmpeg"

    def as_json(self) -> dict[str, Any]:
        return {
            **self.plan.as_json(),
            "format": self.format,
            "bytes_written": self.bytes_written,
            "video_packets": self.video_packets,
            "audio_packets": self.audio_packets,
            "elapsed_s": round(self.elapsed_s, 4),
            "dropped_tracks": self.dropped_tracks,
        }
