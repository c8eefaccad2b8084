"""Durability behind a camera writer (lifecycle W2, W3): closed chunks are fsynced and
indexed by pool threads while the writer fills the next GOP (group commit when the disk
falls behind), and segments are sealed behind it; footage counts as durable only once its
fsync returned. A mixin of ``CameraWriter``, sharing its state under its lock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from vstore.base import layout
from vstore.base.errors import VstoreError
from vstore.base.timebase import NS_PER_S
from vstore.index import gop_table
from vstore.index.time_index import Batch, ChunkRow, Event, SegmentRow
from vstore.segment.writer import SegmentFile
from vstore.store import io_stats

log = logging.getLogger(__name__)

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


def _batch(rows: Sequence[ChunkRow], events: Sequence[Event]) -> Batch:
    """An index batch putting these chunk rows and events."""
    b = Batch()
    for row in rows:
        b.put(row.key(), row.value())
    for ev in events:
        b.put(ev.key(), ev.value())
    return b


class BehindWriterSync:
    """The fsync and seal pipeline of a ``CameraWriter`` (its methods, its state)."""

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
        t = time.perf_counter()
        seg.fsync()
        io_stats.FSYNC.observe(time.perf_counter() - t)
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
        t = time.perf_counter()
        try:
            self._seg.sync()
            io_stats.FSYNC.observe(time.perf_counter() - t)
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
            self.abandoned_segments.append(self._seg_row.segment_id)
        self._pending_rows.clear()
        self._table.reset()
        self._payload.clear()

    def _fsync_due(self, now: int) -> bool:
        """Whether a chunk closed at ``now`` is fsynced at once (always, with
        fsync_interval_s = 0). Never in a tracked import: its segment's seal makes it
        durable (F3)."""
        if self._import_start_ns is not None:
            return False
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
            self._note_frames_lost()  # (a GOP whose keyframe after never came)
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
            self.abandoned_segments.append(seg_row.segment_id)
            raise
        row = seg_row._replace(
            end_ns=end_ns,
            state="sealed",
            size_bytes=size,
            sha256=sha,
            chunk_count=len(seg.entries),
            packet_count=seg.packet_count,
            gops=gop_table.encode(seg.entries),
        )
        b = _batch(rows, events)
        b.put_sealed(row)
        b.delete(layout.open_key(row.segment_id))
        try:
            self.index.commit(b, sync=True)  # W3: sealed row after the sealed bytes are durable
        except BaseException:
            self.abandoned_segments.append(row.segment_id)  # (sealed on disk: R2 indexes it)
            raise
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
