"""The Store: one directory holding segment files, the RocksDB index and the configuration;
it hands out one CameraWriter per camera, leases, tiers and timelines.

``vstore.store.opening.open_store`` opens one and runs crash recovery; ``vstore.open_store``
also wires the lifecycle's deletion for room. Read-only opens work while another process
records.

Thread safety: a Store may be shared by threads. Writers, leases, tiers and the thread pools
are handed out under one lock; the index (RocksDB) is thread-safe; each CameraWriter is
thread-safe on its own. ``retention_lock`` serializes retention runs, hold changes and the
space keeper's passes. ``close`` must not race other calls.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, TypeVar

from vstore.base import actor, layout
from vstore.base.clock import Clock, ClockMark, ClockVerdict, SystemClock, judge_wall_clock
from vstore.base.errors import (
    CorruptSegment,
    CorruptStore,
    NotFound,
    SegmentMissing,
    StoreReadOnly,
    UsageError,
    VstoreError,
)
from vstore.base.fsutil import Fs, translate_oserror, write_durably
from vstore.base.logger import get_logger
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    NS_PER_S,
    TimeRange,
    WallNs,
    format_time,
    merge_ranges,
    subtract_ranges,
    to_ns,
)
from vstore.index.time_index import Batch, SegmentRow, TimeIndex
from vstore.segment import format as fmt
from vstore.segment.packet import Packet
from vstore.segment.reader import SegmentReader, chunk_packets
from vstore.store.config import StoreConfig, load_config
from vstore.store.disk import DiskUsage, disk_usage
from vstore.store.lease import LeaseSet, hold_lease, live_leases
from vstore.store.space import MakeRoom, SpaceKeeper

if TYPE_CHECKING:  # the pools start with the first writer: reads never load them
    from concurrent.futures import Executor

    from vstore.store.keys import KeyRing, Signer

DEFAULT_STORE = "./vstore-data"
# Threads that fsync chunks behind the writers: an fsync mostly waits on the disk, and more
# cameras fsyncing at once share the file system's journal commits.
SYNC_THREADS = 32
# How long after a recording key could not be read it is asked for again.
SIGNER_RETRY_S = 60.0

log = get_logger(__name__)


def resolve_store_path(arg: str | None) -> Path:
    """--store, else $VSTORE_STORE, else ./vstore-data."""
    if arg is not None and not arg.strip():
        raise UsageError("the store path is empty")
    given = arg or os.environ.get("VSTORE_STORE") or DEFAULT_STORE
    if given.startswith("s3://"):
        # (the read commands open a bucket before they come here: this one needs a store)
        raise UsageError(
            f"{given} is a bucket: ls, timeline, clip, snapshot and verify read from one; "
            "this command works on a store directory"
        )
    if given.lower().startswith("s3:"):
        raise UsageError(f"{given}: a bucket is written s3://BUCKET/PREFIX")
    if given.startswith("file://"):  # (a local path written as a URL)
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(given).path))
    return Path(given)


class CameraSummary(NamedTuple):
    """One camera's line in `vstore ls`."""

    camera: str
    first_ns: WallNs | None
    last_ns: WallNs | None
    size_bytes: int
    segments: int
    open_segments: int
    gaps: int
    recorded_ns: int
    tiered_bytes: int = 0  # of size_bytes, what lies in object storage
    damaged_ranges: int = 0  # ranges recorded but found damaged (R5, R6): gaps in clips

    JSON_EXTRA = ("recorded_s", "local_bytes")

    @property
    def recorded_s(self) -> float:
        return self.recorded_ns / NS_PER_S

    @property
    def local_bytes(self) -> int:
        """Of size_bytes, what lies on this node's disks."""
        return self.size_bytes - self.tiered_bytes


class Timeline(NamedTuple):
    camera: str
    range: TimeRange
    covered: list[tuple[int, int]]
    gaps: list[tuple[int, int]]
    events: list[dict[str, Any]]
    # Durable footage of segments still open (being written, or left by a crash until the
    # next writable open seals them): shown as covered, and said so.
    open: list[tuple[int, int]] = []  # noqa: RUF012 - shared default, never mutated


class OpenWriter(Protocol):
    """A camera's open writer, as the store keeps it (to close it with the store)."""

    camera_id: str

    def close(self) -> None: ...


W = TypeVar("W", bound=OpenWriter)


class Store:
    """A vstore store directory. Use ``open_store``; close it (or use ``with``) when done.

    Thread safety: one Store serves every thread of a process, and its methods may be called
    from any of them. The index is RocksDB's (safe for concurrent use); the table of open
    writers and the lease serials are guarded by an internal lock; retention runs and hold
    changes serialise on ``retention_lock``; each camera writer has its own lock, so writers
    of different cameras never wait on each other. ``close`` is called once, after every
    other thread is done with the store. Across processes: one opens a store for writing
    (the index's lock file), any number open it read-only.
    """

    def __init__(
        self,
        root: Path,
        *,
        read_only: bool = False,
        clock: Clock | None = None,
        fs: Fs | None = None,
        create: bool = True,
        disk_usage: Callable[[], DiskUsage] | None = None,
        make_room: MakeRoom | None = None,
    ) -> None:
        self.layout = layout.StoreLayout(Path(root))
        # () -> DiskUsage; injected by tests to simulate a filling disk.
        self._disk_usage = disk_usage
        self.root = self.layout.root
        # In a cluster, (fencing epoch, owned since) a camera's shared catalog hours are
        # written with (set by the node's member; lifecycle/shared_catalog.py). None: alone.
        self.catalog_epoch: Callable[[str], tuple[int, int]] | None = None
        # In a cluster, the member's identity as the elected deleter of tiered footage when it
        # is the one (lifecycle/bucket_retention.Deleter), else None. None: not in a node.
        self.tiered_deleter: Callable[[], Any] | None = None
        self.read_only = read_only
        self.clock = clock or SystemClock()
        self.fs = fs or Fs()
        if not self.root.exists():
            if read_only or not create:
                raise NotFound(f"no store at {self.root}")
            self.root.mkdir(parents=True)
        elif not self.root.is_dir():
            raise NotFound(f"{self.root} is not a vstore store (it is not a directory)")
        if not read_only:
            self._require_writable()
        self.config: StoreConfig = load_config(self.layout.config_path)
        existing_only = read_only or not create
        meta_uuid = self._read_meta()
        if meta_uuid is None and existing_only and not self.layout.index_dir.exists():
            raise NotFound(f"{self.root} is not a vstore store (no meta.json, no index)")
        self.index = self._open_index(read_only)
        try:
            self.uuid = self._resolve_uuid(meta_uuid)
        except BaseException:
            self.index.close()
            raise
        self._writers: dict[str, OpenWriter] = {}
        # Cameras a recorder process writes through this store (store_link.py): their
        # segments are open as a writer's are, and no writer may start for them here.
        self._lent: set[str] = set()
        self._lock = threading.Lock()
        # Held while a repair seals open segments: no camera writer may start meanwhile.
        self._writer_gate = threading.Lock()
        self._lease_serial = 0
        self._tiers: dict[str, Any] = {}
        self._sealer: Any = None
        self._syncer: Any = None
        # Held while retention runs or a hold changes: a hold committed between a run's plan
        # and its deletions would not protect its footage (lifecycle H1). Re-entrant: a run
        # holds it while it brings in the bucket's holds, and bringing one in takes it too.
        self.retention_lock = threading.RLock()
        self.last_recovery: Any = None  # a RecoveryReport, set by open_store when it recovers
        self.space = SpaceKeeper(
            lambda: self.config.retention,
            self.disk_usage,
            self.layout.cache_dir,
            None if make_room is None else (lambda: make_room(self)),
        )
        self._keys: Any = None  # a KeyRing, made when first needed (see keys)
        self._link_signer_retry_s = 0.0  # (monotonic) when an unreadable key is asked again
        if not read_only and not self.LINKED:
            self.index.link_signer = self.recording_signer
            if self.clock_verdict().trusted:
                self.mark_clock()

    # A store whose index another process owns (store_link.LinkedStore): that process signs
    # the chains and keeps the clock marks.
    LINKED = False

    def _open_index(self, read_only: bool) -> TimeIndex:
        return TimeIndex(self.layout.index_dir, read_only=read_only)

    @property
    def keys(self) -> "KeyRing":
        """The store's signing keys (``[keys] dir``, or its own ``keys/``): one ring per open
        store, so a key rotated through it is the one every later signature uses."""
        # (imported here: the keys need `cryptography`, which reads, clips and listings
        # never do, and whose import would weigh on every command's start-up)
        from vstore.store.keys import KeyRing

        with self._lock:
            if self._keys is None:
                self._keys = KeyRing.of_store(self)
            return self._keys

    def record_config(self, by: str, action: str, detail: dict[str, Any]) -> bool:
        """Audit ``action`` (a reload, or a node's start) with ``detail`` and the SHA-256 of
        vstore.toml as read now, beside the one last recorded, in one write; at a start,
        only when the file changed since (an edit made while no node ran). Returns whether
        a record was written."""
        try:
            raw = self.layout.config_path.read_bytes()
        except FileNotFoundError:
            raw = b""
        import hashlib  # (loaded on use: OpenSSL costs a read-only command's start-up)

        now = hashlib.sha256(raw).hexdigest()
        before_raw = self.index.get(layout.CONFIG_SHA256_KEY)
        before = bytes(before_raw).decode() if before_raw is not None else ""
        if action == "config_change" and now == before:
            return False
        b = Batch()
        b.put(layout.CONFIG_SHA256_KEY, now.encode())
        rec = {**detail, "file": str(self.layout.config_path), "sha256": now}
        rec["previous_sha256"] = before or None
        self.index.audit(action, by, rec, self.clock.wall_ns(), batch=b)
        self.index.commit(b, sync=True)
        return True

    def recording_signer(self) -> "Signer | None":
        """The recording key that signs the links of the cameras' chains as segments seal,
        or None when it cannot be read: links are then made unsigned, and the next signed
        head vouches for them (a node refuses to start without the key). A key that could
        not be read is asked for again a minute later (a restored key directory is used)."""
        now_s = time.monotonic()
        if now_s < self._link_signer_retry_s:
            return None
        try:
            return self.keys.signer("recording")
        except VstoreError as exc:
            self._link_signer_retry_s = now_s + SIGNER_RETRY_S
            log.warning("segments are sealed with unsigned chain links: %s", exc)
            return None

    def writing_here(self) -> bool:
        """Whether this process, or a recorder process it lent cameras to, has a camera
        writer open on the store."""
        return bool(self._writers or self._lent)

    def writing_cameras(self) -> set[str]:
        """The cameras this process has a writer open for (recording, or importing), and
        those it lent to recorder processes."""
        with self._lock:
            return set(self._writers) | self._lent

    def lend_camera(self, camera_id: str) -> None:
        """Mark ``camera_id`` as written by a recorder process through this store: its open
        segments are a live writer's (no repair seals them) and no writer opens for it here
        until ``return_camera``."""
        with self._writer_gate, self._lock:
            if camera_id in self._writers:
                raise UsageError(f"camera {camera_id!r} already has an open writer")
            self._lent.add(camera_id)

    def return_camera(self, camera_id: str) -> None:
        """The recorder process no longer writes ``camera_id`` (its segments are sealed, or
        recovered after it died)."""
        with self._lock:
            self._lent.discard(camera_id)

    @contextmanager
    def writers_held_off(self) -> Iterator[bool]:
        """No new camera writer starts inside this block; yields whether one is open. A
        repair seals open segments only when none is: in a process that records (a node),
        every open segment is a live writer's, and sealing it would cut its footage off."""
        with self._writer_gate:
            with self._lock:
                busy = bool(self._writers or self._lent)
            yield busy

    def disk_usage(self) -> DiskUsage:
        """Total and free bytes of the store's file system (tests inject a filling disk)."""
        return self._disk_usage() if self._disk_usage is not None else disk_usage(self.root)

    def _require_writable(self) -> None:
        """A command that must write says so plainly on a store it may not write."""
        for d in (self.root, self.layout.index_dir):
            if d.exists() and not os.access(d, os.W_OK):
                why = (
                    "is on read-only media"
                    if os.statvfs(d).f_flag & os.ST_RDONLY
                    else f"is not writable by this user (uid {os.getuid()})"
                )
                raise StoreReadOnly(
                    f"the store at {self.root} {why}: read commands (ls, timeline, clip, "
                    "snapshot, audit, check, retention run --dry-run) work on it; this one "
                    "must write"
                )

    def _read_meta(self) -> str | None:
        """The uuid meta.json names, or None when there is no meta.json."""
        p = self.layout.meta_path
        try:
            raw = p.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptStore(f"{p} is unreadable: {exc.strerror or exc}") from exc
        try:
            return str(json.loads(raw)["uuid"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CorruptStore(f"{p} is unreadable: {exc!r}") from exc

    def _resolve_uuid(self, meta_uuid: str | None) -> str:
        """The store's uuid: meta.json and the index's copy must agree.

        Every segment records the uuid of the store that wrote it, and tiering decides by it
        whose objects a store may delete (lifecycle L9), so a uuid is never re-invented for a
        store that has an index: a lost meta.json is rewritten from the index's copy and the
        restore is audited; a store that has neither is refused with a clear error.
        """
        indexed = self.index.get(layout.STORE_UUID_KEY)
        index_uuid = indexed.decode() if indexed is not None else None
        if meta_uuid is not None and index_uuid is not None and meta_uuid != index_uuid:
            raise CorruptStore(
                f"{self.layout.meta_path} names store {meta_uuid} but its index belongs to "
                f"store {index_uuid}: meta.json or the index was copied from another store"
            )
        if self.read_only:
            return meta_uuid or index_uuid or ""
        if meta_uuid is None and index_uuid is None and self.index.has_segments():
            raise CorruptStore(
                f"{self.layout.meta_path} is missing and the index does not record the store's "
                "uuid (it was last written by an older vstore): restore meta.json from a backup"
            )
        if meta_uuid or index_uuid:
            uuid_ = meta_uuid or index_uuid or ""
        else:
            import uuid  # (a new store only)

            uuid_ = str(uuid.uuid4())
        if index_uuid is None:
            self.index.put_sync(layout.STORE_UUID_KEY, uuid_.encode())
        if self.index.audit_counters()[0] is None:
            # The audit log's first record: from here on an empty log can only be a wiped one.
            self.index.audit(
                "audit_start",
                "vstore",
                {"uuid": uuid_, "store": "created" if index_uuid is None else "existing"},
                self.clock.wall_ns(),
            )
        if meta_uuid is None:
            self._write_meta(uuid_)
            if index_uuid is not None:
                log.warning("%s was missing: restored from the index", self.layout.meta_path)
                self.index.audit(
                    "store.meta_restored",
                    "vstore",
                    {"uuid": uuid_, "reason": "meta.json missing"},
                    self.clock.wall_ns(),
                )
        return uuid_

    def _write_meta(self, uuid_: str) -> None:
        p = self.layout.meta_path
        body = json.dumps({"uuid": uuid_, "segment_format": fmt.FORMAT_VERSION}) + "\n"
        try:
            write_durably(self.fs, p, layout.staging_path(p), body.encode())
        except OSError as exc:
            raise translate_oserror(exc, f"writing {p}") from exc

    # --- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        for w in list(self._writers.values()):
            try:
                w.close()
            except VstoreError as exc:
                log.error("closing writer %s: %s", w.camera_id, exc)
        for pool in (self._sealer, self._syncer):
            if pool is not None:
                pool.shutdown(wait=True)  # writers waited for theirs; nothing is left
        self._sealer = self._syncer = None
        self.space.close()
        self.index.close()

    def sealer(self) -> "Executor":
        """The threads that seal segments behind the writers (footer, fsync, index: W3), so
        a camera's packets never wait on a segment cut's fsync."""
        with self._lock:
            if self._sealer is None:
                from concurrent.futures import ThreadPoolExecutor  # writers only

                self._sealer = ThreadPoolExecutor(2, thread_name_prefix="vstore-seal")
            return self._sealer

    def syncer(self) -> "Executor":
        """The threads that fsync closed chunks behind the writers and index them (W2), so
        a camera writes its next GOP while the disk makes the last one durable. Each writer
        has at most SYNC_DEPTH fsyncs here at a time; fsyncs of different cameras run side
        by side, which the file system commits together."""
        with self._lock:
            if self._syncer is None:
                from concurrent.futures import ThreadPoolExecutor  # writers only

                self._syncer = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="vstore-sync")
            return self._syncer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------
    def register_writer(self, camera_id: str, make: Callable[[], W]) -> W:
        """Keep the writer ``make()`` returns as the camera's one open writer (closed with
        the store). ``vstore.store.camera_writer.open_writer`` calls this."""
        if self.read_only:
            raise UsageError("store opened read-only")
        with self._writer_gate, self._lock:
            if camera_id in self._writers or camera_id in self._lent:
                raise UsageError(f"camera {camera_id!r} already has an open writer")
            w = make()
            self._writers[camera_id] = w
            return w

    def ensure_space(self, wait: bool = False) -> None:
        """Called before every new segment: the declared disk-full behaviour (lifecycle
        S1-S4). Returns at once unless ``wait`` (an import); raises SpaceRefused when no
        segment may start now: below the watermark with ``stop-recording``, or with nothing
        left that deleting would free enough of (held footage is never deleted for room)."""
        self.space.check(wait)

    def writer_closed(self, w: OpenWriter) -> None:
        with self._lock:
            if self._writers.get(w.camera_id) is w:
                del self._writers[w.camera_id]

    def drop_empty_segment(self, row: SegmentRow) -> None:
        b = Batch()
        b.delete(row.key())
        b.delete(layout.open_key(row.segment_id))
        self.index.commit(b, sync=True)
        try:
            self.fs.unlink(self.layout.path(row.path))
        except FileNotFoundError:
            pass

    # --- the wall clock ---------------------------------------------------------------------------
    def clock_verdict(self, newest_footage_ns: int | None = None) -> ClockVerdict:
        """Whether the host's wall clock agrees with what this store saw of it (K1): age
        rules act on ``now_ns``, which is never later than the clock can be shown to be.
        ``newest_footage_ns`` vouches for time across a reboot."""
        c = self.clock
        return judge_wall_clock(
            c.wall_ns(), c.boot_ns(), c.boot_id(), self._clock_mark(), newest_footage_ns
        )

    def mark_clock(self, rebase: bool = False) -> None:
        """Record the clocks as read now (only when trusted, or on an operator's word:
        ``rebase``). Within a boot the first reading stays the reference, so a clock that
        runs fast, or steps a little at a time, cannot move it; only the latest trusted wall
        time moves on (what the next boot is judged against)."""
        c = self.clock
        now = c.wall_ns()
        last = self._clock_mark()
        if last is not None and last.boot_id == c.boot_id() and not rebase:
            mark = last._replace(last_wall_ns=max(last.last_wall_ns, now))
        else:
            mark = ClockMark(now, c.boot_ns(), c.boot_id(), now)
        if mark == last:
            return
        b = Batch()
        b.put(layout.CLOCK_MARK_KEY, json.dumps(mark._asdict()).encode())
        self.index.commit(b, sync=False)

    def _clock_mark(self) -> ClockMark | None:
        raw = self.index.get(layout.CLOCK_MARK_KEY)
        if raw is None:
            return None
        try:
            return ClockMark(**json.loads(raw))
        except (ValueError, TypeError):
            return None  # unreadable: judged as a store that never saw the clock

    # --- reading -------------------------------------------------------------------------------
    def camera_num(self, camera_id: str) -> int:
        layout.validate_camera_id(camera_id)
        num = self.index.camera_num(camera_id)
        if num is None and camera_id in self.config.cameras:
            # (configured, nothing recorded yet: the other cameras are not this caller's
            # business, least of all over HTTP)
            raise NotFound(f"camera {camera_id!r} has no footage yet")
        if num is None:
            known = ", ".join(c for c, _ in self.index.cameras()) or "none"
            raise NotFound(f"unknown camera {camera_id!r} (cameras in this store: {known})")
        return num

    def require_cameras(self, camera_ids: Iterable[str] | None) -> list[str] | None:
        """``camera_ids`` as a list, each known (NotFound names the cameras there are): a job
        given a mistyped camera must say so, not do nothing."""
        if camera_ids is None:
            return None
        ids = list(camera_ids)
        for cam in ids:
            self.camera_num(cam)
        return ids

    def cameras(self) -> list[CameraSummary]:
        out = []
        for cam_id, num in self.index.cameras():
            first = last = None
            size = segs = opened = gaps = tiered = 0
            recorded = 0
            prev_end = None
            for row in self.index.segments(num):
                if row.state == "open":
                    opened += 1
                    # Its durable footage counts: the chunks indexed so far (W2).
                    extent = self._open_extent(num, row)
                    if extent is None:
                        continue
                    row = row._replace(end_ns=extent[0], size_bytes=extent[1])
                else:
                    segs += 1
                if first is None:
                    first = row.start_ns
                size += row.size_bytes
                if row.location != "local":
                    tiered += row.size_bytes
                recorded += row.end_ns - row.start_ns
                if prev_end is not None and row.start_ns - prev_end > GAP_TOLERANCE_NS:
                    gaps += 1
                prev_end = row.end_ns
                last = row.end_ns if last is None else max(last, row.end_ns)
            events = [
                {"kind": e.kind, "detail": e.detail}
                for e in self.index.events(num, -(2**63), 2**63 - 1)
                if e.kind in ("damaged", "frames_lost")
            ]
            damaged = len(damaged_ranges(events))
            # Frames a source lost inside a GOP (T5) are gaps as the timeline shows them.
            lost = lost_ranges(events)
            gaps += len(lost)
            recorded -= sum(e - s for s, e in lost)
            out.append(
                CameraSummary(
                    cam_id, first, last, size, segs, opened, gaps, recorded, tiered, damaged
                )
            )
        return out

    def timeline(self, camera_id: str, start_ns: int | None, end_ns: int | None) -> Timeline:
        num = self.camera_num(camera_id)
        start_ns = None if start_ns is None else to_ns(start_ns)
        end_ns = None if end_ns is None else to_ns(end_ns)
        rows = list(
            self.index.segments(
                num,
                -(2**63) if start_ns is None else start_ns,
                2**63 - 1 if end_ns is None else end_ns,
            )
        )
        # An open segment's extent is known from its indexed chunks (its durable footage).
        spans: list[tuple[int, int]] = []
        open_spans: list[tuple[int, int]] = []
        for r in rows:
            if r.state == "open":
                extent = self._open_extent(num, r)
                if extent is not None:
                    spans.append((r.start_ns, extent[0]))
                    open_spans.append((r.start_ns, extent[0]))
            else:
                spans.append((r.start_ns, r.end_ns))
        if not spans and (start_ns is None or end_ns is None):
            # An open end defaults to the footage's own; with none there, there is no range
            # to show (a range given in full is shown, as one gap).
            where = "".join(
                (
                    f" from {format_time(start_ns)}" if start_ns is not None else "",
                    f" up to {format_time(end_ns)}" if end_ns is not None else "",
                )
            )
            raise NotFound(f"camera {camera_id!r} has no footage{where}")
        lo = start_ns if start_ns is not None else spans[0][0]
        hi = end_ns if end_ns is not None else spans[-1][1]
        rng = TimeRange(lo, max(hi, lo + 1))
        covered: list[tuple[int, int]] = []
        for s, e in spans:
            s, e = max(s, rng.start_ns), min(e, rng.end_ns)
            if e <= s:
                continue
            if covered and s - covered[-1][1] <= GAP_TOLERANCE_NS:
                covered[-1] = (covered[-1][0], max(covered[-1][1], e))
            else:
                covered.append((s, e))
        gaps: list[tuple[int, int]] = []
        cursor = rng.start_ns
        for s, e in covered:
            if s > cursor:
                gaps.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < rng.end_ns:
            gaps.append((cursor, rng.end_ns))
        # (frames lost inside a GOP are recorded where the hole begins, which may lie before
        # the range: a hole lasts no longer than a source's jump may, max_clock_drift_s)
        reach_ns = int(self.config.camera(camera_id).max_clock_drift_s * NS_PER_S)
        events = [
            {"at_ns": ev.at_ns, "kind": ev.kind, "detail": ev.detail}
            for ev in self.index.events(num, rng.start_ns - reach_ns, rng.end_ns)
            if ev.at_ns >= rng.start_ns
            or (ev.kind == "frames_lost" and ev.detail.get("to_ns", 0) > rng.start_ns)
        ]
        # Footage recorded but found damaged (R5, R6), or frames a source lost inside a GOP
        # (T5), is not covered: a clip shows a gap.
        damaged = damaged_ranges(events) + lost_ranges(events)
        if damaged:
            covered, _inside = subtract_ranges(covered, damaged)
            inside = [
                (max(s, rng.start_ns), min(e, rng.end_ns))
                for s, e in damaged
                if s < rng.end_ns and e > rng.start_ns
            ]
            gaps = merge_ranges(gaps + inside)
        return Timeline(camera_id, rng, covered, gaps, events, open_spans)

    def _open_extent(self, camera_num: int, row: SegmentRow) -> tuple[int, int] | None:
        """(end_ns, bytes) of an open segment's indexed chunks, or None before the first."""
        end = None
        size = 0
        for c in self.index.chunks(camera_num, row.start_ns, 2**63 - 1):
            if c.start_ns < row.start_ns:
                continue
            if c.segment_id != row.segment_id:
                break  # past it: the segments of a camera do not interleave
            end = c.end_ns
            size += c.length
        return None if end is None else (end, size)

    def recording_elsewhere(self) -> bool:
        """True when another process holds the index open for writing (a running recorder).

        RocksDB takes a POSIX lock on index/LOCK; probing it from this process does not
        disturb the holder. (Only meaningful for a read-only store: a writable one holds it.)
        """
        if not self.read_only:
            return False

        try:
            fd = os.open(self.layout.index_dir / "LOCK", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    # --- read leases ------------------------------------------------------------------------------
    @contextmanager
    def lease(
        self,
        segment_ids: Iterable[int] = (),
        ranges: Iterable[tuple[str, int, int]] = (),
    ) -> Iterator[None]:
        """Protect footage from deletion while it is read (a clip, an export): segments by
        id and (camera, start_ns, end_ns) ranges. A reader leases the range it asks for
        before it plans from the index, so no segment it plans can be deleted under it
        (lifecycle L1-L3); any process on this host sees the lease."""
        with self._lock:
            self._lease_serial += 1
            serial = self._lease_serial
        path = self.layout.lease_path(actor.hostname(), os.getpid(), serial)
        try:
            lease = hold_lease(path, segment_ids, ranges)
            lease.__enter__()
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A store this process may not write (read-only media, an evidence copy, another
            # user's store): it is read unleased; a deletion there is that owner's to make.
            log.info("reading %s without a lease: %s", self.root, exc)
            yield
            return
        try:
            yield
        finally:
            lease.__exit__(None, None, None)

    def leases(self) -> LeaseSet:
        """The live leases now (this or any other process): checked at each deletion."""
        return live_leases(self.layout.leases_dir)

    def tier(self, url: str) -> Any:
        """The object store at url (one client per URL for the life of the store)."""
        return self.use_tier(url)

    def use_tier(self, url_or_tier: Any) -> Any:
        """``tier(url)``; or given a tier already open, that one is this store's client of
        its URL (unless the store has one)."""
        url = url_or_tier if isinstance(url_or_tier, str) else url_or_tier.url
        with self._lock:
            t = self._tiers.get(url)
            if t is None:
                # Loaded on use: a store whose footage is all local never needs them.
                from vstore.tier import open_tier
                from vstore.tier.cache import CachedTier

                t = open_tier(url) if isinstance(url_or_tier, str) else url_or_tier
                if t.url in self._tiers:  # another spelling of a tier already open
                    t = self._tiers[url] = self._tiers[t.url]
                    return t
                cap = self.config.tier.cache_bytes
                if cap > 0:
                    try:
                        t = CachedTier(t, self.layout.tier_cache_dir(t.url), cap)
                    except OSError:
                        pass  # no writable cache (a read-only mount): read through
                self._tiers[url] = self._tiers[t.url] = t
            return t

    def segment_reader(self, row: SegmentRow, cached: bool = True) -> SegmentReader:
        """A reader for an indexed segment, local or tiered (ranged reads of the object,
        through the local read cache unless ``cached`` is False, as checks need)."""
        if row.location == "local":
            try:
                return SegmentReader.open(self.layout.path(row.path))
            except NotFound:
                raise SegmentMissing(
                    f"{row.path}: the file of this indexed segment is missing (`vstore check` "
                    "reports it)"
                ) from None

        from vstore.tier.source import TierSource

        tier = self.tier(row.location)
        if not cached:
            tier = getattr(tier, "inner", tier)
        return SegmentReader(
            TierSource(tier, row.path, row.size_bytes),
            f"{row.location}/{row.path}",
        )

    def read_packets(self, camera_id: str, start_ns: int, end_ns: int) -> Iterator[Packet]:
        """Every stored packet of chunks overlapping [start_ns, end_ns), in stored order."""
        num = self.camera_num(camera_id)
        readers: dict[int, tuple[SegmentReader, fmt.SegmentMeta]] = {}
        seg_paths = {r.segment_id: r for r in self.index.segments(num, start_ns, end_ns)}
        try:
            for c in self.index.chunks(num, start_ns, end_ns):
                if c.segment_id not in readers:
                    row = seg_paths.get(c.segment_id)
                    if row is None:
                        raise CorruptSegment(f"chunk at {c.start_ns} names unknown segment")
                    rd = self.segment_reader(row)
                    readers[c.segment_id] = (rd, rd.meta)
                rd, meta = readers[c.segment_id]
                chunk = rd.read_chunk(c.offset, c.length, c.crc32)
                yield from chunk_packets(meta, chunk)
        finally:
            for rd, _ in readers.values():
                rd.close()


def damaged_ranges(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The (start, end) of indexed chunks that ``damaged`` events recorded (R5, R6)."""
    return sorted(
        (int(c["start_ns"]), int(c["end_ns"]))
        for e in events
        if e["kind"] == "damaged"
        for c in e["detail"].get("indexed_chunks", [])
    )


def lost_ranges(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The (start, end) of frames a source lost inside a GOP (``frames_lost`` events, T5)."""
    return sorted(
        (int(e["detail"]["from_ns"]), int(e["detail"]["to_ns"]))
        for e in events
        if e["kind"] == "frames_lost"
    )


def pid_alive(pid: int) -> bool:
    """Whether a process lives (leases and the control server's heartbeat name theirs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def open_read_only(path: str | os.PathLike[str] | None = None) -> Store:
    """The store at path (default: $VSTORE_STORE or ./vstore-data), read-only: what the read
    commands use (no recovery, no lifecycle; works while another process records)."""
    return Store(resolve_store_path(str(path) if path is not None else None), read_only=True)
