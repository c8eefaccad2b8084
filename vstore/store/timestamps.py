"""Per-track timestamp state of a camera writer: the tick base, the wrap width, the largest
jump taken as continuous, and the NAL framing, derived from a track's description and the
camera's drift setting. The normalisation itself is ``FastPath.normalise`` (``vstore._py.ptable``
and its compiled twin), which the writer calls for every packet its fast path does not take."""

from __future__ import annotations

from dataclasses import dataclass

from vstore._native import CODEC_H264, CODEC_HEVC
from vstore.base.errors import UsageError
from vstore.segment import format as fmt

NAL_CODECS = {"h264": CODEC_H264, "hevc": CODEC_HEVC}


@dataclass
class TrackState:
    info: fmt.TrackInfo
    is_video: bool
    nal_codec: int  # -1: not H.264/H.265
    length_size: int  # 0 = Annex-B
    max_jump_ticks: int
    wrap_bits: bool


def track_state(info: fmt.TrackInfo, max_jump_s: float) -> TrackState:
    num, den = info.time_base
    if num <= 0 or den <= 0:
        raise UsageError(f"track {info.index}: bad time base {num}/{den}")
    is_video = info.kind == "video"
    nal_codec = NAL_CODECS.get(info.codec, -1) if is_video else -1
    length_size = 4 if info.bitstream == "avcc" else 0
    return TrackState(
        info=info,
        is_video=is_video,
        nal_codec=nal_codec,
        length_size=length_size,
        max_jump_ticks=int(max_jump_s * den / num),
        wrap_bits=(num, den) == (1, 90000),
    )
