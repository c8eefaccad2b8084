"""The deletion protocol (lifecycle D1-D6): a deletion is a garbage mark in the index,
then the file or object removed durably, then the mark cleared; marks a crash left are
finished, and marks whose footage a hold or the index claims again are cancelled."""

from __future__ import annotations

from typing import Any

from vstore.base import layout
from vstore.base.errors import CorruptSegment, NotFound, TierError, VstoreError
from vstore.base.jsonio import dumps_compact, loads_dict
from vstore.base.timebase import format_time
from vstore.index.segment_chain import link_of_object, removal_detail
from vstore.index.time_index import Batch, SegmentRow
from vstore.segment.reader import SegmentReader
from vstore.store import io_stats
from vstore.store.holds import Hold, list_holds
from vstore.store.lease import LeaseSet
from vstore.store.store import Store
from vstore.tier.source import TierSource

# D5's first reason: a row names the marked file or object again (rebuild-index, repair).
REINDEXED = "indexed again"


def delete_segment(
    store: Store, row: SegmentRow, camera: str, by: str, detail: dict[str, Any]
) -> bool:
    """Delete one indexed segment (D1-D3). D1: one synced batch takes its chunk rows and its
    row out of the index, adds the garbage mark and the permanent audit record (what the
    record always says, then ``detail``). D2-D3 as ``remove_marked``: False when a reader's
    lease defers removing the bytes (the mark stays for D4); TierError when a tier fails
    (the mark stays for a rerun). The deletion itself is D1's: the footage is gone from the
    index either way."""
    if row.foreign:  # (every caller leaves them out: this is the last guard of D6)
        raise VstoreError(
            f"segment {row.path} of camera {camera!r} belongs to another store "
            f"({row.owner}): only its own store deletes it"
        )
    rec = garbage_record(row.path, camera, row.start_ns, row.end_ns, row.location, row.damaged)
    b = Batch()
    b.put(layout.garbage_key(row.segment_id), rec)
    for c in store.index.segment_chunks(row):
        b.delete(c.key())
    b.delete(row.key())
    if row.location != "local" and not row.foreign:
        b.put_catalog_behind(row.camera_num, row.start_ns, row.location)  # leaves the catalog
    store.index.audit(
        "delete",
        by,
        {
            "camera": camera,
            "segment_id": row.segment_id,
            "from": format_time(row.start_ns),
            "to": format_time(row.end_ns),
            "bytes": row.size_bytes,
            "sha256": row.sha256,
            "location": row.location,
            **removal_detail(camera, row),
            **detail,
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)
    io_stats.DELETED.add(str(detail.get("reason") or by), row.size_bytes)
    return remove_marked(store, row.segment_id, loads_dict(rec))


def remove_marked(
    store: Store,
    segment_id: int,
    rec: dict[str, Any],
    leases: LeaseSet | None = None,
) -> bool:
    """D2-D3: remove the file or object (if still there), make that durable, clear the
    garbage mark. A reader's live lease on it defers this (L2: False, the mark stays for
    D4). A tier that fails raises TierError and the mark stays for a rerun."""
    if leases is None:
        leases = store.leases()
    if leases.covers(rec.get("camera", ""), rec["start_ns"], mark_end_ns(rec), segment_id):
        return False
    location = rec.get("location", "local")
    if location != "local":
        _delete_object(store, store.tier(location), str(rec["path"]))
    else:
        unlink_durably(store, store.layout.path(rec["path"]))
    b = Batch()
    b.delete(layout.garbage_key(segment_id))
    store.index.commit(b, sync=False)  # a lost clear is redone by D4
    return True


def _delete_object(store: Store, tier: Any, key: str) -> None:
    """Delete a marked object (a missing one is not an error). One the object store refuses
    may carry an object legal hold no active hold wants any more (a release cut off before
    it lifted it, or made while the store was unreachable: no hold covers a mark carried
    out, D5): it is lifted, and the delete tried once more; else it stays marked."""
    try:
        tier.delete(key)
    except TierError:
        if not store.config.tier.legal_hold or not tier.set_legal_hold(key, False):
            raise
        tier.delete(key)


def unlink_durably(store: Store, path: Any) -> None:
    """Remove a file (if still there) and make that durable (fsync its directory)."""
    try:
        store.fs.unlink(path)
        store.fs.fsync_dir(path.parent)
    except FileNotFoundError:
        pass


def mark_end_ns(rec: dict[str, Any]) -> int:
    """A garbage mark's end; marks written before ends were recorded reach to the end of
    time, so a hold anywhere after their start keeps them (D5 errs toward keeping)."""
    return int(rec.get("end_ns", 2**63 - 1))


def _reindexed(store: Store, segment_id: int, rec: dict[str, Any]) -> bool:
    """Whether an index row names the marked file or object again (rebuild-index, repair)."""
    num = store.index.camera_num(rec.get("camera", "")) if rec.get("camera") else None
    if num is None:
        return False
    location = rec.get("location", "local")
    for r in store.index.segments(num, rec["start_ns"], rec["start_ns"] + 1):
        if r.path == rec["path"] and r.location == location:
            return True
    return False


def finish_garbage(
    store: Store, errors: list[str] | None = None, *, local_only: bool = False
) -> int:
    """D4: finish deletions a crash or an unreachable tier interrupted (remove the file or
    object if still there, clear the mark). D5: a mark whose footage is indexed again or
    now under an active hold is cancelled instead (the bytes stay, the audit log says so).
    Objects a tier cannot delete now stay marked; their errors are listed. ``local_only``
    leaves tiered ones to the next retention run (opening a store must not wait on an
    object store)."""
    marks = store.index.garbage()
    if not marks:
        return 0
    done = 0
    holds = list_holds(store)
    leases = store.leases()
    for seg_id, rec in marks:
        location = rec.get("location", "local")
        if local_only and location != "local":
            continue
        why = mark_conflict(store, seg_id, rec, holds)
        if why is not None:
            cancel_mark(store, seg_id, rec, why)
            continue
        try:
            if remove_marked(store, seg_id, rec, leases):
                done += 1
        except TierError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return done


def mark_conflict(
    store: Store, segment_id: int, rec: dict[str, Any], holds: list[Hold]
) -> str | None:
    """Why a garbage mark must not be carried out (D5), or None: its file or object is
    indexed again, or it is the only copy of footage an active hold covers."""
    if _reindexed(store, segment_id, rec):
        return REINDEXED
    if _held_and_unindexed(store, rec, holds):
        return "under an active legal hold, and not indexed elsewhere"
    return None


def _held_and_unindexed(store: Store, rec: dict[str, Any], holds: list[Hold]) -> bool:
    """Whether an active hold covers part of a mark's span that no indexed chunk of its
    camera covers: footage a hold wants whose only copy is the marked one. (A tiered
    segment's local file, or a trimmed segment's rest, is covered by the object or the
    copy, and goes.)"""
    cam = rec.get("camera", "")
    start, end = int(rec["start_ns"]), mark_end_ns(rec)
    num = store.index.camera_num(cam) if cam else None
    for h in holds:
        if not h.covers(cam, start, end):
            continue
        lo, hi = max(h.from_ns, start), min(h.to_ns, end)
        if num is None:
            return True
        cursor = lo
        for c in store.index.chunks(num, lo, hi):
            if c.start_ns > cursor:
                return True  # any held instant, however short, that only the mark has
            cursor = max(cursor, c.end_ns)
        if hi != 2**63 - 1 and hi > cursor:
            return True
        if hi == 2**63 - 1 and cursor == lo:
            return True  # an old mark with no end, and nothing indexed after its start
    return False


def cancel_mark(store: Store, segment_id: int, rec: dict[str, Any], why: str) -> None:
    """D5: keep marked footage the index or a hold claims again: drop the mark, not the
    bytes. Footage kept for a hold is indexed again from its own bytes in the same batch:
    kept but out of the index, no timeline, clip or check would show it. A tier that cannot
    be read now raises TierError, and the mark stays for the next run."""
    where = (
        rec["path"]
        if rec.get("location", "local") == "local"
        else (f"{rec['location']}/{rec['path']}")
    )
    b = Batch()
    b.delete(layout.garbage_key(segment_id))
    reindexed = why == REINDEXED or _index_again(store, segment_id, rec, b)
    store.index.audit(
        "delete_cancelled",
        "retention",
        {
            "camera": rec.get("camera"),
            "segment_id": segment_id,
            "from": format_time(rec["start_ns"]),
            "path": where,
            "reason": why,
            "indexed": reindexed,
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)


def _index_again(store: Store, segment_id: int, rec: dict[str, Any], b: Batch) -> bool:
    """Put a marked sealed segment's rows back into ``b`` from its own bytes (header,
    footer directory, trailer; a tiered one's chain link from its object), unless they
    cannot be read whole (its bytes stay: check names a file as an orphan) or other
    footage is indexed inside its span now (a trim's copy: its rows would overlap)."""
    location, path = rec.get("location", "local"), str(rec["path"])
    metadata: dict[str, str] = {}
    try:
        if location == "local":
            reader = SegmentReader.open(store.layout.path(path))
            size_bytes = reader.src.size()
        else:
            tier = store.tier(location)
            info = tier.head(path)
            if info is None:
                return False
            size_bytes, metadata = info.size_bytes, info.metadata or {}
            reader = SegmentReader(TierSource(tier, path, size_bytes), f"{location}/{path}")
        with reader as rd:
            meta, entries, trailer = rd.meta, rd.directory(), rd.trailer()
    except (CorruptSegment, NotFound):
        return False
    cam = store.index.camera_num(meta.camera, create=True)
    assert cam is not None
    start_ns = int(rec["start_ns"])
    end_ns = max((e.end_ns for e in entries), default=start_ns)
    if not entries or any(True for _c in store.index.chunks(cam, start_ns, end_ns)):
        return False
    # Its recorded damage (R6) stays out of the index, as before its deletion.
    damaged = tuple((int(o), int(n)) for o, n in rec.get("damaged", []))
    entries = [e for e in entries if e.offset not in {o for o, _n in damaged}]
    row = SegmentRow.sealed(
        cam,
        segment_id,
        entries,
        start_ns=start_ns,
        location=location,
        path=path,
        size_bytes=size_bytes,
        sha256=trailer.sha256.hex(),
        codecs=tuple(t.codec for t in meta.tracks),
        damaged=damaged,
    )
    carried = link_of_object(metadata)
    if carried is not None and carried[0] == meta.camera:
        row = row._replace(chain=carried[1])
    b.put_segment_and_chunks(row, entries)
    if location != "local":
        b.put_catalog_behind(cam, start_ns, location)  # (the shared catalog lists it again)
    return True


def garbage_record(
    path: str,
    camera: str,
    start_ns: int,
    end_ns: int,
    location: str,
    damaged: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """A garbage mark's record: what it removes, and its recorded damage (R6), which a
    segment a hold keeps (D5) takes back with it."""
    rec: dict[str, Any] = {"path": path, "camera": camera, "start_ns": start_ns, "end_ns": end_ns}
    if location != "local":
        rec["location"] = location
    if damaged:
        rec["damaged"] = [list(d) for d in damaged]
    return dumps_compact(rec)
