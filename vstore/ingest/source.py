"""The contract between a live source and the recorder: the packet record a source produces,
the sink it hands packets to, and the ``Source`` protocol every source module implements."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads.

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from vstore.ingest.tracks import SourceTracks


class RawPacket(NamedTuple):
    """One demuxed packet, as ``CameraWriter.write_raw`` takes it (the same fields in order).

    The native MPEG-TS demuxer builds plain tuples of this layout (a named tuple per packet
    would cost more than the rest of its per-packet work); everything that reads them, the
    writer's compiled fast path included, reads by position in this order.
    """

    track: int
    pts: int | None
    dts: int | None
    is_key: bool
    data: bytes
    wall_ns: int | None  # receive time; None: the writer's clock at write
    corrupt: bool


@dataclass
class SourceDamage:
    """What a connection's transport lost, counted when it closes (native MPEG-TS only)."""

    continuity_errors: int = 0  # transport packets lost: the frames they hit are flagged
    resyncs: int = 0  # sync losses re-found


class PacketSink(Protocol):
    """Where a source hands its packets: a recorder's queue in front of the camera's writer."""

    def stopping(self, t0: float) -> bool:
        """Whether the source should stop reading (stopped, deadline reached, writer failed)."""
        ...

    def wall_ns(self) -> int:
        """The receive time to stamp packets with."""
        ...

    def enqueue(
        self,
        item: RawPacket | list[RawPacket],
        is_video_key: bool | Callable[[], bool],
        block: bool = True,
        key_at: int | None = None,
    ) -> None:
        """Queue a packet or a batch for the writer (never blocking forever; see Recorder)."""
        ...


class Source(Protocol):
    """One connection to a camera or file: its tracks, a blocking read loop, and close."""

    demuxer: str  # "native" (vstore's MPEG-TS demuxer) or "ffmpeg"

    def tracks(self) -> SourceTracks:
        """The tracks to store and how the source's streams map to them."""
        ...

    def pump(self, sink: PacketSink, t0: float) -> None:
        """Read until the source ends or ``sink.stopping(t0)``; raises SourceError on failure."""
        ...

    def close(self) -> SourceDamage:
        """Release the connection; what its transport lost."""
        ...
