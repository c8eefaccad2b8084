"""Ingest: sources (files, RTSP, MPEG-TS over TCP/UDP, anything FFmpeg opens) into writers.

PyAV demuxes, never decodes. ``import_file`` brings in an old recording at a given
wall-clock start. ``Recorder`` records one live source with a bounded queue in front of its
writer (run by the process's ``writer_pool``), and reconnects with backoff; ``record_many``
runs one per camera so a slow camera never stalls another. FFmpeg sources are read on the
recorder's own thread; native MPEG-TS sockets are read by the process's TS hub
(``ts_hub``), one thread for all of them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstore import _native
from vstore.base import heap
from vstore.base.errors import SourceError, UsageError, VstoreError
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_time
from vstore.ingest import mpegts, writer_pool
from vstore.ingest.mpegts import TsPacketizer
from vstore.ingest.tracks import SourceTracks, tracks_from_av
from vstore.ingest.ts_hub import hub
from vstore.ingest.writer_pool import WriterPool
from vstore.store.camera_writer import open_writer
from vstore.store.store import Store

log = logging.getLogger(__name__)


def _open(url: str, options: dict[str, str] | None = None, timeout_s: float = 10.0) -> Any:
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
        raise SourceError(f"cannot open {url}: {why}{hint}") from exc
    except OSError as exc:
        raise SourceError(f"cannot open {url}: {exc.strerror or exc}") from exc


@dataclass
class ImportResult:
    camera: str
    packets: int
    bytes: int
    segments: int
    start_ns: int
    end_ns: int | None
    stats: dict[str, Any]
    ignored: tuple[str, ...]
    warnings: tuple[str, ...] = ()


# A file whose container declares this much more than could be read is called truncated.
TRUNCATED_MIN_S = 1.0


def _refuse_overlap(store: Store, camera_id: str, start_ns: int, duration_s: float) -> None:
    """Before anything is written: an import whose length (as its container states or
    estimates it) reaches the camera's later footage is refused, naming that footage. The
    writer stops at that footage too, for files whose length was misstated."""
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
    progress: Callable[[float], None] | None = None,
    rate: RateLimiter | None = None,
) -> ImportResult:
    """Import a recording (MP4, MKV, MPEG-TS, ...) so its first keyframe lands at start_ns.
    ``rate`` paces the footage written (an import beside live recording must leave it the
    disk: unpaced, it writes as fast as the disk takes it)."""
    import av  # PyAV: heavy, loaded on first use

    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file")
    container = _open(str(p))
    try:
        src = tracks_from_av(container)
        duration = float(container.duration or 0) / 1_000_000 if container.duration else 0.0
        # MPEG-TS has no declared length (FFmpeg estimates one from the bitrate): only a
        # container that states its duration can show that the file was cut short.
        declared_s = duration if "mpegts" not in container.format.name else 0.0
        streams = [container.streams[i] for i in src.stream_to_track]
        _refuse_overlap(store, camera_id, start_ns, duration)
        writer = open_writer(store, camera_id, src.tracks, start_ns=start_ns)
        mapping = src.stream_to_track
        try:
            with writer:
                for pkt in container.demux(streams):
                    if pkt.size == 0:
                        continue
                    writer.write_raw(
                        mapping[pkt.stream.index],
                        pkt.pts,
                        pkt.dts,
                        bool(pkt.is_keyframe),
                        bytes(pkt),
                        None,
                        bool(pkt.is_corrupt),
                    )
                    if rate is not None:
                        rate.consume(pkt.size)
                    if progress is not None and duration and pkt.pts is not None:
                        progress(min(1.0, float(pkt.pts * pkt.time_base) / duration))
        except av.FFmpegError as exc:
            raise SourceError(
                f"{p}: demux failed after {writer.stats.packets} packets "
                f"(stored footage up to there is kept): {exc}"
            ) from exc
        except UsageError:
            if writer.overlap_error is None:
                raise
        if writer.overlap_error is not None:
            raise writer.overlap_error  # (after the writer sealed what came before)
    finally:
        container.close()
    stats = writer.stats
    if stats.packets == 0:
        raise SourceError(
            f"{p}: no storable footage (dropped before a keyframe: "
            f"{stats.dropped_before_keyframe}, without codec parameters: "
            f"{stats.dropped_no_params})"
        )
    end_ns = writer.durable_end_ns  # (a backfill ends before the camera's later footage)
    warnings = []
    read_s = (end_ns - start_ns) / 1e9 if end_ns is not None else 0.0
    if declared_s and declared_s - read_s > TRUNCATED_MIN_S:
        warnings.append(
            f"{p.name} declares {declared_s:.1f} s but only {read_s:.1f} s could be read: "
            "the file may be truncated (what was read is stored)"
        )
    return ImportResult(
        camera=camera_id,
        packets=stats.packets,
        bytes=stats.bytes,
        segments=stats.segments,
        start_ns=start_ns,
        end_ns=end_ns,
        stats=stats.as_dict(),
        ignored=src.ignored,
        warnings=tuple(warnings),
    )


def _fmt(t_ns: int) -> str:
    return format_time(t_ns)


# --- live recording ---------------------------------------------------------------------------

_EOF = object()
# Queue items a camera's writer takes per turn in the pool before the next camera's turn (an
# item is a TS hub batch, about a GOP of footage, or one FFmpeg packet).
_ITEMS_PER_TURN = 64


@dataclass
class RecorderStatus:
    camera: str
    url: str
    connects: int = 0
    reconnects: int = 0
    dropped_queue_full: int = 0
    last_error: str = ""
    demuxer: str = ""  # "native" (vstore's MPEG-TS demuxer) or "ffmpeg"
    # Native MPEG-TS damage, summed over connections: transport packets lost (continuity
    # jumps; the frames they hit are stored flagged corrupt) and sync losses re-found.
    ts_continuity_errors: int = 0
    ts_resyncs: int = 0
    writer: dict[str, Any] = field(default_factory=dict)


def source_options(url: str) -> dict[str, str]:
    """FFmpeg options that make live sources fail fast instead of hanging."""
    if url.startswith(("rtsp://", "rtsps://")):
        return {"rtsp_transport": "tcp", "timeout": "5000000"}
    if url.startswith("udp://"):
        return {"timeout": "5000000", "fifo_size": "1000000", "overrun_nonfatal": "1"}
    if url.startswith("tcp://"):
        return {"timeout": "5000000"}
    return {}


class Recorder:
    """Records one live source into one camera until stopped or the duration is reached."""

    def __init__(
        self,
        store: Store,
        camera_id: str,
        url: str,
        *,
        duration_s: float | None = None,
        reconnect: bool = True,
        backoff_max_s: float = 10.0,
        stop: threading.Event | None = None,
        pool: WriterPool | None = None,
    ) -> None:
        self.store = store
        self.camera_id = camera_id
        self.url = url
        self.duration_s = duration_s
        self.reconnect = reconnect
        self.backoff_max_s = backoff_max_s
        self.stop_event = stop or threading.Event()
        self.status = RecorderStatus(camera_id, url)
        self._max_packets = store.config.camera(camera_id).queue_packets
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self._max_packets)
        # Packets of batches put and taken: each counter has one writer (the source side, the
        # writer side), so their difference is read without a lock.
        self._put_packets = self._got_packets = 0
        self.error: BaseException | None = None
        self.writer = None
        self._dropping = False
        self._native_ts = True
        self._pool = pool or writer_pool.shared()
        self._write_failed = False
        self._drained = threading.Event()  # the writer has taken _EOF and closed

    def deadline_passed(self, t0: float) -> bool:
        """Whether a recording given a duration has run it out (its source stops reading)."""
        return self.duration_s is not None and time.monotonic() - t0 >= self.duration_s

    def _pause(self, t0: float, backoff_s: float) -> bool:
        """Wait out a reconnect backoff, but not past the deadline (--duration 8 against a
        refused source must stop at 8 s, not at the end of an 8 s backoff). True: stopped."""
        if self.duration_s is not None:
            backoff_s = max(0.0, min(backoff_s, t0 + self.duration_s - time.monotonic()))
        return self.stop_event.wait(backoff_s)

    def run(self) -> RecorderStatus:
        """Blocking: demux in this thread; the writer pool writes."""
        t0 = time.monotonic()
        backoff = 0.5
        writing = False
        is_file = "://" not in self.url or self.url.startswith("file:")
        try:
            # A failed writer (W5) ends the recording: reconnecting would only drop packets.
            while not self.stop_event.is_set() and not self.deadline_passed(t0) and not self.error:
                try:
                    conn = self._connect()
                except SourceError as exc:
                    self.status.last_error = str(exc)
                    if not self.reconnect or is_file:
                        raise
                    log.warning("camera %s: %s; retrying in %.1fs", self.camera_id, exc, backoff)
                    if self._pause(t0, backoff):
                        break
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                try:
                    src = conn.tracks()
                    if self.writer is None:
                        self.writer = open_writer(self.store, self.camera_id, src.tracks)
                        writing = True
                    else:
                        self._queue.put(("new_run", src.tracks))
                        self._pool.schedule(self)
                        self.status.reconnects += 1
                    self.status.connects += 1
                    backoff = 0.5
                    conn.pump(self, t0)
                except SourceError as exc:
                    self.status.last_error = str(exc)
                    log.warning("camera %s: %s", self.camera_id, exc)
                finally:
                    conn.close(self.status)
                if is_file or not self.reconnect or self.error:
                    break
                if not self.stop_event.is_set() and not self.deadline_passed(t0):
                    log.warning("camera %s: source ended; reconnecting", self.camera_id)
                    if self._pause(t0, backoff):
                        break
                    backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            if writing:
                self._queue.put(_EOF)
                self._pool.schedule(self)
                self._drained.wait()
            elif self.writer is not None:
                self.writer.close()
        if self.error is not None:
            raise self.error
        if self.writer is not None:
            self.status.writer = self.writer.stats.as_dict()
        return self.status

    def _connect(self) -> _AvConnection | _TsConnection:
        """A connection to the source: the native MPEG-TS path when it can carry every kept
        stream, else FFmpeg (PyAV)."""
        settings = self.store.config.camera(self.camera_id)
        if settings.demuxer == "auto" and self._native_ts and mpegts.native_eligible(self.url):
            sock = mpegts.TsSocket(self.url, timeout_s=5.0)
            try:
                pr = mpegts.probe(sock.read, self.url)
            except BaseException:
                sock.close()
                raise
            if pr.native:
                self.status.demuxer = "native"
                return _TsConnection(sock, pr)
            sock.close()
            self._native_ts = False  # decided once per recorder: say so, then use FFmpeg
            log.info(
                "camera %s: a kept stream is not AAC/H.264/H.265 in ADTS/Annex-B framing; "
                "FFmpeg demuxes this source",
                self.camera_id,
            )
        self.status.demuxer = "ffmpeg"
        return _AvConnection(_open(self.url, source_options(self.url), timeout_s=5.0), self.url)

    def enqueue(
        self,
        item: Any,
        is_video_key: bool | Callable[[], bool],
        block: bool = True,
        key_at: int | None = None,
    ) -> None:
        """Hand a packet (or a batch) to the camera's writer, dropping to the next keyframe
        rather than blocking the source forever when the writer is stuck (slow disk). The
        TS hub, which reads for every camera, never waits (``block=False``): it drops at
        once when the queue is full. ``key_at``: the index of a batch's first video keyframe."""
        if self._dropping:
            if not (is_video_key() if callable(is_video_key) else is_video_key):
                self.status.dropped_queue_full += len(item) if type(item) is list else 1
                return
            self._dropping = False
            if key_at is not None:
                # What precedes the keyframe belongs to a GOP whose start was dropped: stored,
                # it would be frames that decode to garbage inside the GOP still open.
                self.status.dropped_queue_full += key_at
                item = item[key_at:]
        try:
            batch_packets = len(item) if type(item) is list else 0
            if batch_packets:
                # A batch is one queue item but many packets: queue_packets bounds packets
                # (an empty queue takes any batch: a GOP may hold more than the bound).
                queued = self._put_packets - self._got_packets
                if queued and queued + batch_packets > self._max_packets:
                    raise queue.Full
            self._queue.put(item, block=block, timeout=2.0 if block else None)
            self._put_packets += batch_packets
            self._pool.schedule(self)
        except queue.Full:
            # The loss is counted and logged, never silent.
            self._dropping = True
            self.status.dropped_queue_full += len(item) if type(item) is list else 1
            log.error("camera %s: writer queue full, dropping to next keyframe", self.camera_id)

    # --- writer side: called by the writer pool, one thread at a time for this camera -----
    def has_work(self) -> bool:
        return not self._queue.empty()

    def run_some(self) -> bool:
        """Write up to _ITEMS_PER_TURN queued items; True if more may wait. After a writer
        error the rest is consumed and dropped (counted by the error), so the source side
        never blocks on a dead writer; _EOF closes the writer."""
        w = self.writer
        assert w is not None
        for _ in range(_ITEMS_PER_TURN):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _EOF:
                try:
                    w.close()
                except Exception as exc:  # noqa: BLE001 - reported by run(), whatever it is
                    self.error = self.error or exc
                finally:
                    self._drained.set()
                return False
            if type(item) is list:
                self._got_packets += len(item)
            if self._write_failed:
                continue
            try:
                if type(item) is list:  # a batch from the native MPEG-TS path
                    w.write_many(item)
                elif item[0] == "new_run":
                    w.new_run(item[1], reason="reconnect")
                else:
                    w.write_raw(*item)
            except Exception as exc:  # this camera stops; the pool goes on
                self.error = exc
                self._write_failed = True
                if isinstance(exc, VstoreError):
                    log.error("camera %s: writer stopped: %s", self.camera_id, exc)
                else:
                    log.exception("camera %s: writer stopped", self.camera_id)
        return True


class _AvConnection:
    """A source FFmpeg demuxes (PyAV): files, RTSP, and anything else it opens."""

    def __init__(self, container: Any, url: str) -> None:
        self.container, self.url = container, url
        self._src: SourceTracks | None = None

    def tracks(self) -> SourceTracks:
        if self._src is None:
            self._src = tracks_from_av(self.container)
        return self._src

    def pump(self, rec: Recorder, t0: float) -> None:
        import av  # PyAV: heavy, loaded on first use

        src = self.tracks()
        streams = [self.container.streams[i] for i in src.stream_to_track]
        mapping = src.stream_to_track
        clock = rec.store.clock
        video_track = next(t.index for t in src.tracks if t.kind == "video")
        try:
            for pkt in self.container.demux(streams):
                if rec.stop_event.is_set() or rec.deadline_passed(t0) or rec.error:
                    return
                if pkt.size == 0:
                    continue
                track = mapping[pkt.stream.index]
                key = bool(pkt.is_keyframe)
                item = (track, pkt.pts, pkt.dts, key, bytes(pkt), clock.wall_ns(),
                        bool(pkt.is_corrupt))  # fmt: skip
                rec.enqueue(item, track == video_track and key)
        except av.FFmpegError as exc:
            raise SourceError(f"{self.url}: {exc}") from exc

    def close(self, status: RecorderStatus) -> None:
        self.container.close()


class _TsConnection:
    """MPEG-TS over TCP/UDP demuxed natively, its socket read by the TS hub."""

    def __init__(self, sock: Any, pr: Any) -> None:
        self.sock, self.pr = sock, pr
        self.packetizer = TsPacketizer(pr.pid_to_track, pr.aac_pids)

    def tracks(self) -> SourceTracks:
        return self.pr.tracks

    def pump(self, rec: Recorder, t0: float) -> None:
        """Hand the socket to the TS hub (one reading thread for every camera) and wait
        until the camera closes, fails, stops or reaches its deadline."""
        video = next(t for t in self.pr.tracks.tracks if t.kind == "video")
        codec = _native.CODEC_H264 if video.codec == "h264" else _native.CODEC_HEVC

        def first_key(batch: list[tuple[Any, ...]]) -> int:
            return _native.nal.first_key(batch, video.index, codec)

        hub().run(self, rec, t0, first_key)

    def close(self, status: RecorderStatus) -> None:
        """Close the socket and add this connection's transport-stream damage counts."""
        self.sock.close()
        d = self.packetizer.demux
        status.ts_continuity_errors += d.cc_errors
        status.ts_resyncs += d.resyncs


def record_many(
    store: Store,
    sources: Iterable[tuple[str, str]],
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    reconnect: bool = True,
) -> list[RecorderStatus]:
    """Record several (camera, url) sources concurrently: a recorder thread per camera
    (native MPEG-TS cameras share the TS hub's reading thread), writers run by the process's
    writer pool."""
    stop = stop or threading.Event()
    recs = [
        Recorder(store, cam, url, duration_s=duration_s, stop=stop, reconnect=reconnect)
        for cam, url in sources
    ]
    errors: list[BaseException] = []

    def run(r: Recorder) -> None:
        try:
            r.run()
        except Exception as exc:  # noqa: BLE001 - reported after all cameras stop
            errors.append(exc)
            r.status.last_error = str(exc)

    threads = [
        threading.Thread(target=run, args=(r,), name=f"vstore-src-{r.camera_id}") for r in recs
    ]
    for t in threads:
        t.start()
    trimmed = time.monotonic()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                # This thread only waits: it also hands the writers' freed GOP buffers back
                # to the OS (vstore.base.heap), which glibc would otherwise keep.
                if time.monotonic() - trimmed >= heap.TRIM_INTERVAL_S:
                    heap.release_free_memory()
                    trimmed = time.monotonic()
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
    for r in recs:
        if r.writer is not None:
            r.status.writer = r.writer.stats.as_dict()
    return [r.status for r in recs]
