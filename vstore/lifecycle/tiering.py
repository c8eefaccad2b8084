"""Tiering: move sealed segments older than the hot age to an object store, keeping one index.

Per segment (docs/design/lifecycle.md U1-U3): U1 upload the whole file with its SHA-256,
verified by the store and again by reading the object's trailer back; U2 one synced batch
points the segment row at the object, marks the local file as garbage and audits; U3 the
local file is removed (D2-D3). A crash before U2 leaves the local copy indexed (a rerun
uploads again, idempotently); after U2 the verified object is indexed and the next open
removes the local file. Never a local delete without a verified upload.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vstore.base import layout
from vstore.base.errors import (
    CorruptSegment,
    SegmentMissing,
    TierError,
    UsageError,
    VstoreError,
)
from vstore.base.jsonio import dumps_compact
from vstore.base.layout import parse_segment_name
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_duration
from vstore.index.segment_chain import link_hash, link_of_object, object_metadata, row_statement
from vstore.index.time_index import Batch, SegmentRow
from vstore.lifecycle.gone_nodes import gone_stores
from vstore.lifecycle.hot_footage import read_cards
from vstore.lifecycle.shared_catalog import publish_pending
from vstore.lifecycle.trim import rewrite_cut_short
from vstore.segment import format as fmt
from vstore.segment.reader import SegmentReader
from vstore.store import garbage, io_stats
from vstore.store.config import AUTO_RATE, parse_rate
from vstore.store.garbage import finish_garbage
from vstore.store.holds import covering_holds
from vstore.store.store import Store
from vstore.tier.base import BlobTier, ByteRange
from vstore.tier.source import TierSource

AUTO_RATE_FACTOR = 4
"""``max_rate = "auto"`` moves footage this many times as fast as its cameras record it, so a
backlog (an S3 outage, a first run) shrinks while recording keeps most of the disk."""
AUTO_RATE_FLOOR_BYTES = 20_000_000
"""...and never slower than this (bytes/s): a few low-bitrate cameras still tier briskly."""


def footage_rate_bytes(rows: Iterable[SegmentRow]) -> float:
    """Bytes per second of footage the rows' cameras record: per camera, its segments' bytes
    over the media time they cover, summed over cameras."""
    size: dict[int, int] = {}
    span_ns: dict[int, int] = {}
    for r in rows:
        size[r.camera_num] = size.get(r.camera_num, 0) + r.size_bytes
        span_ns[r.camera_num] = span_ns.get(r.camera_num, 0) + max(0, r.end_ns - r.start_ns)
    return sum(size[c] * 1e9 / span_ns[c] for c in size if span_ns[c] > 0)


def auto_rate_bytes(rows: Iterable[SegmentRow]) -> int:
    """The pace of ``max_rate = "auto"`` for a plan: AUTO_RATE_FACTOR times its cameras'
    footage rate, at least AUTO_RATE_FLOOR_BYTES."""
    return max(AUTO_RATE_FLOOR_BYTES, int(AUTO_RATE_FACTOR * footage_rate_bytes(rows)))


@dataclass
class TierResult:
    """What a tiering run did (``vstore tier run --json``): segments planned and moved, the
    bytes and seconds it took, what it left for later, and any upload errors."""

    planned: int = 0
    tiered: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped_leased: int = 0
    object_holds: int = 0  # uploads that also got an S3 object legal hold
    max_rate_bytes: int = 0  # the pace footage moved at (bytes/s; 0: uncapped)
    errors: list[str] = field(default_factory=list)
    # Segments whose own bytes did not verify (damage not yet recorded): left local, the run
    # went on with the others.
    unverified: list[str] = field(default_factory=list)
    changed: int = 0  # deleted, trimmed or repaired while they uploaded: left as they are
    # Segments cut short (their lost end recorded as damage: no footer, no trailer), written
    # again whole before they went (an object without a footer could not be read alone)...
    rewritten: list[str] = field(default_factory=list)
    # ...and those with no chunk left in the index (no footage to move): left on the disk.
    kept_local: list[str] = field(default_factory=list)
    catalog_hours: int = 0  # shared catalog objects written (camera-hours)
    catalog_errors: list[str] = field(default_factory=list)  # left marked: the next run retries

    JSON_EXTRA = ("mb_per_s",)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


def plan_tiering(
    store: Store, older_than_ns: int | None = None, cameras: Iterable[str] | None = None
) -> list[SegmentRow]:
    """Sealed local segments that ended at least their camera's hot age ago (or
    older_than_ns, for every camera, when given), oldest first."""
    now = store.clock.wall_ns()
    wanted = set(cameras) if cameras is not None else None
    out = []
    for cam, num in store.index.cameras():
        if wanted is not None and cam not in wanted:
            continue
        age = older_than_ns if older_than_ns is not None else store.config.tier.older_than_for(cam)
        cutoff = now - age
        out.extend(
            r
            for r in store.index.segments(num, end_ns=cutoff)
            if r.state == "sealed" and r.location == "local" and r.end_ns <= cutoff
        )
    return sorted(out, key=lambda r: r.start_ns)


def tier_segment(
    store: Store,
    tier: BlobTier,
    row: SegmentRow,
    camera: str,
    by: str = "tiering",
    rate: RateLimiter | None = None,
    decided: dict[str, Any] | None = None,
) -> TierOutcome:
    """U1-U3 for one segment. ``rate`` paces both passes over the file (the verify read from
    disk, then the copy or upload), so the footage itself moves at half its rate."""
    key = layout.object_key("", camera, row.start_ns, row.segment_id, store.uuid)
    path = store.layout.path(row.path)
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        raise SegmentMissing(f"{row.path}: the file of this indexed segment is missing") from None
    if row.damaged and size_bytes < row.size_bytes:
        # Cut short, its lost end recorded as damage (R6): its footer and trailer went with
        # it, and an object without them could not be read back alone. What the disk still
        # holds is written again whole, and that copy tiers. (A file none of whose chunks
        # is left in the index holds no footage served: it stays as it is.)
        chunks = store.index.segment_chunks(row)
        if not chunks:
            return TierOutcome(0, False, kept_local=True)
        copy = rewrite_cut_short(store, row, camera, chunks, by)
        if copy is None:
            return TierOutcome(0, False, changed=True)
        out = tier_segment(store, tier, copy, camera, by, rate, decided)
        return dataclasses.replace(out, rewritten=True)
    # Only verified footage leaves the disk: every chunk CRC and the content hash must match
    # the index. The same pass hashes the whole file, which the object store then verifies.
    # Damage already recorded (R6) goes with it as it is: its chunks are out of the index,
    # the rest of the segment keeps the life of the footage around it.
    with SegmentReader.open(path) as rd:
        file_sha = rd.verify(
            rate.consume if rate is not None else None, damaged=row.damaged_offsets
        )
        if rd.trailer().sha256.hex() != row.sha256:
            raise TierError(f"{row.path}: content hash differs from the index; not tiered")
    # The segment's chain link and signature travel with it (segment_chain.object_metadata).
    meta = object_metadata(camera, row)
    info = tier.put_file(key, path, base64.b64encode(file_sha).decode(), rate, meta)  # U1
    if info.size_bytes != row.size_bytes:
        raise TierError(f"{tier.url}/{key}: size {info.size_bytes} != {row.size_bytes}")
    try:
        trailer = fmt.unpack_trailer(
            tier.get(key, ByteRange(row.size_bytes - fmt.TRAILER_BYTES, fmt.TRAILER_BYTES))
        )
    except CorruptSegment as exc:  # (what the tier gave back, not our bytes)
        raise TierError(f"{tier.url}/{key}: the object read back is no segment: {exc}") from exc
    if trailer.sha256.hex() != row.sha256:
        raise TierError(f"{tier.url}/{key}: trailer hash differs from the index")
    # H4: footage under a vstore hold is also held by the object store before the index
    # points at it there (when the bucket has S3 Object Lock). U2 only over the row it
    # uploaded: a retention run, a trim or a repair may have changed it meanwhile (their
    # changes, hold changes and U2 take retention_lock; put back, the row would name a
    # deleted segment, or the untrimmed bytes, again). No call to the object store is made
    # under that lock: the space keeper and hold changes wait on it.
    object_hold = unsupported = False
    while True:
        if not (object_hold or unsupported) and _wants_object_hold(store, camera, row):
            object_hold = tier.set_legal_hold(key, True)
            unsupported = not object_hold
        with store.retention_lock:
            now = store.index.get(row.key())
            if now is None or SegmentRow.decode(row.key(), now) != row:
                break
            if not (object_hold or unsupported) and _wants_object_hold(store, camera, row):
                continue  # (a hold placed since: its object hold first, outside the lock)
            rec = _point_at_object(store, tier, row, camera, key, by, decided, object_hold)
        garbage.remove_marked(store, row.segment_id, rec)  # U3 (a lease defers it to D4)
        return TierOutcome(row.size_bytes, object_hold)
    # Its own upload, which no row names: deleted (its object hold lifted first).
    if object_hold:
        tier.set_legal_hold(key, False)
    tier.delete(key)
    return TierOutcome(0, False, changed=True)


def _wants_object_hold(store: Store, camera: str, row: SegmentRow) -> bool:
    return store.config.tier.legal_hold and bool(
        covering_holds(store, camera, row.start_ns, row.end_ns)
    )


def _point_at_object(
    store: Store,
    tier: BlobTier,
    row: SegmentRow,
    camera: str,
    key: str,
    by: str,
    decided: dict[str, Any] | None,
    object_hold: bool,
) -> dict[str, Any]:
    """U2 for an uploaded segment (under retention_lock): the garbage mark of its local
    file, for U3."""
    moved = row._replace(location=tier.url, path=key)
    b = Batch()  # U2
    b.put(moved.key(), moved.value())
    b.put_catalog_behind(row.camera_num, row.start_ns, tier.url)  # catalogued once the run ends
    rec = {"path": row.path, "camera": camera, "start_ns": row.start_ns, "end_ns": row.end_ns}
    b.put(layout.garbage_key(row.segment_id), dumps_compact(rec))
    store.index.audit(
        "tier",
        by,
        {
            "camera": camera,
            "segment_id": row.segment_id,
            "to": f"{tier.url}/{key}",
            "bytes": row.size_bytes,
            "sha256": row.sha256,
            "object_legal_hold": object_hold,
            **({"decided_by": decided} if decided else {}),
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)
    return rec


@dataclass(frozen=True)
class TierOutcome:
    bytes: int
    object_hold: bool
    changed: bool = False  # deleted, trimmed or repaired while it uploaded: left as it is
    kept_local: bool = False  # cut short with no chunk left: no footage to move, it stays
    rewritten: bool = False  # cut short: what was left of it written again whole first


def run_tiering(
    store: Store,
    tier: BlobTier,
    older_than_ns: int | None = None,
    *,
    cameras: Iterable[str] | None = None,
    dry_run: bool = False,
    parallel: int | None = None,
    max_rate_bytes: int | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TierResult:
    """Tier every segment past its hot age, ``parallel`` uploads at a time (default
    [tier] parallel), footage moving at most at ``max_rate_bytes`` per second (default
    [tier] max_rate; "auto": auto_rate_bytes of the plan; 0 or "none": uncapped; or a size
    such as "50MB") under one shared cap.

    On the first failure no new upload starts; those in flight finish, and a TierError
    says how far the run got (its ``result`` attribute holds the counts). A rerun resumes.
    """
    from concurrent.futures import (  # only uploads use the pool
        FIRST_COMPLETED,
        Future,
        ThreadPoolExecutor,
        wait,
    )

    if store.read_only:
        raise VstoreError("tiering needs the store opened for writing")
    if older_than_ns is not None and older_than_ns < 0:
        raise UsageError("the age footage tiers at (older_than) must not be negative")
    cfg = store.config.tier
    cameras = store.require_cameras(cameras)
    names = {num: cam for cam, num in store.index.cameras()}
    rows = plan_tiering(store, older_than_ns, cameras)
    res = TierResult(planned=len(rows))
    want = parse_rate(max_rate_bytes if max_rate_bytes is not None else cfg.max_rate_bytes)
    res.max_rate_bytes = auto_rate_bytes(rows) if want == AUTO_RATE else int(want)
    if dry_run:
        res.bytes = sum(r.size_bytes for r in rows)
        return res

    finish_garbage(store, local_only=True)
    leases = store.leases()
    names = {num: cam for cam, num in store.index.cameras()}
    todo = [
        r
        for r in rows
        if not leases.covers(names.get(r.camera_num, ""), r.start_ns, r.end_ns, r.segment_id)
    ]
    res.skipped_leased = len(rows) - len(todo)
    # Each byte passes the cap twice (the verify read, then the copy or upload): twice the
    # footage pace keeps the footage at it.
    rate = RateLimiter(2 * res.max_rate_bytes) if res.max_rate_bytes else None
    workers = max(1, parallel if parallel is not None else cfg.parallel)
    t0 = time.perf_counter()
    pending: dict[Future[TierOutcome], SegmentRow] = {}
    it = iter(todo)
    with ThreadPoolExecutor(workers, thread_name_prefix="vstore-tier") as pool:
        # Bounded: never more than `workers` segments in flight (and in memory).
        while True:
            while not res.errors and len(pending) < workers:
                row = next(it, None)
                if row is None:
                    break
                cam = names[row.camera_num]
                decided = {
                    "older_than": format_duration(
                        older_than_ns
                        if older_than_ns is not None
                        else store.config.tier.older_than_for(cam)
                    ),
                    "override": older_than_ns is not None,
                    "max_rate_bytes": res.max_rate_bytes,
                }
                # Each upload runs in the caller's context: its audit names the caller.
                fut = pool.submit(
                    contextvars.copy_context().run,
                    tier_segment,
                    store,
                    tier,
                    row,
                    cam,
                    rate=rate,
                    decided=decided,
                )
                pending[fut] = row
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                row = pending.pop(fut)
                try:
                    out = fut.result()
                except CorruptSegment as exc:
                    # Its own bytes: the tier is fine, the other segments go on.
                    res.unverified.append(f"{row.path}: {exc}")
                    continue
                except VstoreError as exc:
                    res.errors.append(f"{row.path}: {exc}")
                    continue
                if out.changed:
                    res.changed += 1
                    continue
                if out.kept_local:
                    res.kept_local.append(row.path)
                    continue
                if out.rewritten:
                    res.rewritten.append(row.path)
                res.tiered += 1
                res.bytes += out.bytes
                res.object_holds += out.object_hold
                if progress is not None:
                    progress(res.tiered, len(todo))
    res.seconds = time.perf_counter() - t0
    io_stats.TIER_BACKLOG.set(len(rows) - res.tiered, sum(r.size_bytes for r in rows) - res.bytes)
    # The shared catalog lists what was tiered (also after a failed run: what did move).
    published = publish_pending(store)
    res.catalog_hours, res.catalog_errors = published.hours, published.errors
    if res.errors:
        err = TierError(
            f"tiering stopped: {res.errors[0]} ({res.tiered} of {len(todo)} segment(s) moved; "
            "the rest stay local and a rerun resumes)"
        )
        err.result = res  # type: ignore[attr-defined]
        raise err
    if res.unverified:
        err = TierError(
            f"{len(res.unverified)} segment(s) do not verify and stay local: "
            f"{res.unverified[0]} (`vstore check --repair` records the damage; the next run "
            f"tiers the rest of them); {res.tiered} of {len(todo)} segment(s) moved"
        )
        err.result = res  # type: ignore[attr-defined]
        raise err
    return res


@dataclass
class RebuildResult:
    """What rebuilding the index from a tier found (``vstore rebuild-index --json``): the
    objects listed, the segments and chunks indexed, and the objects other stores own."""

    objects: int = 0
    indexed: int = 0
    already_indexed: int = 0
    chunks: int = 0
    foreign: int = 0  # indexed objects another store wrote (read-only here unless adopted)
    adopted: bool = False
    # Stores whose objects --adopt left read-only: a node of theirs still has its card in
    # the bucket (alive, or not declared gone): store uuid -> why.
    not_adopted: dict[str, str] = field(default_factory=dict)
    not_adopted_objects: int = 0
    adopted_objects: int = 0  # objects another store wrote that are this store's now
    problems: list[str] = field(default_factory=list)


def rebuild_index_from_tier(
    store: Store,
    tier: BlobTier,
    progress: Callable[[int, int], None] | None = None,
    *,
    adopt: bool = False,
) -> RebuildResult:
    """Index every segment object of a tier from the objects alone (their headers, footers and
    trailers, read with ranged GETs): a replaced node, or a second one, serves clips from S3.

    Objects another store wrote (their header names its uuid) are indexed as foreign: read,
    never deleted, trimmed or re-held here (D6), unless ``adopt``: a replacement node takes
    over the objects of a store that is gone (audited), and its retention then deletes them."""
    out = RebuildResult(adopted=adopt)
    living = _living_stores(tier) if adopt else {}
    objs = [o for o in tier.list_prefix("") if o.key.endswith(layout.SEGMENT_SUFFIX)]
    out.objects = len(objs)
    names = {o.key: parse_segment_name(o.key.rsplit("/", 1)[-1]) for o in objs}
    # New segments must not reuse ids that this store's own objects carry; reserved before
    # any object another store wrote takes a fresh one below.
    store.index.reserve_segment_ids(max((p[1] for p in names.values() if p), default=0))
    for i, obj in enumerate(objs):
        parsed = names[obj.key]
        if parsed is None:
            out.problems.append(f"{obj.key}: not a segment name")
            continue
        start_ns, seg_id = parsed
        try:
            with SegmentReader(TierSource(tier, obj.key, obj.size_bytes), obj.key) as rd:
                meta, entries, trailer = rd.meta, rd.directory(), rd.trailer()
        except VstoreError as exc:
            out.problems.append(f"{obj.key}: {exc}")
            continue
        cam = store.index.camera_num(meta.camera, create=True)
        owner = meta.store_uuid if meta.store_uuid and meta.store_uuid != store.uuid else ""
        adopting = bool(owner) and adopt and owner not in living
        if owner:
            if owner in living:
                out.not_adopted[owner] = living[owner]
                out.not_adopted_objects += 1
            had = next((r for r in store.index.segments(cam, start_ns, start_ns + 1)
                        if r.location == tier.url and r.path == obj.key), None)  # fmt: skip
            if had is not None:
                if adopting and had.foreign:
                    _adopt_row(store, had, meta.camera, tier, obj.key)  # (indexed read-only)
                    out.indexed += 1
                    out.adopted_objects += 1
                else:
                    out.already_indexed += 1
                continue
            # Another store's ids are its own: one may repeat an id of ours, and everything
            # keyed by a segment id here (its chunks, a deletion's mark, check) would mix
            # them up. Its object is indexed under a fresh id, found again by its key.
            seg_id = store.index.new_segment_id()
        elif store.index.get(layout.segment_key(cam, start_ns, seg_id)) is not None:
            out.already_indexed += 1
            continue
        # This store's own object takes back its place in the camera's chain.
        carried = None if owner else link_of_object(_metadata(tier, obj.key))
        row = SegmentRow.sealed(
            cam,
            seg_id,
            entries,
            start_ns=start_ns,
            location=tier.url,
            path=obj.key,
            size_bytes=obj.size_bytes,
            sha256=trailer.sha256.hex(),
            codecs=tuple(t.codec for t in meta.tracks),
            owner="" if adopting else owner,
        )
        if carried is not None and carried[0] == meta.camera:
            row = row._replace(chain=carried[1])
            stmt = row_statement(meta.camera, row, carried[1])
            store.index.raise_chain_head(cam, carried[1].seq, link_hash(stmt))
        if owner:
            out.foreign += 1
            out.adopted_objects += adopting
        b = Batch()
        b.put_segment_and_chunks(row, entries)
        if adopting:  # (the hour lists it as this store's now)
            b.put_catalog_behind(cam, start_ns, tier.url)
        # An object indexed again is no longer garbage: a deletion left pending (an
        # unreachable tier, a crash after D1) must not remove it later (D5).
        mark = None if owner else store.index.get(layout.garbage_key(seg_id))
        cancelled = False
        if mark is not None:
            rec = json.loads(mark)
            if rec.get("path") == obj.key and rec.get("location") == tier.url:
                b.delete(layout.garbage_key(seg_id))
                cancelled = True
        detail = _rebuild_record(meta.camera, seg_id, f"{tier.url}/{obj.key}", meta.store_uuid,
                                 not owner or adopting, cancelled)  # fmt: skip
        if owner:
            detail["written_as_segment_id"] = parsed[1]
        store.index.audit("rebuild_index", "rebuild", detail, store.clock.wall_ns(), batch=b)
        store.index.commit(b, sync=False)
        out.indexed += 1
        out.chunks += len(entries)
        if progress is not None:
            progress(i + 1, len(objs))
    if adopt and not store.read_only:
        # The hours of what it adopted list it as this store's now (its writer's entries
        # go): before its retention may delete any, so none stays listed once gone.
        out.problems += publish_pending(store).errors
    return out


def _adopt_row(store: Store, row: SegmentRow, camera: str, tier: BlobTier, key: str) -> None:
    """Take over another store's object this store indexed read-only before (audited)."""
    b = Batch()
    b.put(row.key(), row._replace(owner="").value())
    b.put_catalog_behind(row.camera_num, row.start_ns, tier.url)
    detail = _rebuild_record(camera, row.segment_id, f"{tier.url}/{key}", row.owner, True)
    store.index.audit("rebuild_index", "rebuild", detail, store.clock.wall_ns(), batch=b)
    store.index.commit(b, sync=False)


def _rebuild_record(
    camera: str, segment_id: int, source: str, writer: str, owned: bool, cancelled: bool = False
) -> dict[str, Any]:
    """The detail of a ``rebuild_index`` audit record: a segment indexed (or taken over)
    from its object."""
    return {
        "camera": camera,
        "segment_id": segment_id,
        "from": source,
        "pending_delete_cancelled": cancelled,
        "written_by_store": writer,
        "owned": owned,
    }


def _living_stores(tier: BlobTier) -> dict[str, str]:
    """Stores a node of which still has its card in the bucket (it starts with one, and
    `vstore node forget` takes it away): store uuid -> what the card says. Their objects
    are never adopted: a live store would keep writing its catalog beside the adopter, and
    one not declared gone may come back."""
    gone = gone_stores(tier)
    return {
        c["store"]: f"node {c.get('member') or c.get('node')} (API {c['api']}) has its card in "
        "the bucket: not declared gone (`vstore node forget` it first, if it is)"
        for c in read_cards(tier)
        if c["store"] not in gone
    }


def _metadata(tier: BlobTier, key: str) -> dict[str, str]:
    info = tier.head(key)
    return (info.metadata or {}) if info is not None else {}
