"""Live recording: a ``Recorder`` records one camera's source into its writer, through a
bounded queue (the writer run by the process's ``writer_pool``), reconnecting with backoff;
``record_many`` runs one per camera so a slow camera never stalls another.

The recorder picks the source (``Source`` in ``vstore.ingest.source``): the native MPEG-TS
source (``ts_source``, read by the TS hub, one thread for all cameras) when it can frame
every kept stream, else FFmpeg (``av_source``, read on the recorder's own thread). It is
the sink those sources hand packets to.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vstore.base import heap
from vstore.base.errors import SourceError, VstoreError
from vstore.ingest import mpegts, writer_pool
from vstore.ingest.av_source import AvSource
from vstore.ingest.source import Source
from vstore.ingest.ts_source import open_ts_source
from vstore.ingest.writer_pool import WriterPool
from vstore.store.camera_writer import open_writer
from vstore.store.store import Store

log = logging.getLogger(__name__)


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
    connected: bool = False  # a connection is up now (not connecting or waiting to retry)
    dropped_queue_full: int = 0
    # Packets that arrived once this process could no longer be sure it owned the camera (a
    # cluster member whose lease lapsed, e.g. after being frozen): never written.
    dropped_fenced: int = 0
    last_error: str = ""
    last_error_at_ns: int | None = None  # wall time it was said (note_error)
    # The engine error (its class name, vstore.base.errors) that stopped this camera before
    # its end; "" when it ran until stopped or its duration was reached.
    stopped_by: str = ""
    demuxer: str = ""  # "native" (vstore's MPEG-TS demuxer) or "ffmpeg"
    # Native MPEG-TS damage, summed over connections: transport packets lost (continuity
    # jumps; the frames they hit are stored flagged corrupt) and sync losses re-found.
    ts_continuity_errors: int = 0
    ts_resyncs: int = 0
    writer: dict[str, Any] = field(default_factory=dict)

    def note_error(self, message: str, at_ns: int | None = None) -> None:
        """Say ``message`` as the last error, with when (now unless ``at_ns``): an error
        kept after recording resumed must not read as a current one."""
        self.last_error = message
        self.last_error_at_ns = time.time_ns() if at_ns is None else at_ns


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
        gate: Callable[[], bool] | None = None,
        run_reason: str = "restart",
    ) -> None:
        self.store = store
        self._run_reason = run_reason  # why its first run begins (CameraWriter.name_run)
        # Asked before each write: False (this member's claim on the camera is no longer
        # surely valid) drops the packets and stops the recorder.
        self._gate = gate
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

    def stopping(self, t0: float) -> bool:
        """Whether the source should stop reading: stopped, out of time, or the writer failed."""
        return self.stop_event.is_set() or self.deadline_passed(t0) or bool(self.error)

    def wall_ns(self) -> int:
        return self.store.clock.wall_ns()

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
                    self.status.note_error(str(exc))
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
                        self.writer.name_run(self._run_reason)
                        writing = True
                    else:
                        self._queue.put(("new_run", src.tracks))
                        self._pool.schedule(self)
                        self.status.reconnects += 1
                    self.status.connects += 1
                    self.status.connected = True
                    backoff = 0.5
                    conn.pump(self, t0)
                except SourceError as exc:
                    self.status.note_error(str(exc))
                    log.warning("camera %s: %s", self.camera_id, exc)
                finally:
                    self.status.connected = False
                    damage = conn.close()
                    self.status.ts_continuity_errors += damage.continuity_errors
                    self.status.ts_resyncs += damage.resyncs
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

    def _connect(self) -> Source:
        """A connection to the source: the native MPEG-TS path when it can carry every kept
        stream, else FFmpeg (PyAV)."""
        settings = self.store.config.camera(self.camera_id)
        if settings.demuxer == "auto" and self._native_ts and mpegts.native_eligible(self.url):
            native = open_ts_source(self.url)
            if native is not None:
                self.status.demuxer = native.demuxer
                return native
            self._native_ts = False  # decided once per recorder: say so, then use FFmpeg
            log.info(
                "camera %s: a kept stream is not AAC/H.264/H.265 in ADTS/Annex-B framing; "
                "FFmpeg demuxes this source",
                self.camera_id,
            )
        source = AvSource(self.url)
        self.status.demuxer = source.demuxer
        return source

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
            if self._gate is not None and not self._gate():
                self.status.dropped_fenced += len(item) if type(item) is list else 1
                self.stop_event.set()
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

    def run(r: Recorder) -> None:
        try:
            r.run()
        except Exception as exc:  # noqa: BLE001 - reported after all cameras stop
            r.status.note_error(str(exc))
            r.status.stopped_by = type(exc).__name__

    threads = [
        threading.Thread(target=run, args=(r,), name=f"vstore-src-{r.camera_id}") for r in recs
    ]
    for t in threads:
        t.start()
    # The writers' freed GOP buffers go back to the OS (vstore.base.heap), which glibc
    # would otherwise keep.
    trimming = threading.Event()
    heap.keep_trimming(trimming)
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # (in steps: Ctrl-C reaches this thread between them)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
    finally:
        trimming.set()
    for r in recs:
        if r.writer is not None:
            r.status.writer = r.writer.stats.as_dict()
    return [r.status for r in recs]
