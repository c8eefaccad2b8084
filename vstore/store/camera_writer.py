"""The camera writer: turns one camera's packets into GOP chunks inside segment files
(``vstore.segment.writer.SegmentFile``) and indexes them.

``CameraWriter`` takes packets (PyAV or ``vstore.Packet``), normalizes timestamps (33-bit wrap,
jumps, missing values), maps media time to wall time, cuts chunks at keyframes and segments at
keyframes past the target duration, and commits index rows only for bytes already fsynced
(docs/design/lifecycle.md, invariants W1-W5).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, Protocol, Self, runtime_checkable

from vstore import _native
from vstore._native import NAL_KEY, NAL_PPS, NAL_SPS, NAL_VPS
from vstore.base import layout
from vstore.base.clock import Clock
from vstore.base.errors import StorageFull, UsageError, VstoreError
from vstore.base.fsutil import Fs
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    check_time_ns,
    format_detail,
    format_time,
    ticks_to_ns,
)
from vstore.index.time_index import Batch, ChunkRow, Event, SegmentRow, TimeIndex
from vstore.segment import format as fmt
from vstore.segment.packet import Packet
from vstore.segment.writer import SegmentFile
from vstore.store.config import CameraSettings, StoreConfig
from vstore.store.space import SpaceRefused
from vstore.store.timestamps import TrackState, track_state
from vstore.store.wall_placement import WallPlacement
from vstore.store.writer_sync import BehindWriterSync


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

_PARAM_BITS = NAL_SPS | NAL_PPS | NAL_VPS


# Sound packets kept while a run waits for its first keyframe (about 2.5 s of AAC or G.711).
EARLY_SOUND_PACKETS = 128

# How far past the clock an import's footage may run (two machines' clocks differ):
# footage is never stored ahead of the clock.
FUTURE_SLACK_NS = 2_000_000_000


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
    corrupt_packets: int = 0  # stored as the source flagged them: damaged on the way
    ignored_stream_packets: int = 0
    timestamps_synthesized: int = 0
    non_monotonic: int = 0
    discontinuities: int = 0
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("events")
        return d


class CameraWriter(WallPlacement, BehindWriterSync):
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
        origin_media_ns: int | None = None,
        settings: CameraSettings | None = None,
        stream_map: dict[int, int] | None = None,
        tracked_import: bool = False,
    ) -> None:
        layout.validate_camera_id(camera_id)
        # An import whose marker vstore.store.imports keeps (F1-F4): each segment is listed
        # under the marker as it opens, and footage is made durable segment by segment (the
        # import is replayed from its source until it reports done).
        self._import_start_ns = start_ns if tracked_import else None
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
        # An import: the wall time of the file's first frame, and that frame's media time
        # (None: of the first keyframe). The first keyframe is placed by its distance from
        # it, so a file that begins inside a GOP or hides frames (an edit list) keeps its
        # frames' true times.
        self._fixed_start_ns = start_ns
        self._origin_media_ns = origin_media_ns
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
        self._chunk_corrupt = 0  # packets of the open chunk the source flagged damaged
        self._damage_run: Event | None = None  # the source_damage event chunks extend
        self._closed = False
        self._handover_armed = False  # a _hand_over_deferred retry is pending
        self._failed: VstoreError | None = None
        # Segments a failure left open (W5), each with its open marker: the host seals them
        # at their last whole chunk (R2) once this writer is closed (sealed_abandoned).
        self.abandoned_segments: list[int] = []
        self._space_paused_ns: int | None = None  # recording paused for space since (S4)
        self._space_paused_why = ""
        self._ceiling_ns: int | None = None  # a run in a gap must end before this (K2)
        self._floor_ns: int | None = None  # the next anchor is not before this (K2)
        self._last_fsync_mono = store.clock.monotonic_ns()
        prev = self.index.last_segment(self.camera_num)
        self._last_end_ns = prev.end_ns if prev is not None else None
        # An import may fill a gap before, between or after the camera's footage (backfill),
        # never overlap it: it continues after the footage before its start, and stops
        # before the footage after it.
        self._import_ceiling_ns: int | None = None
        self.overlap_error: UsageError | None = None
        self.first_ns: int | None = None  # where its first segment begins
        # An import whose hidden lead-in (an edit list's) lay over earlier footage: its
        # frames up to the next keyframe were left out (wall_placement).
        self.hidden_lead_dropped = False
        if start_ns is not None:
            self._place_import(start_ns)
        self._set_tracks(self._check_tracks(tracks))
        self._new_run_state()

    # --- setup ---------------------------------------------------------------------------------
    def _check_tracks(
        self, tracks: Sequence[fmt.TrackInfo]
    ) -> tuple[tuple[fmt.TrackInfo, ...], list[TrackState]]:
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
        return tracks, [track_state(t, self.settings.max_clock_drift_s) for t in tracks]

    def _set_tracks(self, checked: tuple[tuple[fmt.TrackInfo, ...], list[TrackState]]) -> None:
        """Apply tracks as ``_check_tracks`` returned them."""
        self._tracks_info, self._ts = checked
        tracks = self._tracks_info
        self._video = next(i for i, t in enumerate(tracks) if t.kind == "video")
        # How each track's packets become MP4 samples; None when all go as stored (then
        # chunks need no sample-size column).
        forms = bytes(
            _native.FORM_ANNEXB
            if ts.nal_codec >= 0 and not ts.length_size
            else _native.FORM_ADTS
            if t.codec == "aac" and not t.extradata
            else _native.FORM_STORED
            for t, ts in zip(tracks, self._ts, strict=True)
        )
        self._sample_forms = forms if any(forms) else None
        # Timestamp state lives in the FastPath (compiled: it also appends ordinary packets
        # without Python objects; pure twin: state only). A new run resets it in place, so a
        # caller still holding its bound write_raw (a loop's `wr = w.write_raw`) gets the
        # new state and keeps the fast path.
        spec = [(ts.max_jump_ticks, ts.wrap_bits, ts.nal_codec, ts.length_size, *ts.info.time_base)
                for ts in self._ts]  # fmt: skip
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
        self._early: deque[tuple[int, int, int, int, bytes, bool]] = deque()
        self._anchor_wall_ns = 0
        self._anchor_media_ns = 0
        self._anchor_offset_ns = 0  # anchor wall minus receive wall (non-zero after a clamp)
        self._pending_offset_ns = 0
        self._reanchor = True
        # The longest time between frames seen at this run's keyframes (0: none yet): what
        # a hole in the source's times is told from (wall_placement, T5).
        self._run_frame_ns = 0
        self._chunk_receive_ns: int | None = None  # when the open chunk's keyframe came (live)
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
                # As the error it was (a full disk is StorageFull: the node waits it out,
                # wherever it struck, behind the writer too).
                kind = type(self._failed) if isinstance(self._failed, VstoreError) else VstoreError
                raise kind(
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
        data: bytes,  # owned: write_raw copied a view or bytearray
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
        # Timestamps: fill, unwrap, rebase, keep dts increasing (docs/design/time.md).
        normalised = self._fp.normalise(track, pts, dts)
        if normalised is None:
            self.stats.dropped_no_timestamp += 1
            return
        ndts, npts, notes, jump_ticks = normalised
        if notes:
            flags |= self._timestamp_notes(track, ts, notes, jump_ticks, npts)

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
                starting = not self._fp.started
                if not self._on_keyframe(npts, params, wall_ns):
                    return
            elif not self._fp.started:
                self._count_unstarted_drop()
                return
            # The chunk ends one frame after its latest-shown frame (with B-frames, not the
            # last in decode order); a keyframe starts a new chunk.
            if key or npts > self._fp.chunk_last_vpts:
                self._fp.chunk_last_vpts = npts
            fp = self._fp
            fp.chunk_vdelta = delta = fp.state(track)[4]
            if key:
                fp.chunk_gap = fp.chunk_gap_end = fp.chunk_sound_gap = 0
            elif delta > fp.chunk_gap:
                fp.chunk_gap, fp.chunk_gap_end = delta, ndts
        elif not self._fp.started:
            self._hold_early(track, ndts, npts, flags, data, corrupt)
            return
        elif (delta := self._fp.state(track)[4]) > self._fp.chunk_sound_gap:
            self._fp.chunk_sound_gap, self._fp.chunk_sound_track = delta, track

        self._append(track, ndts, npts, flags, data, corrupt)
        if track == self._video and key and starting and self._early:
            self._replay_early()

    def _append(
        self, track: int, ndts: int, npts: int, flags: int, data: bytes, corrupt: bool
    ) -> None:
        self._table.append(ndts, npts, len(data), flags, track)
        self._payload.append(data)
        self.stats.packets += 1
        self.stats.bytes += len(data)
        if corrupt:  # kept as received, flagged, and on the timeline at its chunk's close
            self.stats.corrupt_packets += 1
            self._chunk_corrupt += 1

    def _hold_early(
        self, track: int, ndts: int, npts: int, flags: int, data: bytes, corrupt: bool
    ) -> None:
        """Sound that arrives before a run's first keyframe waits for it: sources send sound
        ahead of its pictures, so the first moments of the first GOP's sound come before its
        keyframe (dropped, the run's footage began silent)."""
        if self._space_paused_ns is not None:
            self.stats.dropped_disk_full += 1
            return
        self._early.append((track, ndts, npts, flags, data, corrupt))
        if len(self._early) > EARLY_SOUND_PACKETS:
            self._early.popleft()
            self.stats.dropped_before_keyframe += 1

    def _replay_early(self) -> None:
        """The run began: the sound that waited for its keyframe goes into the first chunk
        from the keyframe's time on; what came before it is dropped (counted)."""
        for track, ndts, npts, flags, data, corrupt in self._early:
            if self._wall_of(track, npts) < self._chunk_start_ns:
                self.stats.dropped_before_keyframe += 1
                continue
            self._append(track, ndts, npts, flags, data, corrupt)
        self._early.clear()
        if self._table.payload_bytes >= self._max_chunk_bytes:
            self._chunk_full()

    def _timestamp_notes(
        self, track: int, ts: TrackState, notes: int, jump_ticks: int, pts: int
    ) -> int:
        """Count and report what normalising a packet's timestamps did (at the packet's own
        wall time, once the run is anchored); its packet flags."""
        pt = _native.ptable
        at_ns = self._wall_of(track, pts) if self._fp.started else None
        if notes & pt.TS_FILLED_DTS:
            self.stats.timestamps_synthesized += 1
        if notes & pt.TS_WRAPPED:
            self._event(
                "pts_wrap", {"track": track, "offset_ticks": self._fp.state(track)[2]}, at_ns
            )
        if notes & pt.TS_REORDERED:
            self.stats.non_monotonic += 1
        if notes & pt.TS_JUMPED:
            # The raw jump is kept as a discontinuity while media time continues (T2); a live
            # source's next keyframe is placed by when it came (a camera that restarted after
            # a pause: the pause is a gap, not spliced shut).
            if self._fixed_start_ns is None and not self._reanchor:
                self._reanchor = True
                self._run_reason = "timestamp_jump"
            self._event(
                "timestamp_jump",
                {"track": track, "jump_ns": ticks_to_ns(jump_ticks, *ts.info.time_base)},
                at_ns,
            )
            self.stats.discontinuities += 1
        if notes & pt.TS_PTS_CLAMPED:
            self.stats.non_monotonic += 1
        return fmt.PKT_TS_SYNTH if notes & (pt.TS_FILLED_DTS | pt.TS_FILLED_PTS) else 0

    @property
    def paused_for_space(self) -> str | None:
        """Why recording is paused for space now (S4), or None when it is not."""
        return self._space_paused_why if self._space_paused_ns is not None else None

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

    def name_run(self, reason: str) -> None:
        """Why the run this writer records next begins (the reason its gap on the timeline
        gives): "restart" unless told, as for a recorder started again after the disk
        filled ("disk_full")."""
        with self._lock:
            self._run_reason = reason

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.stats.dropped_before_keyframe += len(self._early)  # (no keyframe came)
            self._early.clear()
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
    def _note_source_damage(self, start_ns: int, end_ns: int) -> None:
        """One ``source_damage`` event for a run of chunks with packets the source flagged
        damaged (a lossy camera loses some every GOP), within a segment (a clip finds the
        run's event from its first segment's start): the run's event is written again,
        under its own key, as each chunk extends it."""
        run = self._damage_run
        n = self._chunk_corrupt
        self._chunk_corrupt = 0
        if run is None or run.detail["to_ns"] != start_ns or run.at_ns < self._seg_start_ns:
            self._event("source_damage", {"packets": n, "to_ns": end_ns}, at_ns=start_ns)
            self._damage_run = self._pending_events[-1]
            return
        detail = {"packets": run.detail["packets"] + n, "to_ns": end_ns}
        self._damage_run = run._replace(detail=detail)
        self._pending_events.append(self._damage_run)

    def _event(self, kind: str, detail: dict[str, Any], at_ns: int | None = None) -> None:
        if at_ns is None:
            at_ns = self._last_end_ns if self._last_end_ns is not None else self._chunk_start_ns
        self._event_seq = (self._event_seq + 1) & 0xFFFFFFFF
        self._pending_events.append(Event(self.camera_num, at_ns, self._event_seq, kind, detail))
        self.stats.events.append(kind)
        if len(self.stats.events) > 100:
            del self.stats.events[:50]
        log.info("camera %s: %s %s", self.camera_id, kind, format_detail(detail))

    def _stop_import(self, why: str) -> None:
        """Drop the open chunk and stop the import at its next packet (``overlap_error``);
        what came before stays."""
        kept = (
            f"its footage up to {format_time(self._last_end_ns)} is stored"
            if self.stats.chunks and self._last_end_ns is not None
            else "nothing of it was stored"
        )
        self._table.reset()
        self._payload.clear()
        self._chunk_corrupt = 0
        self.overlap_error = UsageError(f"{why}; {kept}")
        self._fp.enabled = False

    def _open_chunk_end_ns(self) -> int:
        """Wall end of the open chunk: its last video frame plus one frame duration (the
        run's, when the last frame came after a hole)."""
        last_ns = self._wall_of(self._video, self._fp.chunk_last_vpts)
        return last_ns + self._frame_ns()

    def _pause_for_space(self, at_ns: int, exc: SpaceRefused) -> None:
        """S4: a live camera refused a segment for space drops packets (counted) and asks
        again at every keyframe; the first that gets one resumes recording. Nothing stops."""
        self._fp.started = False
        self._reanchor = True  # the footage after the pause anchors anew (a gap, T5)
        self._space_paused_why = str(exc)
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
        row = SegmentRow.opened(
            self.camera_num, seg_id, start_ns, relpath, tuple(t.codec for t in tracks)
        )
        # W0: the open marker is durable before the file exists, so recovery finds the file.
        b = Batch()
        b.put_open_marker(seg_id, self.camera_id, self.camera_num, relpath, start_ns)
        b.put(row.key(), row.value())
        if self._import_start_ns is not None:  # F2: listed in the batch that opens it
            b.put(layout.import_segment_key(self.camera_num, self._import_start_ns, seg_id), b"")
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
        if self.first_ns is None:
            self.first_ns = start_ns
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
            self._stop_import(
                f"the import reaches footage camera {self.camera_id!r} already has from "
                f"{format_time(self._import_ceiling_ns)}"
            )
            return
        if self._import_start_ns is not None:  # (an import's; a live source's time is its own)
            now_ns = time.time_ns()  # (the host's own: no recording can lie past it)
            if end_ns > now_ns + FUTURE_SLACK_NS:
                self._stop_import(f"the import runs on past now ({format_time(now_ns)})")
                return
        n = len(self._table)
        now = self.store.clock.monotonic_ns()
        due = self._fsync_due(now)  # one decision: the early writeback and the fsync agree
        table = self._table.pack()
        sizes = None
        if self._sample_forms is not None:
            # One scan of the GOP's rewritten packets lets a clip build its MP4 index from the
            # tables alone (the last column of the packed table is the track's).
            sizes = self._nal.sample_sizes(self._payload, table[-n:], self._sample_forms)
        try:
            entry = self._seg.append_chunk(
                self._chunk_flags,
                start,
                end_ns,
                table,
                n,
                self._payload,
                syncing=due,
                sample_sizes=sizes,
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
                entry.flags,
            )
        )
        self.stats.chunks += 1
        if self._chunk_corrupt:
            self._note_source_damage(start, end_ns)
        else:
            self._damage_run = None
        self._last_end_ns = end_ns
        self._table.reset()
        self._payload.clear()  # the same list stays bound to the fast path
        self._chunk_start_ns = end_ns
        self._chunk_flags = fmt.CHUNK_CONTINUATION if continuation_next else 0
        if due and sync:
            self._sync_behind(now)


def open_writer(
    store: WriterHost,
    camera_id: str,
    tracks: Sequence[fmt.TrackInfo] | MappedTracks,
    *,
    start_ns: int | None = None,
    origin_media_ns: int | None = None,
    tracked_import: bool = False,
) -> CameraWriter:
    """A writer for one camera: the store's one open writer for it until closed.

    ``tracks`` is a sequence of TrackInfo, or the ``SourceTracks`` that
    ``vstore.ingest.tracks.tracks_from_av`` returns (then PyAV packets are mapped from their
    stream to their track, and packets of other streams are ignored). ``start_ns`` fixes
    the wall time of media time ``origin_media_ns`` (imports: the file's first frame; None:
    the first keyframe); without it, live wall time comes from the packets or the clock. ``tracked_import``: an import that began a marker
    (``vstore.store.imports.begin``) at ``start_ns``.
    """
    if start_ns is not None:
        check_time_ns(start_ns)  # before the camera is registered
    stream_map = getattr(tracks, "stream_to_track", None)
    infos = list(tracks.tracks if isinstance(tracks, MappedTracks) else tracks)
    return store.register_writer(
        camera_id,
        lambda: CameraWriter(
            store,
            camera_id,
            infos,
            start_ns=start_ns,
            origin_media_ns=origin_media_ns,
            stream_map=stream_map,
            tracked_import=tracked_import,
        ),
    )
