"""The plain packet record a host pushes into a camera writer (the non-PyAV input form)."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

from typing import NamedTuple


class Packet(NamedTuple):
    """One compressed access unit (video) or audio frame, as demuxed; never decoded.

    ``pts``/``dts`` are in the track's time base (None when the source did not say);
    ``wall_ns`` is the receive time for live sources (None: derive from media time).
    """

    track: int
    pts: int | None
    dts: int | None
    is_key: bool
    data: bytes
    wall_ns: int | None = None
    corrupt: bool = False
