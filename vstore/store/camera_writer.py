"""The camera writer: turns one camera's packets into GOP chunks inside segment files
(``vstore.segment.writer.SegmentFile``) and indexes them.

``CameraWriter`` takes packets (PyAV or ``vstore.Packet``), normalizes timestamps (33-bit wrap,
jumps, missing values), maps media time to wall time, cuts chunks at keyframes and segments at
keyframes past the target duration, and commits index rows only for bytes already fsynced
(docs/design/lifecycle.md, invariants W1-W5).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, Protocol, Self, runtime_checkable

from vstore import _native
from vstore._native import CODEC_H264, CODEC_HEVC, NAL_KEY, NAL_PPS, NAL_SPS, NAL_VPS
from vstore.base import layout
from vstore.base.clock import Clock
from vstore.base.errors import StorageFull, UsageError, VstoreError
from vstore.base.fsutil import Fs
from vstore.base.timebase import GAP_TOLERANCE_NS, NS_PER_S, check_time_ns, format_time, ticks_to_ns
from vstore.index.time_index import Batch, ChunkRow, Event, SegmentRow, TimeIndex
from vstore.segment import format as fmt
from vstore.segment.packet import Packet
from vstore.segment.writer import SegmentFile
from vstore.store.config import CameraSettings, StoreConfig
from vstore.store.space import SpaceRefused


@runtime_checkable
class MappedTracks(Protocol):
    """Tracks with the map from a demuxer's stream index to track (``SourceTracks``)."""

    tracks: tuple[fmt.TrackInfo, ...]
    stream_to_track: dict[int, int]


class WriterHost(Protocol):
    """What a camera writer needs of its store (``vstore.store.store.Store`` is one)."""

    layout: layout.StoreLayout
    config: StoreConfig
    index: TimeIndex
    clock: Clock
    fs: Fs
    uuid: str

    def sealer(self) -> Executor: ...
    def syncer(self) -> Executor: ...
    def ensure_space(self, wait: bool = False) -> None: ...
    def drop_empty_segment(self, row: SegmentRow) -> None: ...
    def writer_closed(self, w: CameraWriter) -> None: ...
    def register_writer(self, camera_id: str, make: Callable[[], CameraWriter]) -> CameraWriter: ...


log = logging.getLogger(__name__)

WRAP_33 = 1 << 33
_PARAM_BITS = NAL_SPS | NAL_PPS | NAL_VPS
_NAL_CODECS = {"h264": CODEC_H264, "hevc": CODEC_HEVC}


# fsyncs one camera may have running behind it (W2), and group commit: a chunk due for an
# fsync while SYNC_DEPTH run does not wait for one to finish; the next fsync covers it too,
# as long as the chunks left that way hold less than GROUP_MAX_BYTES (then the writer waits).
# A camera in real time never gets here (a GOP every second or two, an fsync in
# milliseconds); one the disk falls behind (a stall, an import, recording flat out) pays one
# journal commit per few GOPs instead of one per GOP and keeps taking packets through a
# stall. GROUP_MAX_BYTES bounds what a crash may lose beyond the open chunk and the fsync
# in flight, none of it acknowledged (lifecycle.md W2). Measured flat out side by side
# (125 MB rounds, eleven alternating, ratio to a plain write, one / eight cameras): one fsync
# per GOP with two in flight 0.53 / 0.70; grouped, two in flight, 8 MiB 0.69 / 0.87; grouped, one
# in flight, 16 MiB 0.74 / 0.91 (back-to-back fsyncs, each covering more). A 4 MiB bound
# cost a seventh of that; 64 MiB gained 3 % more.
SYNC_DEPTH = 1
GROUP_MAX_BYTES = 16 << 20
# When an fsync returns while the writer is busy, how soon the chunks left for the next one
# are handed over if the writer has not done it itself (_hand_over_deferred).
HANDOVER_RETRY_S = 0.05
# A live run goes into a gap before later footage (the host clock stepped back, T6) only
# when the gap leaves it at least this long; a shorter one is clamped past (T3).
GAP_RUN_MIN_NS = 60 * NS_PER_S


@dataclass
class _TrackState:
    info: fmt.TrackInfo
    is_video: bool
    nal_codec: int  # -1: not H.264/H.265
    length_size: int  # 0 = Annex-B
    max_jump_ticks: int
    wrap_bits: bool


@dataclass
class WriterStats:
    """Counters of one camera writer (exported by `vstore record --json` and metrics)."""

    packets: int = 0
    bytes: int = 0
    chunks: int = 0
    segments: int = 0
    dropped_before_keyframe: int = 0
    dropped_no_params: int = 0
    dropped_no_timestamp: int = 0
    dropped_disk_full: int = 0  # while recording paused for space (lifecycle S4)
    ignored_stream_packets: int = 0
    timestamps_synthesized: int = 0
    non_monotonic: int = 0
    discontinuities: int = 0
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("events")
        return d


def _track_state(info: fmt.TrackInfo, max_jump_s: float) -> _TrackState:
    num, den = info.time_base
    if num <= 0 or den <= 0:
        raise UsageError(f"track {info.index}: bad time base {num}/{den}")
    is_video = info.kind == "video"
    nal_codec = _NAL_CODECS.get(info.codec, -1) if is_video else -1
    length_size = 4 if info.bitstream == "avcc" else 0
    return _TrackState(
        info=info,
        is_video=is_video,
        nal_codec=nal_codec,
        length_size=length_size,
        max_jump_ticks=int(max_jump_s * den / num),
        wrap_bits=(num, den) == (1, 90000),
    )


class CameraWriter:
    """Records one camera: ``write(packet)`` from any thread, ``close()`` (or ``with``) to seal.

    Thread-safe: calls are serialized by an internal lock, so a host may push from several
    threads; ``write`` returns once the packet is in the open chunk (back-pressure is the time
    the writer takes). A packet is durable once ``flush()`` returns, or once its chunk has been
    written and fsynced (every GOP with the default fsync_interval_s = 0): that fsync runs
    behind the writer, at most SYNC_DEPTH of them (beyond, chunks wait for the next fsync up to
    GROUP_MAX_BYTES), and ``durable_end_ns`` says how far the footage is durable.
    """

    def __init__(
        self,
        store: WriterHost,
        camera_id: str,
        tracks: Sequence[fmt.TrackInfo],
        *,
        start_ns: int | None = None,
        settings: CameraSettings | None = None,
        stream_map: dict[int, int] | None = None,
    ) -> None:
        layout.validate_camera_id(camera_id)
        self._stream_map = stream_map
        self.store = store
        self.camera_id = camera_id
        self.settings = settings or store.config.camera(camera_id)
        self._max_chunk_bytes = self.settings.max_chunk_bytes
        self.index: TimeIndex = store.index
        cam = self.index.camera_num(camera_id, create=True)
        assert cam is not None
        self.camera_num = cam
        self.stats = WriterStats()
        self._lock = threading.RLock()
        self._fixed_start_ns = start_ns  # import: wall time of the first keyframe
        self._seg: SegmentFile | None = None
        self._seg_start_ns = 0
        self._pending_rows: list[ChunkRow] = []
        self._pending_events: list[Event] = []
        self._sealing: Any = None  # the previous segment's seal, when it runs behind us
        # The fsyncs running behind us, oldest first (at most SYNC_DEPTH; _sync_behind).
        self._syncs: deque[Any] = deque()
        # Set by whichever job last made footage durable, in order: a sync job sets it after
        # the one before it, the first sync of a segment after its predecessor's seal, a
        # seal after its segment's last sync.
        self._durable_end_ns: int | None = None
        self._event_seq = store.clock.monotonic_ns() & 0xFFFF
        self._nal = _native.nal  # twins chosen at creation (see _native.use)
        self._table = _native.ptable.PacketTable()
        # The open chunk's packets, kept as the caller's buffers and written with one writev:
        # no copy of payload bytes on the per-packet path.
        self._payload: list[bytes | bytearray | memoryview] = []
        self._chunk_flags = 0
        self._chunk_start_ns = 0
        self._closed = False
        self._handover_armed = False  # a _hand_over_deferred retry is pending
        self._failed: VstoreError | None = None
        self._space_paused_ns: int | None = None  # recording paused for space since (S4)
        self._ceiling_ns: int | None = None  # a run in a gap must end before this (T6)
        self._floor_ns: int | None = None  # the next anchor is not before this (T6)
        self._last_fsync_mono = store.clock.monotonic_ns()
        prev = self.index.last_segment(self.camera_num)
        self._last_end_ns = prev.end_ns if prev is not None else None
        # An import may fill a gap before, between or after the camera's footage (backfill),
        # never overlap it: it continues after the footage before its start, and stops
        # before the footage after it.
        self._import_ceiling_ns: int | None = None
        self.overlap_error: UsageError | None = None
        if start_ns is not None:
            self._place_import(start_ns)
        self._set_tracks(self._check_tracks(tracks))
        self._new_run_state()

    # --- setup ---------------------------------------------------------------------------------
    def _check_tracks(
        self, tracks: Sequence[fmt.TrackInfo]
    ) -> tuple[tuple[fmt.TrackInfo, ...], list[_TrackState]]:
        """Validate tracks and build their timestamp state, changing nothing (new_run checks
        before it seals the running segment)."""
        tracks = tuple(tracks)
        if not tracks:
            raise UsageError("a camera writer needs at least one track")
        if sum(1 for t in tracks if t.kind == "video") != 1:
            raise UsageError("a camera writer needs exactly one video track")
        if len(tracks) > 255:
            raise UsageError("at most 255 tracks")
        if [t.index for t in tracks] != list(range(len(tracks))):
            raise UsageError("track indexes must be 0..n-1 in order")
        return tracks, [_track_state(t, self.settings.max_clock_drift_s) for t in tracks]

    def _set_tracks(self, checked: tuple[tuple[fmt.TrackInfo, ...], list[_TrackState]]) -> None:
        """Apply tracks as ``_check_tracks`` returned them."""
        self._tracks_info, self._ts = checked
        tracks = self._tracks_info
        self._video = next(i for i, t in enumerate(tracks) if t.kind == "video")
        # Timestamp state lives in the FastPath (compiled: it also appends ordinary packets
        # without Python objects; pure twin: state only). A new run resets it in place, so a
        # caller still holding its bound write_raw (a loop's `wr = w.write_raw`) gets the
        # new state and keeps the fast path.
        spec = [(ts.max_jump_ticks, ts.wrap_bits, ts.nal_codec, ts.length_size) for ts in self._ts]
        if hasattr(self, "_fp"):
            self._fp.reset(self._video, spec)
            return
        self._fp = _native.ptable.FastPath(self._table, self._video, spec)
        # The compiled twin's write_raw takes an ordinary packet with no Python frame and
        # hands the rest to the method below; the instance attribute shadows the method.
        self._fp.bind(
            self._lock,
            self.stats,
            self._payload,
            MethodType(type(self).write_raw, self),
            self._chunk_full,
            self._max_chunk_bytes,
        )
        self.write_raw = self._fp.write_raw

    def _new_run_state(self) -> None:
        self._fp.started = False
        self._anchor_wall_ns = 0
        self._anchor_media_ns = 0
        self._anchor_offset_ns = 0  # anchor wall minus receive wall (non-zero after a clamp)
        self._pending_offset_ns = 0
        self._reanchor = True
        self._params = self._tracks_info[self._video].extradata
        self._params_seen = b""
        self._run_reason = "import" if self._fixed_start_ns is not None else "restart"

    # --- public API ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, packet: Any) -> None:
        """Append one packet: a ``vstore.Packet`` or a PyAV ``av.Packet`` of a declared stream."""
        if isinstance(packet, Packet):
            self.write_raw(
                packet.track,
                packet.pts,
                packet.dts,
                packet.is_key,
                packet.data,
                packet.wall_ns,
                packet.corrupt,
            )
            return
        # PyAV packet: map its stream to our track (identity when no map was given).
        stream = packet.stream.index
        if self._stream_map is not None:
            track = self._stream_map.get(stream)
            if track is None:
                self.stats.ignored_stream_packets += 1
                return
        else:
            track = stream
        self.write_raw(
            track,
            packet.pts,
            packet.dts,
            bool(packet.is_keyframe),
            bytes(packet),
            None,
            bool(packet.is_corrupt),
        )

    def write_raw(
        self,
        track: int,
        pts: int | None,
        dts: int | None,
        is_key: bool,
        data: bytes | bytearray | memoryview,
        wall_ns: int | None = None,
        corrupt: bool = False,
    ) -> None:
        """The fast path behind ``write``: plain values, no record object."""
        if type(data) is not bytes:
            data = bytes(data)  # the chunk keeps a reference until it is written: own it
        with self._lock:
            if self.overlap_error is not None:
                raise self.overlap_error
            if not corrupt and not self._fp.push(track, pts, dts, is_key, data, self._payload):
                # Appended by the compiled fast path (never taken when closed or failed).
                stats = self.stats
                stats.packets += 1
                stats.bytes += len(data)
                if self._table.payload_bytes >= self._max_chunk_bytes:
                    self._chunk_full()
                return
            if self._closed:
                raise VstoreError(f"camera writer {self.camera_id} is closed")
            if self._failed is not None:
                self._wait_sync(report=False)  # reported here: release the abandoned file
                raise VstoreError(
                    f"camera writer {self.camera_id} stopped after an error ({self._failed}); "
                    "call new_run() to resume once the cause is fixed"
                )
            try:
                self._write_locked(track, pts, dts, is_key, data, wall_ns, corrupt)
            except (StorageFull, VstoreError) as exc:
                self._stop_after(exc)
                raise

    def _count_unstarted_drop(self) -> None:
        if self._space_paused_ns is not None:
            self.stats.dropped_disk_full += 1
        else:
            self.stats.dropped_before_keyframe += 1

    def _stop_after(self, exc: VstoreError) -> None:
        """After an I/O failure the open GOP may lack its keyframe and a failed fsync leaves
        the page cache in an unknown state: refuse more packets rather than store
        undecodable ones or index unsynced bytes (lifecycle W5), until ``new_run``. A usage
        error (a bad packet) stops nothing."""
        if not isinstance(exc, UsageError | SpaceRefused):  # (nothing written: retry is safe)
            self._failed = exc
            self._fp.enabled = False

    def write_many(self, items: list[tuple[Any, ...]]) -> None:
        """Several packets as ``write_raw`` argument tuples ``(track, pts, dts, is_key, data,
        wall_ns, corrupt)``, under one lock: the compiled fast path takes runs of ordinary
        packets in one call (what the native MPEG-TS path hands over per socket read)."""
        with self._lock:
            i, n = 0, len(items)
            max_chunk = self.settings.max_chunk_bytes
            while i < n:
                j, count, nbytes = self._fp.push_many(items, i, self._payload, max_chunk)
                if count:
                    self.stats.packets += count
                    self.stats.bytes += nbytes
                    if self._table.payload_bytes >= max_chunk:
                        self._chunk_full()
                if j >= n:
                    return
                if count:
                    i = j  # items[j] may only have met the chunk limit: offer it again
                    continue
                self.write_raw(*items[j])  # the slow path (re-entrant lock), errors included
                i = j + 1

    def _chunk_full(self) -> None:
        """The open chunk reached max_chunk_bytes: close it; the GOP continues in the next
        (a write or fsync failure stops the writer there, in _close_chunk / _wait_sync,
        whichever path appended: the compiled write_raw, the method or write_many)."""
        self._close_chunk(self._open_chunk_end_ns(), continuation_next=True)

    def _write_locked(
        self,
        track: int,
        pts: int | None,
        dts: int | None,
        is_key: bool,
        data: bytes | bytearray | memoryview,
        wall_ns: int | None,
        corrupt: bool,
    ) -> None:
        try:
            ts = self._ts[track]
        except (IndexError, TypeError):
            raise UsageError(f"packet for unknown track {track!r}") from None
        size = len(data)
        if size == 0:
            return  # an empty packet carries nothing to store (EOF flush markers)
        flags = fmt.PKT_CORRUPT if corrupt else 0
        last_dts, last_raw, wrap_off, rebase_off, last_delta = self._fp.state(track)
        # --- timestamps: fill, unwrap, rebase (docs/design/time.md) ---
        if dts is None:
            dts = pts
        if dts is None:
            if last_raw is None:
                self.stats.dropped_no_timestamp += 1
                return
            dts = last_raw + last_delta - wrap_off
            flags |= fmt.PKT_TS_SYNTH
            self.stats.timestamps_synthesized += 1
        if pts is None:
            pts = dts
            flags |= fmt.PKT_TS_SYNTH
        raw = dts + wrap_off
        if ts.wrap_bits and last_raw is not None and raw < last_raw - (1 << 32):
            wrap_off += WRAP_33
            raw += WRAP_33
            self._event("pts_wrap", {"track": track, "offset_ticks": wrap_off})
        upts = pts + wrap_off
        if ts.wrap_bits:
            if upts < raw - (1 << 32):
                upts += WRAP_33
            elif upts > raw + (1 << 32):
                upts -= WRAP_33
        ndts = raw + rebase_off
        bump = 0  # ticks added to this packet alone to keep dts strictly increasing
        if last_dts is not None:
            delta = ndts - last_dts
            if delta <= 0 and -delta <= last_delta * 4:
                # A small reorder or a repeated dts: keep the order, count it.
                bump = last_dts + 1 - ndts
                self.stats.non_monotonic += 1
            elif delta <= 0 or delta > ts.max_jump_ticks:
                # A jump (clock step, camera reboot, spliced file): continue media time
                # without a hole and record the raw jump as a discontinuity (T2).
                self._event(
                    "timestamp_jump",
                    {"track": track, "jump_ns": ticks_to_ns(delta, *ts.info.time_base)},
                )
                self.stats.discontinuities += 1
                rebase_off += last_dts + last_delta - ndts
                ndts = raw + rebase_off
            else:
                last_delta = delta
        ndts += bump
        npts = upts + rebase_off + bump
        if not ndts <= npts <= ndts + 0x7FFFFFFF:
            # pts before dts, or hours after it: not a real reorder delay; show it at dts.
            if npts > ndts:
                self.stats.non_monotonic += 1
            npts = ndts
        self._fp.set_state(track, ndts, raw, wrap_off, rebase_off, last_delta)

        # --- video: keyframes, parameter sets, chunk and segment cuts ---
        if track == self._video:
            key = is_key
            if ts.nal_codec >= 0:
                bits = self._nal.nal_flags(data, ts.nal_codec, ts.length_size)
                if bits & NAL_KEY:
                    key = True
                if key and bits & _PARAM_BITS:
                    params = self._nal.parameter_sets(data, ts.nal_codec, ts.length_size)
                else:
                    params = b""
            else:
                params = b""
            if key:
                flags |= fmt.PKT_KEY
                if not self._on_keyframe(npts, params, wall_ns):
                    return
            elif not self._fp.started:
                self._count_unstarted_drop()
                return
            # The chunk ends one frame after its latest-shown frame (with B-frames, not the
            # last in decode order); a keyframe starts a new chunk.
            if key or npts > self._fp.chunk_last_vpts:
                self._fp.chunk_last_vpts = npts
            self._fp.chunk_vdelta = last_delta
        elif not self._fp.started:
            self._count_unstarted_drop()
            return

        self._table.append(ndts, npts, size, flags, track)
        self._payload.append(data)
        self.stats.packets += 1
        self.stats.bytes += size
        if self._table.payload_bytes >= self._max_chunk_bytes:
            self._chunk_full()

    @property
    def durable_end_ns(self) -> int | None:
        """Wall time (ns) up to which this camera's footage is durable: fsynced, and indexed
        or found again by recovery (R3). None until the first chunk is. A host that
        acknowledges packets upstream acknowledges those before it, or calls ``flush()``."""
        return self._durable_end_ns

    def flush(self) -> None:
        """Make every packet written so far durable: write the open chunk, fsync, index it."""
        with self._lock:
            self._wait_seal()  # a segment sealing behind us is part of "so far"
            if self._seg is not None and len(self._table):
                self._close_chunk(self._open_chunk_end_ns(), continuation_next=True, sync=False)
            self._wait_sync()  # its rows go to the index before the ones synced here
            self._sync_here()

    def new_run(self, tracks: Sequence[fmt.TrackInfo] | None = None, reason: str = "reconnect"):
        """Start over after a source reconnect: seal, reset timestamps, re-anchor on next key."""
        with self._lock:
            # Bad tracks change nothing (checked before the running segment is sealed).
            if tracks is not None:
                checked = self._check_tracks(tracks)
            else:
                checked = (self._tracks_info, self._ts)
            # A failed background fsync was logged and stopped the writer; starting over
            # releases its segment to recovery (W5) instead of failing the restart.
            self._wait_sync(report=False)
            self._seal_segment()
            self._failed = None
            self._fp.enabled = True
            self._set_tracks(checked)
            self._new_run_state()
            self._run_reason = reason

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._seal_segment()
            except VstoreError:
                # Could not seal (disk still full, fsync failing): leave the file to recovery,
                # which seals it at its last whole chunk on the next writable open (R2).
                # Waits for the fsyncs behind us first: they use the file descriptor.
                self._abandon_segment()
                raise
            finally:
                self._closed = True
                self._fp.enabled = False
                self.store.writer_closed(self)

    # --- internals -----------------------------------------------------------------------------
    def _event(self, kind: str, detail: dict[str, Any], at_ns: int | None = None) -> None:
        if at_ns is None:
            at_ns = self._last_end_ns if self._last_end_ns is not None else self._chunk_start_ns
        self._event_seq = (self._event_seq + 1) & 0xFFFFFFFF
        self._pending_events.append(Event(self.camera_num, at_ns, self._event_seq, kind, detail))
        self.stats.events.append(kind)
        if len(self.stats.events) > 100:
            del self.stats.events[:50]
        log.info("camera %s: %s %s", self.camera_id, kind, detail)

    def _open_chunk_end_ns(self) -> int:
        """Wall end of the open chunk: its last video frame plus one frame duration."""
        return self._wall_of(self._video, self._fp.chunk_last_vpts + self._fp.chunk_vdelta)

    def _wall_of(self, track: int, ticks: int) -> int:
        tb = self._ts[track].info.time_base
        return self._anchor_wall_ns + ticks_to_ns(ticks, *tb) - self._anchor_media_ns

    def _on_keyframe(self, key_pts: int, params: bytes, wall_ns: int | None) -> bool:
        """Handle a video keyframe; False when the packet must be dropped."""
        vinfo = self._tracks_info[self._video]
        if not self._fp.started and not (params or vinfo.extradata) and vinfo.codec in _NAL_CODECS:
            self.stats.dropped_no_params += 1
            return False
        params_changed = bool(params) and bool(self._params_seen) and params != self._params_seen
        if params:
            self._params_seen = params
        key_media_ns = ticks_to_ns(key_pts, *vinfo.time_base)
        receive_ns = wall_ns
        if receive_ns is None and self._fixed_start_ns is None:
            receive_ns = self.store.clock.wall_ns()
        predicted = None
        if self._fp.started:
            predicted = self._anchor_wall_ns + key_media_ns - self._anchor_media_ns
            if not self._reanchor and receive_ns is not None:
                # Drift is measured against the offset fixed at anchoring time, so a clamped
                # anchor (T3) does not re-trigger at every keyframe.
                drift = receive_ns + self._anchor_offset_ns - predicted
                if abs(drift) > self.settings.max_clock_drift_s * NS_PER_S:
                    self._event("clock_drift", {"drift_ns": drift}, at_ns=predicted)
                    self.stats.discontinuities += 1
                    self._reanchor = True
                elif self._anchor_offset_ns > 0 and receive_ns >= self._last_end_ns:
                    # T3 is over: the clock caught up with the footage it was clamped behind
                    # (or that footage went): stamp the camera's true time again.
                    self._reanchor = True
                elif (
                    self._ceiling_ns is not None
                    and predicted + max(3 * (predicted - self._chunk_start_ns), 10 * NS_PER_S)
                    >= self._ceiling_ns
                ):
                    # T6: the gap this run fills ends soon; continue after the footage there.
                    self._floor_ns = self._stored_end_ns()
                    self._reanchor = True
        # Close the open chunk where the old mapping puts this keyframe, before re-anchoring.
        if self._seg is not None and len(self._table):
            assert predicted is not None
            self._close_chunk(predicted, continuation_next=False)
        if self._reanchor:
            if self._fixed_start_ns is not None and not self._fp.started:
                anchor = self._fixed_start_ns
            elif self._fixed_start_ns is not None:
                # An import continues its own media time: re-anchoring keeps the wall mapping.
                anchor = self._anchor_wall_ns + key_media_ns - self._anchor_media_ns
            else:
                assert receive_ns is not None
                anchor = receive_ns
            requested = anchor
            floor = self._last_end_ns
            if self._floor_ns is not None:
                floor = self._floor_ns if floor is None else max(floor, self._floor_ns)
            self._floor_ns = self._ceiling_ns = None
            hole_end = None
            if floor is not None and anchor < floor and self._fixed_start_ns is None:
                hole_end = self._gap_end_at(anchor)
            if hole_end is not None:
                # T6: the host clock stepped back (a correction after a step forward): the
                # camera's true time lies in a gap before footage stamped while the clock
                # was ahead. Recording goes there, up to that footage, instead of being
                # stamped after it for as long as the step was.
                self._ceiling_ns = hole_end
                self._event(
                    "clock_stepped_back",
                    {"from_ns": floor, "to_ns": anchor, "later_footage_from_ns": hole_end},
                    at_ns=anchor,
                )
            elif floor is not None and anchor < floor:
                if floor - anchor > NS_PER_S:
                    self._event(
                        "clock_behind",
                        {"requested_ns": anchor, "assigned_ns": floor},
                        at_ns=floor,
                    )
                anchor = floor  # the index order is never broken (T3)
            key_wall = anchor
            self._pending_offset_ns = anchor - requested if receive_ns is not None else 0
        else:
            assert predicted is not None
            key_wall = predicted

        need_new = (
            self._seg is None
            or self._reanchor
            or params_changed
            or key_wall - self._seg_start_ns >= int(self.settings.segment_duration_s * NS_PER_S)
        )
        if need_new:
            if params_changed:
                self._event("codec_parameters_changed", {}, at_ns=key_wall)
            self._seal_segment(background=True)
            if self._reanchor:
                self._anchor_wall_ns = key_wall
                self._anchor_media_ns = key_media_ns
                self._anchor_offset_ns = self._pending_offset_ns
                self._reanchor = False
            if params and vinfo.bitstream != "avcc":
                self._params = params
            try:
                self._open_segment(key_wall)
            except SpaceRefused as exc:
                if self._fixed_start_ns is not None:
                    raise  # an import says so (it waited for the keeper first)
                self._pause_for_space(key_wall, exc)
                return False
            if self._space_paused_ns is not None:
                self._event(
                    "recording_resumed",
                    {"paused_ns": key_wall - self._space_paused_ns},
                    at_ns=key_wall,
                )
                log.warning("camera %s: space is back, recording resumes", self.camera_id)
                self._space_paused_ns = None
        self._fp.started = True
        self._chunk_start_ns = key_wall
        self._chunk_flags = fmt.CHUNK_KEY_START
        return True

    def _place_import(self, start_ns: int) -> None:
        covering = self.index.chunk_at(self.camera_num, start_ns)
        if covering is not None:
            seg = next(
                (
                    r
                    for r in self.index.segments(self.camera_num, start_ns, start_ns + 1)
                    if r.segment_id == covering.segment_id
                ),
                None,
            )
            lo, hi = (seg.start_ns, seg.end_ns) if seg else (covering.start_ns, covering.end_ns)
            raise UsageError(
                f"camera {self.camera_id!r} already has footage at {format_time(start_ns)} "
                f"(a segment {format_time(lo)} .. {format_time(hi)}; `vstore timeline` shows "
                "the gaps): import into a gap of its footage, after it, or under another camera id"
            )
        before = self.index.chunk_before(self.camera_num, start_ns)
        self._last_end_ns = before.end_ns if before is not None else None
        after = next(iter(self.index.chunks(self.camera_num, start_ns, 2**63 - 1)), None)
        self._import_ceiling_ns = after.start_ns if after is not None else None

    def _gap_end_at(self, t_ns: int) -> int | None:
        """Where the gap of this camera's footage that holds ``t_ns`` ends, when it is one a
        run can start in (no stored or written footage at ``t_ns``, and at least a minute
        free after it); None otherwise."""
        self._wait_seal()  # the segment sealing behind us is stored footage too
        if self._seg is not None and self._seg_start_ns <= t_ns:
            return None
        if self.index.chunk_at(self.camera_num, t_ns) is not None:
            return None
        ends = [
            c.start_ns
            for c in itertools.islice(self.index.chunks(self.camera_num, t_ns, 2**63 - 1), 1)
        ]
        if self._seg is not None:
            ends.append(self._seg_start_ns)
        end = min(ends) if ends else None
        if end is None or end - t_ns < GAP_RUN_MIN_NS:
            return None
        return end

    def _stored_end_ns(self) -> int:
        """The end of this camera's latest footage, stored or written by this writer."""
        last = self.index.last_segment(self.camera_num)
        ends = [e for e in (self._last_end_ns, last.end_ns if last else None) if e is not None]
        return max(ends) if ends else 0

    def _pause_for_space(self, at_ns: int, exc: SpaceRefused) -> None:
        """S4: a live camera refused a segment for space drops packets (counted) and asks
        again at every keyframe; the first that gets one resumes recording. Nothing stops."""
        self._fp.started = False
        self._reanchor = True  # the footage after the pause anchors anew (a gap, T5)
        if self._space_paused_ns is None:
            self._space_paused_ns = at_ns
            self._event("disk_full", {"message": str(exc)}, at_ns=at_ns)
            log.error("camera %s: recording paused: %s", self.camera_id, exc)

    def _open_segment(self, start_ns: int) -> None:
        # The declared disk-full behaviour (lifecycle S1-S4): a live camera never waits on
        # it; an import waits for the space keeper's pass.
        self.store.ensure_space(wait=self._fixed_start_ns is not None)
        seg_id = self.index.new_segment_id()
        tracks = list(self._tracks_info)
        v = tracks[self._video]
        if self._params and v.bitstream != "avcc" and self._params != v.extradata:
            tracks[self._video] = v._replace(extradata=self._params)
        meta = fmt.SegmentMeta(
            camera=self.camera_id,
            segment_id=seg_id,
            tracks=tuple(tracks),
            anchor_wall_ns=self._anchor_wall_ns,
            anchor_media_ns=self._anchor_media_ns,
            created_ns=self.store.clock.wall_ns(),
            store_uuid=self.store.uuid,
        )
        relpath = self.store.layout.segment_relpath(self.camera_id, start_ns, seg_id)
        row = SegmentRow(
            camera_num=self.camera_num,
            segment_id=seg_id,
            start_ns=start_ns,
            end_ns=start_ns,
            state="open",
            location="local",
            path=relpath,
            size_bytes=0,
            sha256="",
            chunk_count=0,
            packet_count=0,
            codecs=tuple(t.codec for t in tracks),
        )
        # W0: the open marker is durable before the file exists, so recovery finds the file.
        b = Batch()
        b.put(
            layout.open_key(seg_id),
            _json(
                {
                    "camera": self.camera_id,
                    "path": relpath,
                    "start_ns": start_ns,
                    "camera_num": self.camera_num,
                }
            ),
        )
        b.put(row.key(), row.value())
        gap_from = self._last_end_ns
        if gap_from is not None and self._run_reason != "continuous":
            # A new run (restart, reconnect, import) is always on the timeline; it is a gap
            # when footage is missing for longer than half a second (time.md T5).
            kind = "gap" if start_ns - gap_from > GAP_TOLERANCE_NS else self._run_reason
            self._event(
                kind,
                {"from_ns": gap_from, "to_ns": start_ns, "reason": self._run_reason},
                at_ns=gap_from,
            )
        self._flush_events(b)
        self.index.commit(b, sync=True)
        self._seg = SegmentFile(
            self.store.fs, self.store.layout.root, relpath, meta, self.settings.drop_page_cache
        )
        self._seg_row = row
        self._seg_start_ns = start_ns
        self._run_reason = "continuous"
        self.stats.segments += 1

    def _flush_events(self, b: Batch) -> None:
        for ev in self._pending_events:
            b.put(ev.key(), ev.value())
        self._pending_events.clear()

    def _close_chunk(self, end_ns: int, continuation_next: bool, sync: bool = True) -> None:
        """Write the open chunk. When an fsync is due it starts behind the writer (W2), unless
        ``sync`` is False: then the caller fsyncs next (flush, seal) and indexes the rows."""
        if self._seg is None or len(self._table) == 0:
            return
        start = self._chunk_start_ns
        end_ns = max(end_ns, start + 1)
        if self._import_ceiling_ns is not None and end_ns > self._import_ceiling_ns:
            # A backfill reached the camera's later footage: this chunk would overlap it.
            # It is dropped, the import stops at its next packet, what came before stays.
            self._table.reset()
            self._payload.clear()
            kept = (
                f"its footage before {format_time(start)} is stored"
                if self.stats.chunks
                else "nothing of it was stored"
            )
            self.overlap_error = UsageError(
                f"the import reaches footage camera {self.camera_id!r} already has from "
                f"{format_time(self._import_ceiling_ns)}; {kept}"
            )
            self._fp.enabled = False
            return
        n = len(self._table)
        now = self.store.clock.monotonic_ns()
        due = self._fsync_due(now)  # one decision: the early writeback and the fsync agree
        try:
            entry = self._seg.append_chunk(
                self._chunk_flags,
                start,
                end_ns,
                self._table.pack(),
                n,
                self._payload,
                syncing=due,
            )
        except VstoreError as exc:
            self._stop_after(exc)
            raise
        self._pending_rows.append(
            ChunkRow(
                self.camera_num,
                start,
                end_ns,
                self._seg_row.segment_id,
                entry.offset,
                entry.length,
                n,
                entry.crc32,
                self._chunk_flags,
            )
        )
        self.stats.chunks += 1
        self._last_end_ns = end_ns
        self._table.reset()
        self._payload.clear()  # the same list stays bound to the fast path
        self._chunk_start_ns = end_ns
        self._chunk_flags = fmt.CHUNK_CONTINUATION if continuation_next else 0
        if due and sync:
            self._sync_behind(now)

    def _sync_behind(self, now: int) -> None:
        """Hand the chunks closed since the last fsync to the store's sync threads: fsync,
        then index them (W2), while this camera writes its next GOP, so the disk has the
        next chunk's bytes queued while it commits the last (see SYNC_DEPTH). While
        SYNC_DEPTH run, the chunks stay for the next fsync (group commit) until they hold
        GROUP_MAX_BYTES; then this waits for the oldest, which bounds what a crash may lose
        (lifecycle.md W2)."""
        self._reap_syncs()
        if len(self._syncs) >= SYNC_DEPTH and self._unsynced_bytes() < GROUP_MAX_BYTES:
            return  # group commit: the next fsync covers these chunks too (GROUP_MAX_BYTES)
        self._wait_sync(keep=SYNC_DEPTH - 1)
        self._submit_sync(now)

    def _submit_sync(self, now: int) -> None:
        """Hand the chunks closed since the last fsync to a sync job (W2)."""
        seg = self._seg
        assert seg is not None
        rows, events = self._pending_rows, self._pending_events
        # The job indexes after the one before it: this segment's last sync, or for its first
        # the previous segment's seal (its rows and sealed row go first; a failed seal fails
        # this too), so rows and durable_end_ns advance in order. Chained jobs were all
        # submitted earlier, so they already run: the pools cannot deadlock.
        prev = self._syncs[-1] if self._syncs else self._sealing
        fut = self.store.syncer().submit(self._sync_job, seg, seg.offset, rows, events, prev)
        # Only once the job holds them: a refused submit (interpreter exit) leaves them here.
        self._pending_rows, self._pending_events = [], []
        self._last_fsync_mono = now
        fut.add_done_callback(self._sync_done)
        self._syncs.append(fut)

    def _reap_syncs(self) -> None:
        """Forget the fsyncs behind us that have finished (a failed one stops us, W5)."""
        done = 0
        for fut in self._syncs:
            if not fut.done():
                break
            done += 1
        if done:
            self._wait_sync(keep=len(self._syncs) - done)

    def _unsynced_bytes(self) -> int:
        """Bytes of the closed chunks no fsync has been handed yet."""
        return sum(r.length for r in self._pending_rows)

    def _sync_job(
        self,
        seg: SegmentFile,
        upto: int,
        rows: list[ChunkRow],
        events: list[Event],
        prev: Any,
    ) -> None:
        """On a sync thread: W2 for chunks that end at ``upto``. The fsync may overlap the
        previous job's; the rest waits for it, so rows are indexed in order, and a failed
        earlier fsync fails this job too: after one, a later fsync that returns does not
        vouch for the bytes before it (fsyncgate)."""
        seg.fsync()
        if prev is not None:
            prev.result()
        seg.drop_synced(upto)
        # The rows of fsynced chunks, unsynced: R3 rebuilds them after a crash.
        self.index.commit(_batch(rows, events), sync=False)
        if rows:
            self._durable_end_ns = rows[-1].end_ns

    def _sync_done(self, fut: Any) -> None:
        self._failed_behind(fut, "fsync behind the writer")
        if fut.exception() is None:
            self._hand_over_deferred()

    def _hand_over_deferred(self) -> None:
        """Group commit's follow-up, on the sync thread whose fsync just returned (or a
        retry timer): the chunks left for the next fsync get it now, not when the camera
        next closes a chunk, so a camera that goes quiet (a dropped source, a pause before
        close()) leaves nothing unsynced and durable_end_ns moves on. Never blocks: a sync
        thread waiting on a writer that waits on sync threads could stall the pool. While
        the writer holds its lock, this tries again shortly."""
        if not self._pending_rows or self._failed is not None or self._closed:
            return
        if not self._lock.acquire(blocking=False):
            if not self._handover_armed:  # one retry at a time per writer
                self._handover_armed = True
                retry = threading.Timer(HANDOVER_RETRY_S, self._retry_handover)
                retry.daemon = True
                try:
                    retry.start()
                except RuntimeError:  # no thread to be had: the next chunk or close() will
                    self._handover_armed = False
            return
        try:
            now = self.store.clock.monotonic_ns()
            if (
                self._seg is None
                or not self._pending_rows
                or self._failed is not None
                or self._closed
                or not self._fsync_due(now)
                # one still running hands over when it returns; a failed one is the
                # writer's to report (W5)
                or any(not f.done() or f.exception() is not None for f in self._syncs)
            ):
                return
            self._syncs.clear()  # all returned, none failed
            self._submit_sync(now)
        except RuntimeError as exc:  # the sync pool refused the job (interpreter exit)
            log.warning(
                "camera %s: chunks left for the next fsync wait for close(): %s",
                self.camera_id,
                exc,
            )
        finally:
            self._lock.release()

    def _retry_handover(self) -> None:
        self._handover_armed = False
        self._hand_over_deferred()

    def _wait_sync(self, keep: int = 0, report: bool = True) -> None:
        """Wait until at most ``keep`` fsyncs run behind us. If one failed, stop (W5): abandon
        the segment (its file keeps the open marker for recovery, R2) and raise, unless
        ``report`` is False (the caller reports the stop itself)."""
        exc = None
        while len(self._syncs) > keep and exc is None:
            exc = self._syncs.popleft().exception()
        if exc is None:
            return
        self._abandon_segment()
        self._stop_after(exc)
        if report:
            raise exc

    def _sync_here(self) -> None:
        """fsync the open segment on this thread and index what it covers in a synced batch
        (W2), for ``flush()``, once no fsync runs behind us. A failure stops the writer
        (W5); a failed fsync also abandons the segment."""
        if self._seg is None:
            if self._pending_events:
                b = Batch()
                self._flush_events(b)
                self.index.commit(b, sync=True)
            return
        now = self.store.clock.monotonic_ns()
        try:
            self._seg.sync()
        except VstoreError as exc:
            self._abandon_segment()
            self._stop_after(exc)
            raise
        self._last_fsync_mono = now
        # W2: index rows only for bytes that are fsynced.
        b = _batch(self._pending_rows, ())
        self._pending_rows.clear()
        self._flush_events(b)
        try:
            self.index.commit(b, sync=True)
        except VstoreError as exc:
            self._stop_after(exc)
            raise
        if self._seg.entries:
            self._durable_end_ns = self._seg.entries[-1].end_ns

    def _abandon_segment(self) -> None:
        """After a failed fsync (W5): what the page cache holds is unknown, so no later fsync
        of this writer may index the chunks written since the last good one as if it covered
        them. The segment is closed unsealed, its open marker left for recovery, which keeps
        what the file verifiably holds (R2) on the next writable open."""
        while self._syncs:  # wait: their fsyncs use the file; a failure changes nothing here
            self._syncs.popleft().exception()
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.abandon()
        self._pending_rows.clear()
        self._table.reset()
        self._payload.clear()

    def _fsync_due(self, now: int) -> bool:
        """Whether a chunk closed at ``now`` is fsynced at once (always, with
        fsync_interval_s = 0)."""
        interval = int(self.settings.fsync_interval_s * NS_PER_S)
        return not interval or now - self._last_fsync_mono >= interval

    def _seal_segment(self, background: bool = False) -> None:
        """Close the open segment: its last chunk here, then W3 (footer, trailer, fsync, the
        sealed row in one synced batch) here or, at a cut while recording (background), on
        the store's sealer threads while this camera goes on into its next segment. At most
        one seal per camera is in flight; its failure stops the writer (W5) like any other.
        The fsync still running behind us for this segment is the seal's to wait for: its
        rows go to the index before the sealed row, and its failure fails the seal."""
        self._wait_seal()
        seg = self._seg
        if seg is None:
            return
        if len(self._table):
            # No fsync of its own: the seal's fsync covers it, and its rows go in its batch.
            self._close_chunk(self._open_chunk_end_ns(), continuation_next=False, sync=False)
        syncing = self._syncs[-1] if self._syncs else None  # the last waits for the others
        self._syncs.clear()
        self._chunk_flags = 0
        self._seg = None
        if not seg.entries:
            # Nothing but a header: no footage to keep (W4 still holds: no rows point here).
            seg.abandon()
            self.store.drop_empty_segment(self._seg_row)
            return
        end_ns = seg.entries[-1].end_ns
        # What belongs to this segment goes with it: its chunk rows and the events so far.
        rows, self._pending_rows = self._pending_rows, []
        events, self._pending_events = self._pending_events, []
        self._last_end_ns = end_ns
        if not background:
            self._finish_seal(seg, self._seg_row, end_ns, rows, events, syncing)
            return
        fut = self.store.sealer().submit(
            self._finish_seal, seg, self._seg_row, end_ns, rows, events, syncing
        )
        fut.add_done_callback(self._seal_done)
        self._sealing = fut

    def _finish_seal(
        self,
        seg: SegmentFile,
        seg_row: SegmentRow,
        end_ns: int,
        rows: list[ChunkRow],
        events: list[Event],
        syncing: Any = None,
    ) -> None:
        try:
            # The fsync behind us overlaps the seal's; its failure fails the seal, and this
            # segment is abandoned.
            size, sha = seg.seal(end_ns, syncing.result if syncing is not None else None)
        except BaseException:
            seg.abandon()  # the open marker stays: recovery seals it (R2)
            raise
        row = seg_row._replace(
            end_ns=end_ns,
            state="sealed",
            size_bytes=size,
            sha256=sha,
            chunk_count=len(seg.entries),
            packet_count=seg.packet_count,
        )
        b = _batch(rows, events)
        b.put(row.key(), row.value())
        b.delete(layout.open_key(row.segment_id))
        self.index.commit(b, sync=True)  # W3: sealed row after the sealed bytes are durable
        self._durable_end_ns = end_ns

    def _seal_done(self, fut: Any) -> None:
        self._failed_behind(fut, "sealing a segment")

    def _failed_behind(self, fut: Any, what: str) -> None:
        """A job behind the writer (a seal, an fsync) is done: if it failed, refuse packets
        from now on (W5), not only when the writer next waits for it."""
        exc = fut.exception()
        if exc is not None and exc is not self._failed:  # a chained fsync re-raises it
            self._failed = exc
            self._fp.enabled = False
            log.error("camera %s: %s failed: %s", self.camera_id, what, exc)

    def _wait_seal(self) -> None:
        fut, self._sealing = self._sealing, None
        if fut is not None:
            fut.result()  # re-raises a failed seal on the writer's own path


def _batch(rows: Sequence[ChunkRow], events: Sequence[Event]) -> Batch:
    """An index batch putting these chunk rows and events."""
    b = Batch()
    for row in rows:
        b.put(row.key(), row.value())
    for ev in events:
        b.put(ev.key(), ev.value())
    return b


def _json(d: dict[str, Any]) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


def open_writer(
    store: WriterHost,
    camera_id: str,
    tracks: Sequence[fmt.TrackInfo] | MappedTracks,
    *,
    start_ns: int | None = None,
) -> CameraWriter:
    """A writer for one camera: the store's one open writer for it until closed.

    ``tracks`` is a sequence of TrackInfo, or the ``SourceTracks`` that
    ``vstore.ingest.tracks.tracks_from_av`` returns (then PyAV packets are mapped from their
    stream to their track, and packets of other streams are ignored). ``start_ns`` fixes
    the wall time of the first keyframe (imports); without it, live wall time comes from
    the packets or the clock.
    """
    if start_ns is not None:
        check_time_ns(start_ns)  # before the camera is registered
    stream_map = getattr(tracks, "stream_to_track", None)
    infos = list(tracks.tracks if isinstance(tracks, MappedTracks) else tracks)
    return store.register_writer(
        camera_id,
        lambda: CameraWriter(store, camera_id, infos, start_ns=start_ns, stream_map=stream_map),
    )
