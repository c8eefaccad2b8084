"""The retention of a cluster's tiered footage as one job for the whole bucket (E1-E5 of
docs/design/cluster.md): planned from the shared catalog of record, so the footage of a store
that is gone is deleted on time too; run only by the member elected to it; the catalog first,
the bytes a delay later, with the holds checked at both steps; and each store's part, making
its index agree with what the deleter decided.

The state lives in the catalog objects themselves:
- an hour's expired entries move from ``segments`` to ``deleted`` (each with when, by which
  deleter and epoch, and when its object may go: ``due_ns``) by a conditional write, so no
  writer lists them again and no reader plans with them;
- the camera's summary notes the hour under ``retired`` (hour -> the earliest due time) in
  the write of its line that follows, and under ``settled`` (hour -> when) once every
  entry's object is gone or the entry was put back; a week on, an hour that lists nothing
  is deleted itself;
- at its due time an entry's object is deleted and the entry marked ``purged_ns``, unless a
  hold now covers it: then it goes back into ``segments``, marked ``restored``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vstore.base import layout
from vstore.base.errors import VstoreError
from vstore.base.jsonio import dumps_compact
from vstore.base.timebase import format_time
from vstore.index.segment_chain import removal_detail
from vstore.index.time_index import Batch, SegmentRow
from vstore.lifecycle.shared_catalog import (
    DELETED,
    RESTORED,
    HourTable,
    new_summary,
    parse_doc,
    parse_summary,
    put_entry,
    read_doc,
    read_summary,
    summarize,
)
from vstore.store import io_stats
from vstore.store.config import RetentionPolicy
from vstore.store.holds import Hold
from vstore.store.store import Store
from vstore.tier.base import BlobTier

RETIRED = "retired"  # summary: hour -> earliest due time of its entries not yet purged
SETTLED = "settled"  # summary: hour -> when its deletions were last settled
# A taken-out entry whose object a deleter is deleting (it wrote so first): a later run
# finishes its purge (its deletes failed), unless a hold covers it by then.
PURGING = "purging"
# How long a settled hour stays noted for stores to catch up with, and its object kept.
SETTLED_KEEP_NS = 7 * 86400 * 10**9
PARALLEL_CAMERAS = 16  # cameras planned and deleted at once


class NotDeleter(VstoreError):
    """This member is not (or no longer) the cluster's elected deleter: it stops at once."""


@dataclass(frozen=True)
class Deleter:
    """Who deletes tiered footage for the cluster: the member holding the retention key, its
    epoch (the key's create revision), and ``leads()``: whether it surely still does (asked
    of etcd before every write)."""

    member: str
    epoch: int
    leads: Callable[[], bool]

    def who(self) -> dict[str, Any]:
        return {"member": self.member, "epoch": self.epoch}


@dataclass
class BucketRetentionResult:
    """What the deleter's run did to the bucket (or, dry, would do)."""

    cameras: int = 0
    deleted_segments: int = 0  # taken out of the catalog (E3's first step)
    deleted_bytes: int = 0
    purged_segments: int = 0  # objects deleted (their delay over)
    purged_bytes: int = 0
    kept_for_holds: int = 0  # expired, kept because a hold covers them
    put_back: int = 0  # taken out, then a hold came before their objects went: listed again
    errors: list[str] = field(default_factory=list)
    full_pass: bool = False  # every camera's summary read (else only the cameras due)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def merge(self, other: BucketRetentionResult) -> None:
        """Add another part's counts and errors (one camera's) to these."""
        for k, v in other.__dict__.items():
            if k != "full_pass":
                setattr(self, k, getattr(self, k) + v)


def _due(entry: dict[str, Any], now_ns: int) -> bool:
    """Whether a taken-out entry's object is to go now (not purged, its delay over)."""
    return "purged_ns" not in entry and int(entry.get("due_ns", 0)) <= now_ns


def _held(holds: Iterable[Hold], camera: str, row: dict[str, Any]) -> bool:
    return any(h.covers(camera, int(row["start_ns"]), int(row["end_ns"])) for h in holds)


@dataclass
class _Memory:
    """What a deleter knows of each camera between its runs: (the earliest instant from which
    an entry not under a hold may expire: an entry's end, or the end of an hour not read;
    the earliest time it is to be read again for another reason: a purge due, a settled
    hour to forget, a camera with nothing left looked at again), None where there is none."""

    full_pass_ns: int
    cams: dict[str, tuple[int | None, int | None]]


# (tier url, member, epoch) -> what that deleter learnt (a new deleter starts with a full pass).
_memory: dict[tuple[str, str, int], _Memory] = {}
_memory_lock = threading.Lock()
# Every camera's summary is read at least this often: footage tiered late into hours older
# than what the deleter knew of a camera, new cameras, and footage whose hold was released
# are found then.
FULL_PASS_NS = 86400 * 10**9


def run_bucket_retention(
    store: Store,
    tier: BlobTier,
    deleter: Deleter,
    now_ns: int,
    delay_ns: int,
    policy_of: Callable[[str], RetentionPolicy],
    holds: list[Hold],
    *,
    by: str = "retention",
    dry_run: bool = False,
) -> BucketRetentionResult:
    """One run of the cluster's deleter over the cameras of the bucket's catalog: entries
    past their camera's tiered age (``policy_of``) and under no hold leave their hour's list
    (E3), and objects of entries taken out ``delay_ns`` ago or more are deleted, or put back
    when a hold now covers them (E4). Each step is recorded in ``store``'s audit log. Raises
    NotDeleter the moment this member is not the deleter any more.

    Planning reads one object per camera (its summary), too many for every run of a city: a
    deleter remembers when each camera next has something due, and reads only those cameras,
    except at a full pass (its first run, then daily, and every dry run)."""
    if not deleter.leads():
        raise NotDeleter(f"member {deleter.member} is not the cluster's deleter now")
    stopped: list[NotDeleter] = []
    key = (tier.url, deleter.member, deleter.epoch)
    with _memory_lock:
        mem = _memory.get(key)
    full = dry_run or mem is None or not 0 <= now_ns - mem.full_pass_ns < FULL_PASS_NS

    def one(cam: str) -> tuple[BucketRetentionResult, tuple[int | None, int | None]]:
        part = BucketRetentionResult(cameras=1)
        if stopped:  # (the deleter lost its election: no camera more)
            return part, (None, None)
        try:
            state = _camera(store, tier, cam, deleter, now_ns, delay_ns, policy_of(cam), holds,
                            by, dry_run, part)  # fmt: skip
            return part, state
        except NotDeleter as exc:
            stopped.append(exc)
        except VstoreError as exc:
            part.errors.append(f"camera {cam}: {exc}")
        return part, (None, now_ns)  # (an error: read again at the next run)

    def due(cam: str, state: tuple[int | None, int | None]) -> bool:
        base, purge = state
        if purge is not None and purge <= now_ns:
            return True
        age = policy_of(cam).age_limit_ns(tiered=True)
        return base is not None and bool(age) and base + age <= now_ns

    if full:
        cams = sorted(tier.list_dirs(layout.CATALOG_OBJECT_PREFIX + "/"))
    else:
        assert mem is not None
        cams = sorted(c for c, st in mem.cams.items() if due(c, st))
    res = BucketRetentionResult(full_pass=full)
    learnt: dict[str, tuple[int | None, int | None]] = {}
    # Cameras are independent (each its own objects): a city's thousands are planned and
    # deleted side by side, each request waiting on the object store, not on the CPU.
    with ThreadPoolExecutor(PARALLEL_CAMERAS) as pool:
        for cam, (part, state) in zip(cams, pool.map(one, cams), strict=True):
            res.merge(part)
            learnt[cam] = state
    if stopped:
        with _memory_lock:
            _memory.pop(key, None)
        raise stopped[0]
    if not dry_run:
        with _memory_lock:
            if full:
                for was in [k for k in _memory if k[0] == tier.url]:  # (former deleters')
                    del _memory[was]
                _memory[key] = _Memory(now_ns, learnt)
            else:
                assert mem is not None
                mem.cams.update(learnt)
    return res


def _camera(
    store: Store,
    tier: BlobTier,
    cam: str,
    deleter: Deleter,
    now_ns: int,
    delay_ns: int,
    policy: RetentionPolicy,
    holds: list[Hold],
    by: str,
    dry_run: bool,
    res: BucketRetentionResult,
) -> tuple[int | None, int | None]:
    """The deleter's work on one camera; what it then knows of it (``_Memory``)."""
    summary = read_summary(tier, cam) or {}
    retired = {int(h): int(t) for h, t in summary.get(RETIRED, {}).items()}
    due = {h for h, t in retired.items() if t <= now_ns}
    age_ns = policy.age_limit_ns(tiered=True)
    cutoff = now_ns - age_ns if age_ns else None
    base: int | None = None
    for hour in HourTable.of(summary).hours():
        # Whole hours only: footage is kept up to an hour past its age, and a city's cameras
        # cost the object store one pass an hour instead of one every run.
        if cutoff is None or hour + layout.HOUR_NS > cutoff:
            # (hours in order: nothing later expires before this one has wholly)
            end = hour + layout.HOUR_NS
            base = end if base is None else min(base, end)
            break
        moved, left = _retire(store, tier, cam, hour, cutoff, deleter, now_ns, delay_ns, holds,
                              by, dry_run, res, noted=hour in retired)  # fmt: skip
        if moved and delay_ns <= 0:
            due.add(hour)
        if left is not None:
            base = left if base is None else min(base, left)
    later = [t for h, t in retired.items() if h not in due]
    for hour in sorted(due):
        if not dry_run:
            nxt = _purge(store, tier, cam, hour, deleter, now_ns, holds, by, res)
            if nxt is not None:
                later.append(nxt)
    if not dry_run and delay_ns > 0 and res.deleted_segments:
        later.append(now_ns + delay_ns)
    if base is None and cutoff is not None:
        # Nothing listed is left to expire: footage tiered late (a node back after an outage)
        # may still come, so the camera is read again an hour on, not only at a full pass.
        later.append(now_ns + layout.HOUR_NS)
    for hour, settled_ns in sorted(summary.get(SETTLED, {}).items()):
        if int(settled_ns) + SETTLED_KEEP_NS > now_ns:
            later.append(int(settled_ns) + SETTLED_KEEP_NS)
        elif not dry_run:
            _forget(tier, cam, int(hour), deleter, now_ns)
    return base, min(later, default=None)


def _forget(tier: BlobTier, cam: str, hour: int, deleter: Deleter, now_ns: int) -> None:
    """An hour settled ``SETTLED_KEEP_NS`` ago that lists nothing any more: its object (by
    then a list of deleted entries only) is deleted, so a city's catalog does not keep one
    object per camera-hour forever. (S3 has no conditional delete: an owner that lists
    footage in so old an hour at this very moment loses the listing; its bytes and its
    store's row stay, and its `vstore check` writes the hour again, C11.)"""
    key = layout.catalog_object_key(cam, hour)
    doc = read_doc(tier, key)
    if doc is not None:
        _still_deleter(deleter, doc)
        if doc.get("segments") or any("purged_ns" not in e for e in doc.get(DELETED, [])):
            _note(tier, cam, hour, forget=True)  # (listed again since: not the deleter's now)
            return
        tier.delete(key)
    _note(tier, cam, hour, forget=True)


def _retire(
    store: Store,
    tier: BlobTier,
    cam: str,
    hour: int,
    cutoff: int,
    deleter: Deleter,
    now_ns: int,
    delay_ns: int,
    holds: list[Hold],
    by: str,
    dry_run: bool,
    res: BucketRetentionResult,
    noted: bool = False,
) -> tuple[bool, int | None]:
    """E3's first step for one hour: its entries that end by ``cutoff``, under no hold, move
    to its DELETED list. Whether any did, and the earliest end of those left not under a
    hold (None: none)."""
    key = layout.catalog_object_key(cam, hour)
    due_ns = now_ns + max(0, delay_ns)
    if dry_run:
        doc = read_doc(tier, key) or {}
        ends = []
        for e in doc.get("segments", []):
            if _held(holds, cam, e["row"]):
                res.kept_for_holds += int(e["row"]["end_ns"]) <= cutoff
            elif int(e["row"]["end_ns"]) <= cutoff:
                res.deleted_segments += 1
                res.deleted_bytes += int(e["row"]["size_bytes"])
            else:
                ends.append(int(e["row"]["end_ns"]))
        return False, min(ends, default=None)
    moved: list[dict[str, Any]] = []
    held = [0]
    left: list[int] = []

    def edit(doc: dict[str, Any]) -> bool:
        keep, go, held[0] = [], [], 0
        left.clear()
        for e in doc.get("segments", []):
            if _held(holds, cam, e["row"]):
                keep.append(e)
                held[0] += int(e["row"]["end_ns"]) <= cutoff
            elif int(e["row"]["end_ns"]) > cutoff:
                keep.append(e)
                left.append(int(e["row"]["end_ns"]))
            else:
                go.append(e)
        moved[:] = go
        if not go:
            return False
        stamp = {"deleted_ns": now_ns, "due_ns": due_ns, "deleter": deleter.who()}
        doc["segments"] = keep
        doc[DELETED] = [*doc.get(DELETED, []),
                        *({**{k: v for k, v in e.items() if k != RESTORED}, **stamp}
                          for e in go)]  # fmt: skip
        return True

    doc = _edit_hour(tier, key, deleter, edit) or {}
    res.kept_for_holds += held[0]
    nxt = min(left, default=None)
    pending = [int(e["due_ns"]) for e in doc.get(DELETED, []) if "purged_ns" not in e]
    # The hour is written first, then its summary line and its note in one write: a crash
    # between the two leaves the line as it was, so the hour is read again at the next full
    # pass, which notes what it finds taken out and not yet deleted (never left unowned).
    noting = _noting(hour, retired_due_ns=min(pending)) if pending else None
    if not moved:
        if noting is not None and not noted:
            _note(tier, cam, hour, retired_due_ns=min(pending))
        return False, nxt
    summarize(tier, cam, hour, doc, also=noting)
    b = Batch()
    for e in moved:
        row = e["row"]
        res.deleted_segments += 1
        res.deleted_bytes += int(row["size_bytes"])
        store.index.audit("delete", by, _record(cam, e, deleter, "catalog", {
            "reason": "tiered_max_age", "cutoff": format_time(cutoff),
            "objects_after": format_time(due_ns)}), now_ns, batch=b)  # fmt: skip
    store.index.commit(b, sync=True)
    return True, nxt


def _purge(
    store: Store,
    tier: BlobTier,
    cam: str,
    hour: int,
    deleter: Deleter,
    now_ns: int,
    holds: list[Hold],
    by: str,
    res: BucketRetentionResult,
) -> int | None:
    """E3's second step and E4 for one hour: each taken-out entry whose time has come loses
    its object, unless a hold covers it now: then it is listed again (its object legal hold
    set first, where the bucket has Object Lock). The objects to go are first marked
    ``purging`` (with the deleter) by a conditional write of the hour, and only then
    deleted: a deleter paused past its election before that write finds a newer deleter's
    and deletes nothing; after it, its deletes of what a newer one put back are refused by
    the object legal holds. When its next entry comes due (None: none left)."""
    key = layout.catalog_object_key(cam, hour)
    doc = read_doc(tier, key)
    if doc is None:
        _note(tier, cam, hour, settled_ns=now_ns)
        return None
    _still_deleter(deleter, doc)  # (a newer deleter's hour: not one object of it deleted)
    if store.config.tier.legal_hold:
        # What a hold puts back gets its object legal hold first: a deleter paused past its
        # election after it marked these `purging` finds its deletes refused by the object
        # store (without Object Lock that window stays: cluster.md E4).
        for e in doc.get(DELETED, []):
            if _due(e, now_ns) and _held(holds, cam, e["row"]):
                try:
                    tier.set_legal_hold(str(e["row"]["path"]), True)
                except VstoreError:
                    pass  # (its store's hold sync sets it; the entry is put back either way)
    back: dict[str, dict[str, Any]] = {}
    going: dict[str, dict[str, Any]] = {}

    def claim(doc: dict[str, Any]) -> bool:
        back.clear()
        going.clear()
        deleted, segs = [], list(doc.get("segments", []))
        for e in doc.get(DELETED, []):
            path = str(e["row"]["path"])
            if not _due(e, now_ns):
                deleted.append(e)
            elif _held(holds, cam, e["row"]):  # (marked purging too: its deletes failed)
                back[path] = e
                restored = {k: v for k, v in e.items()
                            if k not in ("deleted_ns", "due_ns", "deleter")}  # fmt: skip
                segs.append({**restored, RESTORED: {**deleter.who(), "at_ns": now_ns}})
            else:  # (marked by an earlier run whose deletes failed: finished here)
                going[path] = e
                deleted.append({PURGING: {**deleter.who(), "at_ns": now_ns}, **e})
        if not back and all(PURGING in e for e in going.values()):
            return False
        doc["segments"] = sorted(segs, key=lambda e: (e["row"]["start_ns"], e["store"]))
        doc[DELETED] = deleted
        return True

    doc = _edit_hour(tier, key, deleter, claim) or doc
    gone: dict[str, dict[str, Any]] = {}
    if going:
        if not deleter.leads():
            raise NotDeleter(f"member {deleter.member} is not the cluster's deleter now")
        # In batches (a missing object is not an error: a rerun after a crash). One refused
        # (an object legal hold, the store failing) stays marked for the next run.
        failed = tier.delete_many(list(going))
        for path, exc in failed.items():
            res.errors.append(f"{tier.url}/{path}: not deleted ({exc}); tried again next run")
        gone = {p: e for p, e in going.items() if p not in failed}

    def purged(doc: dict[str, Any]) -> bool:
        doc[DELETED] = [
            {**{k: v for k, v in e.items() if k not in ("chunks", PURGING)}, "purged_ns": now_ns}
            if str(e["row"]["path"]) in gone and "purged_ns" not in e
            else e
            for e in doc.get(DELETED, [])
        ]
        return True

    if gone:
        doc = _edit_hour(tier, key, deleter, purged) or doc
    left = [int(e.get("due_ns", 0)) for e in doc.get(DELETED, []) if "purged_ns" not in e]
    if gone or back:
        summarize(tier, cam, hour, doc, also=_noting(hour, retired_due_ns=min(left), replace=True)
                  if left else _noting(hour, settled_ns=now_ns))  # fmt: skip
        b = Batch()
        for e in gone.values():
            res.purged_segments += 1
            res.purged_bytes += int(e["row"]["size_bytes"])
            io_stats.DELETED.add("cluster_deleter", int(e["row"]["size_bytes"]))
            store.index.audit("purge", by, _record(cam, e, deleter, "objects", {}), now_ns,
                              batch=b)  # fmt: skip
        for e in back.values():
            res.put_back += 1
            store.index.audit("restore", by, _record(cam, e, deleter, "held", {
                "reason": "a hold covers it: listed again, its object kept"}), now_ns,
                batch=b)  # fmt: skip
        store.index.commit(b, sync=True)
        return min(left, default=None)
    if left:
        _note(tier, cam, hour, retired_due_ns=min(left), replace=True)
        return min(left)
    _note(tier, cam, hour, settled_ns=now_ns)
    return None


def _edit_hour(
    tier: BlobTier, key: str, deleter: Deleter, edit: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """Change an hour object as the deleter, by a conditional write (``edit`` changes the
    newest version in place and says whether to write it; asked again when another writer
    came first). The hour as last read or written; None when there is none."""
    last: dict[str, Any] = {}

    def change(data: bytes | None) -> bytes | None:
        doc = parse_doc(tier, key, data)
        if doc is None:
            return None
        _still_deleter(deleter, doc)
        last["doc"] = doc
        if not edit(doc):
            return None
        doc["deleter"] = deleter.who()
        return dumps_compact(doc)

    tier.update(key, change)
    return last.get("doc")


def _still_deleter(deleter: Deleter, doc: dict[str, Any]) -> None:
    """Before every write: still elected, and no newer deleter wrote this hour."""
    newer = int((doc.get("deleter") or {}).get("epoch", 0))
    if newer > deleter.epoch:
        raise NotDeleter(f"a newer deleter (epoch {newer} > {deleter.epoch}) wrote the catalog")
    if not deleter.leads():
        raise NotDeleter(f"member {deleter.member} is not the cluster's deleter now")


def _record(
    cam: str, e: dict[str, Any], deleter: Deleter, step: str, extra: dict[str, Any]
) -> dict[str, Any]:
    row = e["row"]
    return {
        "camera": cam,
        "store": e.get("store"),
        "segment_id": row.get("segment_id"),
        "from": format_time(int(row["start_ns"])),
        "to": format_time(int(row["end_ns"])),
        "bytes": row.get("size_bytes"),
        "sha256": row.get("sha256"),
        "location": row.get("location"),
        "path": row.get("path"),
        "deleter": deleter.who(),
        "step": step,
        **extra,
    }


def _noting(
    hour: int,
    *,
    retired_due_ns: int | None = None,
    settled_ns: int | None = None,
    replace: bool = False,
    forget: bool = False,
) -> Callable[[dict[str, Any]], bool]:
    """A change of a camera's summary that notes an hour as having deletions due (RETIRED,
    the earliest due time kept unless ``replace``) or as settled (SETTLED), or ``forget``s
    its note; it answers whether it changed anything."""
    h = str(hour)

    def change(summary: dict[str, Any]) -> bool:
        retired = summary.setdefault(RETIRED, {})
        settled = summary.setdefault(SETTLED, {})
        before = (retired.get(h), settled.get(h))
        if retired_due_ns is not None:
            was = retired.get(h)
            retired[h] = retired_due_ns if replace or was is None else min(int(was), retired_due_ns)
        if settled_ns is not None:
            retired.pop(h, None)
            settled[h] = settled_ns
        if forget:
            settled.pop(h, None)
        return (retired.get(h), settled.get(h)) != before

    return change


def _note(tier: BlobTier, cam: str, hour: int, **what: Any) -> None:
    """Write ``_noting(hour, **what)`` to the camera's summary (if it changes it)."""
    key = layout.catalog_summary_key(cam)
    noting = _noting(hour, **what)

    def change(data: bytes | None) -> bytes | None:
        summary = parse_summary(tier, cam, data) or new_summary(cam)
        if not noting(summary):
            return None
        HourTable.of(summary).store(summary)  # (an old-form summary is written anew)
        return dumps_compact(summary)

    tier.update(key, change)


# --- each store's part (E5) --------------------------------------------------------------


@dataclass
class CatchUp:
    """What a store's index took from the deleter's decisions."""

    dropped: int = 0  # tiered rows the deleter took out of the catalog, out of the index
    taken_back: int = 0  # rows it put back (a hold came), in the index again
    errors: list[str] = field(default_factory=list)


def catch_up(
    store: Store, tier: BlobTier, by: str = "retention", *, dry_run: bool = False
) -> CatchUp:
    """E5: make this store's index agree with the deleter's decisions in ``tier``'s catalog:
    its tiered rows an hour's DELETED list names leave the index (their objects are the
    deleter's to delete: no garbage mark; the audit record names the deleter), so do the
    rows of other stores' objects it indexed (``rebuild-index``) that the list names, and
    its entries the deleter put back come back into it. Only the hours the camera's summary says
    changed are read (noted as retired or settled, no longer listed, or listing fewer
    segments than this store has there). ``dry_run``: only count what it would do."""
    out = CatchUp()
    for cam, num in store.index.cameras():
        rows_by_hour: dict[int, list[SegmentRow]] = {}
        for r in store.index.segments(num):
            if r.location == tier.url and r.state == "sealed":
                rows_by_hour.setdefault(layout.catalog_hour_ns(r.start_ns), []).append(r)
        try:
            summary = read_summary(tier, cam)
        except VstoreError as exc:
            out.errors.append(f"camera {cam}: {exc}")
            continue
        if summary is None:
            continue
        noted = {int(h) for h in (*summary.get(RETIRED, {}), *summary.get(SETTLED, {}))}
        table = HourTable.of(summary)
        for hour in sorted(set(rows_by_hour) | noted):
            rows = rows_by_hour.get(hour, [])
            line = table.line(hour)
            if hour not in noted and line is not None and int(line["segments"]) >= len(rows):
                continue
            try:
                _catch_up_hour(store, tier, cam, num, hour, rows, by, out, dry_run)
            except VstoreError as exc:
                out.errors.append(f"camera {cam} hour {format_time(hour)}: {exc}")
    return out


def _take_back_view(
    store: Store,
    tier: BlobTier,
    cam: str,
    num: int,
    e: dict[str, Any],
    by: str,
    now_ns: int,
    b: Batch,
    out: CatchUp,
) -> None:
    """Another store's segment this index dropped when the deleter took it, listed again
    (put back for a hold): indexed again as that store's (under a fresh id), its drop note
    gone."""
    path = str(e["row"]["path"])
    note = layout.view_dropped_key(num, path)
    if store.index.get(note) is None:
        return  # (never in this index: its view of that store is not this store's to widen)
    row = put_entry(b, e, num, store.index.new_segment_id(), owner=str(e.get("store", "")),
                    location=tier.url)  # fmt: skip
    b.delete(note)
    store.index.audit("restore", by, {
        "camera": cam, "segment_id": row.segment_id, "from": format_time(row.start_ns),
        "to": format_time(row.end_ns), "location": row.location,
        "written_by_store": row.owner,
        "reason": "the cluster's deleter put it back (a hold covers it)",
        "deleter": e.get(RESTORED) or "put back"}, now_ns, batch=b)  # fmt: skip
    out.taken_back += 1


def _catch_up_hour(
    store: Store,
    tier: BlobTier,
    cam: str,
    num: int,
    hour: int,
    rows: list[SegmentRow],
    by: str,
    out: CatchUp,
    dry_run: bool = False,
) -> None:
    doc = read_doc(tier, layout.catalog_object_key(cam, hour))
    if doc is None:
        # An hour the deleter forgot (settled long ago): rows whose objects are gone too were
        # deleted by it. (One whose object is there was never listed: its hour is to write.)
        doc = {DELETED: [{"store": r.owner or store.uuid, "row": {"path": r.path},
                          "deleter": "unknown (its catalog hour was forgotten)"}
                         for r in rows if tier.head(r.path) is None]}  # fmt: skip
    # By object path alone (unique: a key names its writer): an adopted row's entry may
    # still stand under the store that wrote it.
    deleted = {str(e["row"]["path"]): e for e in doc.get(DELETED, [])}
    have = {r.path for r in rows if not r.foreign}
    before = out.dropped + out.taken_back
    b = Batch()
    now_ns = store.clock.wall_ns()
    for r in rows:
        e = deleted.get(r.path)
        if e is None:
            continue
        for c in store.index.segment_chunks(r):
            b.delete(c.key())
        b.delete(r.key())
        store.index.audit("delete", by, {
            "camera": cam, "segment_id": r.segment_id, "from": format_time(r.start_ns),
            "to": format_time(r.end_ns), "bytes": r.size_bytes, "sha256": r.sha256,
            "location": r.location, "reason": "deleted by the cluster's deleter",
            "deleter": e.get("deleter"), "objects": "the deleter's to delete",
            **({"written_by_store": r.owner} if r.foreign else {}),
            **removal_detail(cam, r)}, now_ns, batch=b)  # fmt: skip
        if r.foreign:  # (a view of it: taken back if the deleter puts it back)
            b.put(layout.view_dropped_key(num, r.path), dumps_compact({"store": r.owner}))
        out.dropped += 1
    viewed = {r.path for r in rows if r.foreign}
    for e in doc.get("segments", []):
        path = str(e["row"]["path"])
        if e.get("store") != store.uuid and path not in viewed:
            _take_back_view(store, tier, cam, num, e, by, now_ns, b, out)  # (if it dropped it)
        if e.get("store") != store.uuid or not e.get(RESTORED) or path in have:
            continue
        try:
            sid = int(e["row"]["segment_id"])  # (this store's own id: it is its segment)
        except (KeyError, TypeError, ValueError) as exc:
            raise VstoreError(f"a damaged catalog entry ({exc})") from None
        row = put_entry(b, e, num, sid)
        store.index.audit("restore", by, {
            "camera": cam, "segment_id": sid, "from": format_time(row.start_ns),
            "to": format_time(row.end_ns), "bytes": row.size_bytes, "location": row.location,
            "reason": "the cluster's deleter put it back (a hold covers it)",
            "deleter": e.get(RESTORED)}, now_ns, batch=b)  # fmt: skip
        # Its hour is written again from the index: the entry is then this store's own, no
        # longer one kept for it because the deleter put it back.
        b.put_catalog_behind(num, row.start_ns, tier.url)
        out.taken_back += 1
    if out.dropped + out.taken_back > before and not dry_run:
        store.index.commit(b, sync=True)
