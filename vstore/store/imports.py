"""Unfinished imports (lifecycle F1-F5): the marker an import keeps in the index from before
its first segment until it reports done, and the segments it wrote, listed under the marker
in the same batch that opens each of them. A crashed import's footage is therefore known
for what it is, and running the same import again replaces it instead of being refused as
an overlap with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vstore.base import layout
from vstore.base.errors import UsageError
from vstore.base.jsonio import dumps_compact
from vstore.base.timebase import GAP_TOLERANCE_NS, WallNs, format_time
from vstore.index.time_index import Batch, SegmentRow
from vstore.store.garbage import delete_segment
from vstore.store.holds import list_holds
from vstore.store.store import Store


@dataclass
class UnfinishedImport:
    """An import that has not reported done: what it imports, and what it wrote so far."""

    camera: str
    camera_num: int
    start_ns: WallNs
    file: str
    started_ns: WallNs  # when it began (wall clock)
    segment_ids: list[int]
    size_bytes: int | None = None  # the file's size when it began (None: not recorded)


def begin(
    store: Store, camera: str, camera_num: int, start_ns: int, file: Path, size_bytes: int
) -> None:
    """F1: the marker is durable before the import opens its first segment."""
    doc = {
        "camera": camera,
        "file": str(file.absolute()),
        "size_bytes": size_bytes,
        "started_ns": store.clock.wall_ns(),
    }
    store.index.put_sync(layout.import_key(camera_num, start_ns), dumps_compact(doc))


def refuse_other_file(prior: UnfinishedImport, file: Path, size_bytes: int) -> None:
    """F4 replaces what an unfinished import wrote only when it is run again, from the same
    file: another recording at the same camera and start would delete footage nothing else
    holds, and the marker that says it is still to be imported."""
    same = prior.file == str(file.absolute()) and prior.size_bytes in (None, size_bytes)
    if not same:
        raise UsageError(
            f"an earlier import of {prior.file} into camera {prior.camera!r} at "
            f"{format_time(prior.start_ns)} did not finish: nothing was changed. Run that "
            "import again (the same file and --start) to replace what it stored, or give it "
            "up first (vstore import --abandon keep|discard, with its --camera and --start)"
        )


def finish(store: Store, camera_num: int, start_ns: int, b: Batch | None = None) -> None:
    """F3: the import is done (its footage sealed and synced): the marker and its list go,
    in one synced batch (with what ``b`` holds), before the import reports done."""
    b = b if b is not None else Batch()
    for key, _value in store.index.scan(layout.import_key(camera_num, start_ns)):
        b.delete(key)
    store.index.commit(b, sync=True)


def unfinished(store: Store) -> list[UnfinishedImport]:
    """Every import that has not reported done, with the segments it wrote."""
    out: list[UnfinishedImport] = []
    marker_len = len(layout.import_key(0, 0))
    for key, value in store.index.scan(layout.IMPORT_PREFIX):
        if len(key) == marker_len:
            doc = json.loads(value)
            cam, start = layout.decode_time_key(key)
            out.append(
                UnfinishedImport(
                    doc["camera"],
                    cam,
                    start,
                    doc["file"],
                    doc["started_ns"],
                    [],
                    doc.get("size_bytes"),
                )
            )
        elif out:
            out[-1].segment_ids.append(int.from_bytes(key[marker_len:], "big"))
    return out


def find(store: Store, camera_num: int, start_ns: int) -> UnfinishedImport | None:
    return next(
        (u for u in unfinished(store) if (u.camera_num, u.start_ns) == (camera_num, start_ns)),
        None,
    )


def replace(store: Store, prior: UnfinishedImport, by: str, reason: str = "import_replaced") -> int:
    """F4: before an import runs again, delete what the unfinished one wrote (through the
    deletion protocol, each deletion audited), then its marker. Refused, deleting nothing,
    when a legal hold covers any of it. Returns how many segments were deleted. F5: with
    ``reason`` ``import_discarded``, an import given up, its footage deleted."""
    with store.retention_lock:  # no hold placed between the check and the deletions
        rows = _rows(store, prior)
        holds = list_holds(store)
        for r in rows:
            for h in holds:
                if h.covers(prior.camera, r.start_ns, r.end_ns):
                    raise UsageError(
                        f"an earlier import of {prior.file} into camera {prior.camera!r} at "
                        f"{format_time(prior.start_ns)} did not finish, and hold {h.id} covers "
                        f"footage it wrote ({format_time(r.start_ns)} .. "
                        f"{format_time(r.end_ns)}): nothing was changed; release the hold to "
                        "import again, or keep what it stored (--abandon keep)"
                    )
        detail = {
            "reason": reason,
            "import_file": prior.file,
            "import_started": format_time(prior.started_ns),
        }
        for r in rows:
            delete_segment(store, r, prior.camera, by, detail)
        finish(store, prior.camera_num, prior.start_ns)
    return len(rows)


def mend_gaps(store: Store, camera_num: int, first_ns: int, end_ns: int) -> None:
    """An import that filled part of a gap (backfill) leaves the timeline's ``gap`` event of
    that gap true: what is left of it before the import is the gap the import recorded as
    it began; what is left after it (``end_ns`` to the footage after) is recorded anew, and
    the old event, which named the whole gap, goes."""
    before = store.index.chunk_before(camera_num, first_ns)
    scan_from = before.end_ns if before is not None else -(2**63)
    b, stale = Batch(), False
    for ev in store.index.events(camera_num, scan_from, first_ns + 1):
        to_ns = ev.detail.get("to_ns") if ev.kind == "gap" else None
        if not isinstance(to_ns, int) or to_ns <= first_ns + GAP_TOLERANCE_NS:
            continue  # (not a gap, or the gap before the import, which it recorded itself)
        b.delete(ev.key())
        stale = True
        if to_ns - end_ns > GAP_TOLERANCE_NS:
            rest = ev._replace(at_ns=end_ns, detail={**ev.detail, "from_ns": end_ns})
            b.put(rest.key(), rest.value())
    if stale:
        store.index.commit(b, sync=True)


def keep(store: Store, prior: UnfinishedImport, by: str) -> int:
    """F5: an import given up, what it stored kept as it is (every segment sealed at its
    last whole chunk, R2): its marker goes, audited. Returns how many segments it kept."""
    rows = _rows(store, prior)
    b = Batch()
    store.index.audit(
        "import_abandoned",
        by,
        {
            "camera": prior.camera,
            "file": prior.file,
            "start": format_time(prior.start_ns),
            "import_started": format_time(prior.started_ns),
            "kept_segments": [r.segment_id for r in rows],
        },
        store.clock.wall_ns(),
        b,
    )
    finish(store, prior.camera_num, prior.start_ns, b)  # (the record and the marker at once)
    return len(rows)


def _rows(store: Store, prior: UnfinishedImport) -> list[SegmentRow]:
    """The index rows of the segments the import wrote (all at or after its start): this
    store's own, never another store's object indexed here (its ids are its writer's, and
    may repeat one of ours: D6)."""
    ids = set(prior.segment_ids)
    return [
        r
        for r in store.index.segments(prior.camera_num, prior.start_ns, 2**63 - 1)
        if r.segment_id in ids and not r.foreign
    ]
