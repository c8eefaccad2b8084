"""Snapshots: the exact frame shown at a wall-clock instant, as JPEG or PNG.

The one place vstore decodes: from the keyframe at or before the instant up to the last frame
whose presentation time is at or before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from vstore.base.errors import NotFound, UsageError, VstoreError
from vstore.base.fsutil import translate_oserror
from vstore.base.timebase import WallNs, format_time
from vstore.export.clip_plan import chunk_after, leading_frames
from vstore.segment import format as fmt
from vstore.segment.reader import SegmentReader, chunk_packets
from vstore.store.store import Store

_ENCODERS = {
    ".jpg": ("mjpeg", "yuvj420p"),
    ".jpeg": ("mjpeg", "yuvj420p"),
    ".png": ("png", "rgb24"),
}


@dataclass(frozen=True)
class Snapshot:
    camera: str
    at_ns: WallNs  # the instant asked for
    frame_at_ns: WallNs  # presentation time of the frame written (<= at_ns)
    width: int
    height: int
    path: str


def decode_frame_at(store: Store, camera_id: str, at_ns: int) -> tuple[Any, int]:
    """(av.VideoFrame, its wall time) of the frame on screen at at_ns."""
    import av  # PyAV: heavy, loaded on first use

    num = store.camera_num(camera_id)
    chunks = store.index.chunks_from_keyframe(num, at_ns, at_ns + 1, fmt.CHUNK_CONTINUATION)
    if not chunks or chunks[0].start_ns > at_ns:
        raise NotFound(f"camera {camera_id!r} has no footage at {format_time(at_ns)}")
    # The chunk after the instant's may hold the frame on screen: an open GOP's leading
    # frames are sent after their keyframe and shown before it (clip_plan.chunk_after).
    tail = chunk_after(store, num, chunks[-1])
    if tail is not None:
        chunks.append(tail)
    segs = {
        r.segment_id: r for r in store.index.segments(num, chunks[0].start_ns, chunks[-1].end_ns)
    }
    readers: dict[int, SegmentReader] = {}
    try:
        rd = readers[chunks[0].segment_id] = store.segment_reader(segs[chunks[0].segment_id])
        video = next(t for t in rd.meta.tracks if t.kind == "video")
        ctx = av.CodecContext.create(video.codec, "r")
        if video.extradata:
            ctx.extradata = video.extradata
        best: tuple[Any, int] | None = None
        pending: dict[int, int] = {}  # decoder pts -> wall time

        def take(frames: list[Any]) -> None:
            nonlocal best
            for frame in frames:
                wall = pending.pop(frame.pts, None)
                if wall is not None and wall <= at_ns:
                    best = (frame, wall)

        for c in chunks:
            rd = readers.get(c.segment_id) or store.segment_reader(segs[c.segment_id])
            readers[c.segment_id] = rd
            v = next((t for t in rd.meta.tracks if t.kind == "video"), None)
            if v is None or (v.codec, v.extradata) != (video.codec, video.extradata):
                break  # another codec configuration: its frames come after the instant's
            packets = [
                p
                for p in chunk_packets(rd.meta, rd.read_chunk(c.offset, c.length, c.crc32))
                if p.track == v.index and p.wall_ns is not None
            ]
            # Decoded up to the last frame shown at or before the instant (decode order):
            # what follows it cannot be on screen then.
            last = max((k for k, p in enumerate(packets) if p.wall_ns <= at_ns), default=-1)
            if c is chunks[0]:  # (shown before the keyframe, and not decodable from it)
                lead = set(leading_frames([p.wall_ns for p in packets]))
                packets = [p for k, p in enumerate(packets) if k not in lead]
                last -= sum(1 for k in lead if k <= last)
            for p in packets[: last + 1]:
                pkt = av.Packet(bytes(p.data))
                pkt.pts, pkt.dts = p.pts, p.dts
                pending[p.pts or 0] = p.wall_ns
                try:
                    take(ctx.decode(pkt))
                except av.FFmpegError as exc:
                    raise VstoreError(f"decoding for the snapshot failed: {exc}") from exc
        take(ctx.decode(None))
    finally:
        for r in readers.values():
            r.close()
    if best is None:
        raise NotFound(f"no decodable frame at {format_time(at_ns)}")
    return best


def snapshot(
    store: Store,
    camera_id: str,
    at_ns: int,
    out: str | os.PathLike[str] | IO[bytes],
    image_format: str | None = None,
) -> Snapshot:
    """Write the frame on screen at ``at_ns`` to ``out``: a path ending in .jpg, .jpeg or
    .png, or a binary file object (then ``image_format`` is "jpg" or "png")."""
    import av  # PyAV: heavy, loaded on first use

    if isinstance(out, str | os.PathLike):
        suffix = Path(out).suffix.lower()
        if image_format is not None:
            suffix = "." + image_format
    else:
        suffix = "." + (image_format or "jpg")
    enc = _ENCODERS.get(suffix)
    if enc is None:
        raise UsageError("snapshot output must end in .jpg, .jpeg or .png (or give --format)")
    with store.lease(ranges=[(camera_id, at_ns, at_ns + 1)]):  # before planning (L1)
        frame, wall = decode_frame_at(store, camera_id, at_ns)
    codec, pix_fmt = enc
    # Encoded in memory, then written in one go: a failed write is one clear error, and a
    # failed encode leaves no file behind.
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = frame.width, frame.height, pix_fmt
    cc.time_base = Fraction(1, 1)
    img = frame.reformat(format=pix_fmt)
    img.pts = 0
    data = b"".join(bytes(pkt) for pkt in [*cc.encode(img), *cc.encode(None)])
    if not isinstance(out, str | os.PathLike):
        out.write(data)
        out.flush()
        return Snapshot(camera_id, at_ns, wall, frame.width, frame.height, "-")
    try:
        with open(out, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise translate_oserror(exc, f"cannot write the snapshot to {out}") from exc
    return Snapshot(camera_id, at_ns, wall, frame.width, frame.height, str(out))
