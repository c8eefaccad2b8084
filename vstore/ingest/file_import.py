"""Import of an old recording (MP4, MKV, MPEG-TS, ... from an older camera system) into a
camera, its first frame placed at the wall-clock start the operator gives."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vstore.base.errors import SourceError, UsageError
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_time, parse_time_ns, ticks_to_ns
from vstore.ingest.av_source import open_container
from vstore.ingest.tracks import tracks_from_av
from vstore.store import imports
from vstore.store.camera_writer import FUTURE_SLACK_NS, open_writer
from vstore.store.store import Store


@dataclass
class ImportResult:
    camera: str
    packets: int
    bytes: int
    segments: int
    start_ns: int  # as given: the wall time of the file's first frame
    end_ns: int | None
    first_ns: int | None  # where its stored footage begins
    stats: dict[str, Any]
    ignored: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    # What an earlier, unfinished run of this import had written.
    replaced_segments: int = 0
    audio_codecs: tuple[str, ...] = ()  # of the audio tracks it stored


# No recording's pictures are thinner than this (bits a second): an MPEG-TS length that
# would make them so is FFmpeg's estimate gone wrong, not the file's.
MIN_VIDEO_BITS_PER_S = 1000

# A file whose container declares this much more than could be read is called truncated.
TRUNCATED_MIN_S = 1.0

# A file changed this recently before its import ended may still be being written: it is
# watched a moment longer, since a writer that is still at it shows itself.
BEING_WRITTEN_NS = 10**9
GROWTH_WAIT_S = 0.25

# At most this many packets wait for the first decode time of a file whose first video
# packets have none (Matroska with B-frames); past it they go on without one.
DTS_WAIT_PACKETS = 256


def _with_dts(packets: Iterable[Any], video: int) -> Iterator[tuple[Any, int | None]]:
    """``(packet, dts)`` in demux order, giving the first video packets their decode times
    when the container leaves them out (Matroska's first B-frame GOP: FFmpeg knows a decode
    time only from the third packet on). Taken as their presentation times, they would be
    reordered by the writer's rule that decode times increase, and the GOP's frames shown
    in the wrong order. They are counted back from the first decode time the file gives,
    one frame duration apiece."""
    held: list[Any] = []
    it = iter(packets)
    for pkt in it:
        if not held and (pkt.stream_index != video or pkt.dts is not None):
            yield pkt, pkt.dts
            if pkt.stream_index == video:
                break  # (the first video packet has its decode time: nothing to fill)
            continue
        held.append(pkt)
        if pkt.stream_index != video:
            continue
        if pkt.dts is None:
            if len(held) < DTS_WAIT_PACKETS:
                continue
            break  # (too many: they go on as they are)
        waiting = [p for p in held[:-1] if p.stream_index == video]
        step = pkt.duration or 1
        filled = {id(p): pkt.dts - (len(waiting) - k) * step for k, p in enumerate(waiting)}
        for p in held:
            dts = filled.get(id(p), p.dts)
            yield p, (min(dts, p.pts) if p.pts is not None else dts)
        held = []
        break
    for p in held:  # (the file ended, or too many waited, before a video decode time)
        yield p, p.dts
    for pkt in it:
        yield pkt, pkt.dts


def _zone_slip(created: str, start_ns: int) -> str | None:
    """A warning when the file's own ``creation_time`` lies as far from ``--start`` as two
    time zones can (1 to 14 hours, in quarter hours: +05:45 is one; within a minute): the
    mark of a start given in the wrong zone. Other differences say nothing (a file's
    creation time is often when it was exported)."""
    try:
        made_ns = parse_time_ns(created.replace(" ", "T"))
    except (UsageError, ValueError):
        return None
    quarter_ns = 900 * 10**9
    apart_ns = abs(start_ns - made_ns)
    quarters = round(apart_ns / quarter_ns)
    if not 4 <= quarters <= 56 or abs(apart_ns - quarters * quarter_ns) > 60 * 10**9:
        return None
    apart = f"{quarters // 4} h" + (f" {quarters % 4 * 15} min" if quarters % 4 else "")
    return (
        f"the file says it was made at {format_time(made_ns)} (its creation_time), "
        f"{apart} from --start {format_time(start_ns)}: "
        "if --start's UTC offset is wrong, the footage is stored at the wrong time"
    )


def _still_written(p: Path, opened: Any) -> bool:
    """Whether the file changed since ``opened`` (its stat at the import's start)."""

    def changed() -> bool:
        try:
            now = p.stat()
        except OSError:
            return True
        return (now.st_size, now.st_mtime_ns) != (opened.st_size, opened.st_mtime_ns)

    if changed():
        return True
    if time.time_ns() - opened.st_mtime_ns >= BEING_WRITTEN_NS:
        return False
    time.sleep(GROWTH_WAIT_S)
    return changed()


def _origin_ns(stream: Any) -> int | None:
    """Media time (ns) of a video stream's first frame as the file presents it (an edit list
    applied), else None."""
    if stream is None or stream.start_time is None:
        return None
    tb = stream.time_base
    return ticks_to_ns(int(stream.start_time), tb.numerator, tb.denominator)


def _video_s(container: Any, video: int, declared_s: float, size_bytes: int) -> float:
    """How long the file's pictures last (0: not known): the video stream's own duration,
    else the file's declared one; not the file's, which counts sound running on past the
    last picture (two files cut from one recording abut). An MPEG-TS states none: FFmpeg
    reads it from the file's first and last timestamps, right for one recording, and hours
    long for a file spliced from two; a length that would make its pictures thinner than
    any video is not believed (the writer stops such a file where it must)."""
    s = container.streams[video] if video >= 0 else None
    if s is None or not s.duration:
        return declared_s
    video_s = float(s.duration * s.time_base)
    if not declared_s and size_bytes * 8 < MIN_VIDEO_BITS_PER_S * video_s:
        return 0.0
    return video_s


def _refuse_future(store: Store, start_ns: int, video_s: float) -> None:
    """Footage is never stored ahead of the clock: an import whose pictures (as long as its
    container states them) would run past now is refused before anything is written."""
    end_ns = start_ns + int(video_s * 1e9)
    now_ns = time.time_ns()  # (the host's own: no recording can lie past it)
    if video_s and end_ns > now_ns + FUTURE_SLACK_NS:
        raise UsageError(
            f"the file's pictures last {video_s:.1f} s: from {format_time(start_ns)} they would "
            f"run to {format_time(end_ns)}, after now ({format_time(now_ns)}); nothing was "
            "stored (give --start as the time it was recorded)"
        )


def _refuse_overlap(store: Store, camera_id: str, start_ns: int, duration_s: float) -> None:
    """Before anything is written: an import whose pictures (as long as its container
    states them) reach the camera's later footage are refused, naming that footage. The
    writer stops at that footage too, for files whose length was misstated or not stated."""
    num = store.index.camera_num(camera_id)
    if num is None or not duration_s:
        return
    after = next(iter(store.index.chunks(num, start_ns, 2**63 - 1)), None)
    if after is None or after.start_ns <= start_ns:
        return  # (footage at the start itself is refused by the writer, naming it)
    end_ns = start_ns + int(duration_s * 1e9)
    if end_ns > after.start_ns:
        raise UsageError(
            f"the file is about {duration_s:.1f} s long: from {format_time(start_ns)} it would "
            f"run to {format_time(end_ns)}, over footage camera {camera_id!r} already has from "
            f"{format_time(after.start_ns)}; nothing was stored (import it earlier, or under "
            "another camera id)"
        )


def import_file(
    store: Store,
    path: str | Path,
    camera_id: str,
    start_ns: int,
    progress: Callable[[float, float], None] | None = None,
    rate: RateLimiter | None = None,
    by: str = "import",
) -> ImportResult:
    """Import a recording (MP4, MKV, MPEG-TS, ...) so its first keyframe lands at start_ns.
    ``rate`` paces the footage written (an import beside live recording must leave it the
    disk: unpaced, it writes as fast as the disk takes it).

    The import is replayable from its source until it returns: it keeps a marker in the
    index meanwhile (lifecycle F1-F4) and makes its footage durable segment by segment. Run
    again after a crash, it replaces what the unfinished run wrote (each deletion audited;
    refused if a hold covers it) instead of refusing it as an overlap.
    ``progress(done_s, total_s)`` reports the media seconds imported out of the file's
    declared duration."""
    import av  # PyAV: heavy, loaded on first use

    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file")
    opened = p.stat()
    container = open_container(str(p))
    try:
        src = tracks_from_av(container)
        created = str(container.metadata.get("creation_time", ""))
        duration = float(container.duration or 0) / 1_000_000 if container.duration else 0.0
        # MPEG-TS has no declared length (FFmpeg estimates one from the bitrate): only a
        # container that states its duration can show that the file was cut short.
        declared_s = duration if "mpegts" not in container.format.name else 0.0
        streams = [container.streams[i] for i in src.stream_to_track]
        video = next((i for i, tr in src.stream_to_track.items()
                      if src.tracks[tr].kind == "video"), -1)  # fmt: skip
        video_s = _video_s(container, video, declared_s, opened.st_size)
        _refuse_future(store, start_ns, video_s)
        new_camera = store.index.camera_num(camera_id) is None
        num = store.index.camera_num(camera_id, create=True)
        assert num is not None
        prior = imports.find(store, num, start_ns)
        if prior is not None:
            imports.refuse_other_file(prior, p, opened.st_size)
        replaced = imports.replace(store, prior, by) if prior is not None else 0
        _refuse_overlap(store, camera_id, start_ns, video_s)
        imports.begin(store, camera_id, num, start_ns, p, opened.st_size)
        origin_ns = _origin_ns(container.streams[video] if video >= 0 else None)
        try:
            writer = open_writer(
                store,
                camera_id,
                src.tracks,
                start_ns=start_ns,
                origin_media_ns=origin_ns,
                tracked_import=True,
            )
        except BaseException:
            imports.finish(store, num, start_ns)  # refused before a segment was written
            raise
        mapping = src.stream_to_track
        # Seconds per tick as a float, once: a Fraction product per packet cost more CPU
        # than the rest of the import's per-packet work.
        tick_s = {s.index: float(s.time_base) for s in streams}
        # (the bar counts from the file's start: a camera's MPEG-TS starts hours in)
        first_s = container.start_time / 1_000_000 if container.start_time else 0.0
        try:
            with writer:
                for pkt, dts in _with_dts(container.demux(streams), video):
                    if pkt.size == 0:
                        continue
                    index, key = pkt.stream_index, pkt.is_keyframe
                    writer.write_raw(
                        mapping[index],
                        pkt.pts,
                        dts,
                        key,
                        bytes(pkt),
                        None,
                        pkt.is_corrupt,
                    )
                    if rate is not None:
                        rate.consume(pkt.size)
                    # At each video keyframe: often enough for a bar, rare enough to cost
                    # nothing (every AAC frame is a keyframe).
                    if (
                        key
                        and index == video
                        and progress is not None
                        and duration
                        and pkt.pts is not None
                    ):
                        done_s = pkt.pts * tick_s[index] - first_s
                        progress(min(duration, max(0.0, done_s)), duration)
        except av.FFmpegError as exc:
            imports.finish(store, num, start_ns)  # the source ends here: what it gave is kept
            raise SourceError(
                f"{p}: demux failed after {writer.stats.packets} packets "
                f"(stored footage up to there is kept): {exc}"
            ) from exc
        except UsageError:
            if writer.overlap_error is None:
                raise
        imports.finish(store, num, start_ns)  # F3: sealed and synced by the writer's close
        if writer.first_ns is not None and writer.durable_end_ns is not None:
            imports.mend_gaps(store, num, writer.first_ns, writer.durable_end_ns)
        if writer.overlap_error is not None:
            raise writer.overlap_error  # (after the writer sealed what came before)
    finally:
        container.close()
    stats = writer.stats
    if stats.packets == 0:
        if new_camera:  # (registered for this import alone: `ls` must not list it)
            store.index.forget_camera(camera_id)
        hint = (
            " (a raw H.264/H.265 stream carries no timestamps: put it in a container at its "
            f"frame rate first, e.g. ffmpeg -r 25 -i {p.name} -c copy {p.stem}.mp4)"
            if stats.dropped_no_timestamp
            else ""
        )
        raise SourceError(
            f"{p}: no storable footage (dropped before a keyframe: "
            f"{stats.dropped_before_keyframe}, without codec parameters: "
            f"{stats.dropped_no_params}, without timestamps: {stats.dropped_no_timestamp})"
            f"{hint}"
        )
    end_ns = writer.durable_end_ns  # (a backfill ends before the camera's later footage)
    warnings = []
    read_s = (end_ns - start_ns) / 1e9 if end_ns is not None else 0.0
    # Against its pictures' declared length, not the file's: sound running on past the
    # last picture, or starting before the first, is no missing footage.
    if declared_s and video_s - read_s > TRUNCATED_MIN_S:
        warnings.append(
            f"{p.name} declares {video_s:.1f} s of pictures but only {read_s:.1f} s could be "
            "read: the file may be truncated (what was read is stored)"
        )
    if writer.hidden_lead_dropped:
        warnings.append(
            f"{p.name} hides frames ahead of its first shown frame (an edit list) that would "
            f"lie over footage camera {camera_id!r} already has: its frames up to its first "
            "keyframe after --start, which need them, were not stored"
        )
    slip = _zone_slip(created, start_ns)
    if slip:
        warnings.append(slip)
    if _still_written(p, opened):
        warnings.append(
            f"{p.name} changed while it was imported (is something still writing it?): "
            f"{read_s:.1f} s were read and stored; anything written to it after that is not"
        )
    return ImportResult(
        camera=camera_id,
        packets=stats.packets,
        bytes=stats.bytes,
        segments=stats.segments,
        start_ns=start_ns,
        end_ns=end_ns,
        first_ns=writer.first_ns,
        stats=stats.as_dict(),
        ignored=src.ignored,
        warnings=tuple(warnings),
        replaced_segments=replaced,
        audio_codecs=tuple(t.codec for t in src.tracks if t.kind == "audio"),
    )
