"""Wall time for a camera's media time (time.md T1-T5, lifecycle.md K2): anchoring a run at a keyframe,
measuring drift against the host clock, placing imports in gaps (backfill, never overlapping
footage), and live runs in a gap after the host clock stepped back. A mixin of
``CameraWriter``, sharing its state under its lock."""

from __future__ import annotations

import itertools
import logging

from vstore.base.errors import UsageError
from vstore.base.timebase import GAP_TOLERANCE_NS, NS_PER_S, format_time, ticks_to_ns
from vstore.segment import format as fmt
from vstore.store.space import SpaceRefused
from vstore.store.timestamps import NAL_CODECS

log = logging.getLogger(__name__)

# A live run goes into a gap before later footage (the host clock stepped back, K2) only
# when the gap leaves it at least this long; a shorter one is clamped past (T3).
GAP_RUN_MIN_NS = 60 * NS_PER_S

# A keyframe further after the frame before it than HOLE_MIN_NS, and than HOLE_FRAMES of the
# longest frame time seen at the run's keyframes, follows a hole in the source's times.
# (Cameras that lower their frame rate in a still scene send a frame a second or more often;
# the run's longest frame time grows with a slower one.)
HOLE_MIN_NS = 2 * NS_PER_S
HOLE_FRAMES = 4
RUN_FRAME_MAX_NS = NS_PER_S  # (so the longest hole a frame time can excuse is 4 s)

# An import's first keyframe this far from its file's first frame is not believed (a broken
# start time): it is placed at the start itself.
ORIGIN_MAX_NS = 300 * NS_PER_S


class WallPlacement:
    """How a ``CameraWriter`` maps media time to wall time (its methods, its state)."""

    def _wall_of(self, track: int, ticks: int) -> int:
        tb = self._ts[track].info.time_base
        return self._anchor_wall_ns + ticks_to_ns(ticks, *tb) - self._anchor_media_ns

    def _on_keyframe(self, key_pts: int, params: bytes, wall_ns: int | None) -> bool:
        """Handle a video keyframe; False when the packet must be dropped."""
        vinfo = self._tracks_info[self._video]
        if not self._fp.started and not (params or vinfo.extradata) and vinfo.codec in NAL_CODECS:
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
                    # K2: the gap this run fills ends soon; continue after the footage there.
                    self._floor_ns = self._stored_end_ns()
                    self._reanchor = True
        # Close the open chunk where the old mapping puts this keyframe, before re-anchoring.
        hole = False
        if self._seg is not None and len(self._table):
            assert predicted is not None
            hole = self._close_before_keyframe(predicted, vinfo.time_base, receive_ns)
        if self._reanchor:
            if self._fixed_start_ns is not None and not self._fp.started:
                anchor = self._fixed_start_ns
                origin = self._origin_media_ns
                if origin is not None and abs(key_media_ns - origin) <= ORIGIN_MAX_NS:
                    anchor += key_media_ns - origin
                before = self._last_end_ns
                if anchor < self._fixed_start_ns and before is not None and anchor < before:
                    # Frames an edit list hides ahead of the first shown one would lie over
                    # the camera's earlier footage (a file cut from the recording before
                    # it): the index order forbids it, and shifting the file would put every
                    # frame late. Its frames up to its next keyframe are left out instead.
                    self.hidden_lead_dropped = True
                    self.stats.dropped_before_keyframe += 1
                    return False
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
                # K2: the host clock stepped back (a correction after a step forward): the
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
            or hole
            or self._reanchor
            or params_changed
            or key_wall - self._seg_start_ns >= int(self.settings.segment_duration_s * NS_PER_S)
        )
        if need_new:
            if params_changed:
                self._event("codec_parameters_changed", {}, at_ns=key_wall)
            self._seal_segment(background=True)
            if self._reanchor:
                self._run_frame_ns = 0  # (a new run: its frame times are its own)
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
        self._chunk_receive_ns = receive_ns
        self._chunk_flags = fmt.CHUNK_KEY_START
        return True

    def _close_before_keyframe(
        self, predicted: int, time_base: tuple[int, int], receive_ns: int | None
    ) -> bool:
        """Close the open chunk before the keyframe the old mapping puts at ``predicted``:
        there, or, after a hole in the source's own times (T5: frames lost on the way, files
        of a recorder that stopped, joined), one frame after its last frame, so the hole is
        a gap and never the last picture stretched over it. True after such a hole. A hole
        inside the GOP is recorded too (``_note_frames_lost``).

        A live source whose frames kept coming meanwhile stepped its clock: the keyframe is
        placed by when it came (a new run, no gap)."""
        frames_end = self._open_chunk_end_ns()
        interval_ns = predicted - (frames_end - self._frame_ns())
        received_ns = (
            receive_ns - self._chunk_receive_ns
            if receive_ns is not None and self._chunk_receive_ns is not None
            else None
        )
        stepped = received_ns is not None and 2 * received_ns < predicted - self._chunk_start_ns
        if not stepped:
            self._note_frames_lost()
        limit = self._hole_limit_ns()
        if limit and interval_ns > limit and not self._sound_went_on(frames_end):
            self._close_chunk(frames_end, continuation_next=False)
            if stepped:
                assert received_ns is not None
                # (T4 within max_clock_drift_s would keep the camera's time)
                self._event("clock_step", {"step_ns": predicted - self._chunk_start_ns
                                           - received_ns}, at_ns=frames_end)  # fmt: skip
                self._reanchor = True
                self._run_reason = "clock_step"
                return False
            self._run_reason = "source_gap"
            return True
        self._close_chunk(predicted, continuation_next=False)
        if not limit or interval_ns <= limit:
            # (a slower camera's frame time; never past RUN_FRAME_MAX_NS, so one slow
            # interval does not hide the holes after it)
            longest = max(self._run_frame_ns, self._frame_ns(), interval_ns)
            self._run_frame_ns = min(longest, RUN_FRAME_MAX_NS)
        return False

    def _frame_ns(self) -> int:
        """The open chunk's frame time: its last one, or the run's longest when that last
        one is longer (it came after a hole)."""
        last_ns = ticks_to_ns(self._fp.chunk_vdelta, *self._tracks_info[self._video].time_base)
        return min(last_ns, self._run_frame_ns) if self._run_frame_ns else last_ns

    def _hole_limit_ns(self) -> int:
        """How long a time between two frames is a hole in this run: by the run's longest
        frame time, or in its first GOP by the GOP's last one (0: not judged, a keyframe
        alone: nothing to judge it by)."""
        base_ns = self._run_frame_ns
        if not base_ns and self._fp.chunk_vdelta > 1:
            base_ns = ticks_to_ns(self._fp.chunk_vdelta, *self._tracks_info[self._video].time_base)
        return max(HOLE_MIN_NS, HOLE_FRAMES * base_ns) if base_ns else 0

    def _sound_went_on(self, until_ns: int) -> bool:
        """Whether sound was recorded through the open chunk up to ``until_ns``, without a
        hole of its own: the pictures stalled, the recording did not."""
        if self._sound_end_ns() <= until_ns + GAP_TOLERANCE_NS:
            return False
        track = self._fp.chunk_sound_track
        gap = self._fp.chunk_sound_gap
        gap_ns = ticks_to_ns(gap, *self._tracks_info[track].time_base) if gap > 0 else 0
        return gap_ns <= max(GAP_TOLERANCE_NS, self._hole_limit_ns() // HOLE_FRAMES)

    def _note_frames_lost(self) -> None:
        """A hole between two frames inside the open chunk's GOP: recorded as
        ``frames_lost`` (a gap on the timeline and in clips; the frames after it stay, as
        received), unless sound was recorded through it."""
        limit = self._hole_limit_ns()
        vinfo = self._tracks_info[self._video]
        inner_ns = ticks_to_ns(self._fp.chunk_gap, *vinfo.time_base)
        if not limit or inner_ns <= limit:
            return
        to_ns = self._wall_of(self._video, self._fp.chunk_gap_end)
        if self._sound_went_on(to_ns):
            return
        from_ns = to_ns - inner_ns + self._frame_ns()  # (one frame after the frame before)
        self._event("frames_lost", {"from_ns": from_ns, "to_ns": to_ns}, at_ns=from_ns)
        self._fp.chunk_gap = 0  # (said once)

    def _sound_end_ns(self) -> int:
        """Wall time of the latest sound written (0: none)."""
        ends = [
            self._wall_of(t, last)
            for t, info in enumerate(self._tracks_info)
            if info.kind == "audio" and (last := self._fp.state(t)[0]) is not None
        ]
        return max(ends, default=0)

    def _place_import(self, start_ns: int) -> None:
        covering = self.index.chunk_at(self.camera_num, start_ns)
        if covering is not None:
            seg = self.index.segment_of(covering)
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
