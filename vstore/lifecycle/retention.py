"""Retention: which footage to delete (a pure planner) and deleting it crash-safely.

``plan_retention`` is a pure function of the catalog, the holds, the policies, the clock and
the disk usage; it never selects a segment that overlaps an active legal hold, one being
written, or one an open clip is reading. ``apply_plan`` deletes through the garbage protocol
(docs/design/lifecycle.md D1-D4): mark in the index, remove the file, clear the mark.
Holds and every deletion are recorded in the permanent audit log.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vstore.base import layout
from vstore.base.errors import CorruptSegment, NotFound, UsageError, VstoreError
from vstore.base.timebase import TimeRange, format_duration, format_time
from vstore.index.time_index import Batch, ChunkRow, SegmentRow
from vstore.service.control import job
from vstore.store.config import RetentionConfig, RetentionPolicy
from vstore.store.lease import LeaseSet

# --- holds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """A legal hold: footage of one camera in [from_ns, to_ns) that nothing may delete."""

    id: int
    camera: str
    from_ns: int
    to_ns: int
    reason: str
    by: str
    created_ns: int
    released_ns: int | None = None
    released_by: str | None = None
    release_reason: str | None = None  # holds released before it was stored have None

    @property
    def active(self) -> bool:
        return self.released_ns is None

    def covers(self, camera: str, start_ns: int, end_ns: int) -> bool:
        return (
            self.active
            and camera == self.camera
            and start_ns < self.to_ns
            and end_ns > self.from_ns
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera,
            "from": format_time(self.from_ns),
            "to": format_time(self.to_ns),
            "from_ns": self.from_ns,
            "to_ns": self.to_ns,
            "reason": self.reason,
            "by": self.by,
            "created": format_time(self.created_ns),
            "active": self.active,
            "released": format_time(self.released_ns) if self.released_ns else None,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }

    def record(self) -> bytes:
        import json

        return json.dumps(
            {
                k: getattr(self, k)
                for k in (
                    "id",
                    "camera",
                    "from_ns",
                    "to_ns",
                    "reason",
                    "by",
                    "created_ns",
                    "released_ns",
                    "released_by",
                    "release_reason",
                )
            }
        ).encode()


def list_holds(store: Any, include_released: bool = False) -> list[Hold]:
    holds = [Hold(**h) for h in store.index.holds()]
    return holds if include_released else [h for h in holds if h.active]


def covering_holds(store: Any, camera: str, start_ns: int, end_ns: int) -> list[Hold]:
    """The active holds that overlap [start_ns, end_ns) of a camera."""
    return [h for h in list_holds(store) if h.covers(camera, start_ns, end_ns)]


@dataclass
class ObjectHoldResult:
    """What mirroring vstore holds onto S3 object legal holds did (lifecycle H4)."""

    held: int = 0  # objects now under an object legal hold
    lifted: int = 0  # objects whose hold was lifted (no active vstore hold covers them)
    unsupported: int = 0  # objects on tiers without object lock (the index hold still binds)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "lifted": self.lifted,
            "unsupported": self.unsupported,
            "errors": self.errors,
        }


def sync_object_holds(
    store: Any, camera: str | None = None, from_ns: int = 0, to_ns: int = 2**63 - 1
) -> ObjectHoldResult:
    """Make the object legal holds of tiered segments in a range match the active vstore
    holds: ON where a hold covers the segment, OFF where none does. The index hold is the
    authority; this is a second lock that the object store itself enforces. Idempotent."""
    out = ObjectHoldResult()
    if not store.config.tier.legal_hold:
        return out
    holds = list_holds(store)
    for cam, num in store.index.cameras():
        if camera is not None and cam != camera:
            continue
        for r in store.index.segments(num, from_ns, to_ns):
            if r.location == "local" or not (r.start_ns < to_ns and r.end_ns > from_ns):
                continue
            if r.foreign:
                continue  # another store's object: its holds are that store's to set (D6)
            want = any(h.covers(cam, r.start_ns, r.end_ns) for h in holds)
            try:
                if not store.tier(r.location).set_legal_hold(r.path, want):
                    out.unsupported += 1
                elif want:
                    out.held += 1
                else:
                    out.lifted += 1
            except VstoreError as exc:
                out.errors.append(f"{r.location}/{r.path}: {exc}")
    return out


def _mirror(store: Any, hold: Hold, what: str) -> None:
    res = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
    if res.errors:
        from vstore.base.errors import TierError

        err = TierError(
            f"hold #{hold.id} is {what} in the index, but {len(res.errors)} tiered object(s) "
            f"could not be updated ({res.errors[0]}); run `vstore hold sync` when the object "
            "store is reachable"
        )
        err.hold = hold  # type: ignore[attr-defined]
        raise err


def add_hold(
    store: Any,
    camera: str,
    from_ns: int,
    to_ns: int,
    reason: str,
    by: str,
    *,
    mirror: bool = True,
) -> Hold:
    """Record a hold (synced, audited), then put S3 object legal holds on the tiered
    segments it overlaps (mirror; a TierError then means the hold is recorded but some
    objects could not be held: `sync_object_holds` retries)."""
    TimeRange(from_ns, to_ns)
    layout.validate_camera_id(camera)
    if not reason.strip():
        raise UsageError("a hold needs a reason")
    if not by.strip():
        raise UsageError("a hold needs the name of who places it (--by)")
    with store.retention_lock:  # never between a retention run's plan and its deletions
        hold = Hold(
            store.index.new_hold_id(),
            camera,
            from_ns,
            to_ns,
            reason.strip(),
            by.strip(),
            store.clock.wall_ns(),
        )
        b = Batch()
        b.put(layout.hold_key(hold.id), hold.record())
        store.index.audit("hold_add", hold.by, hold.as_json(), hold.created_ns, batch=b)
        store.index.commit(b, sync=True)
    if mirror:
        _mirror(store, hold, "recorded")
    return hold


def release_hold(
    store: Any, hold_id: int, by: str, reason: str = "", *, mirror: bool = True
) -> Hold:
    """Release a hold (synced, audited); object legal holds that no other active hold
    needs are lifted (mirror)."""
    if not by.strip():
        raise UsageError("releasing a hold needs the name of who releases it (--by)")
    # An id no hold can have (hold ids count up from 1 in 8 bytes) is simply not found.
    raw = store.index.get(layout.hold_key(hold_id)) if 0 < hold_id < 1 << 64 else None
    if raw is None:
        raise NotFound(f"no hold #{hold_id}")
    import json

    hold = Hold(**json.loads(raw))
    if not hold.active:
        raise UsageError(
            f"hold #{hold_id} was already released by {hold.released_by} at "
            f"{format_time(hold.released_ns or 0)}"
        )
    from dataclasses import replace

    done = replace(
        hold, released_ns=store.clock.wall_ns(), released_by=by.strip(), release_reason=reason
    )
    b = Batch()
    b.put(layout.hold_key(hold_id), done.record())
    store.index.audit(
        "hold_release",
        done.released_by or "",
        done.as_json(),
        done.released_ns or 0,
        batch=b,
    )
    store.index.commit(b, sync=True)
    if mirror:
        _mirror(store, done, "released")
    return done


# --- planning (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentInfo:
    camera: str
    camera_num: int
    segment_id: int
    start_ns: int
    end_ns: int
    size_bytes: int
    path: str
    state: str = "sealed"
    location: str = "local"  # or the URL of the tier holding the object

    @property
    def tiered(self) -> bool:
        return self.location != "local"


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int


@dataclass
class Deletion:
    segment: SegmentInfo
    reason: str  # "max_age" | "max_bytes" | "watermark"


REASONS = ("", "max_age", "max_bytes", "watermark")


class SegmentTable:
    """A columnar catalog (NumPy arrays, one row per segment): planning a month of 100
    cameras means millions of segments, too many to plan as Python objects."""

    def __init__(
        self,
        cameras: list[str],
        cam_idx: Any,
        camera_num: Any,
        segment_id: Any,
        start_ns: Any,
        end_ns: Any,
        size_bytes: Any,
        sealed: Any,
        paths: list[str] | None = None,
        tiered: Any = None,
        locations: list[str] | None = None,
    ) -> None:
        import numpy as np

        self.cameras = cameras
        self.cam_idx = np.asarray(cam_idx, dtype=np.int32)
        self.camera_num = np.asarray(camera_num, dtype=np.int64)
        self.segment_id = np.asarray(segment_id, dtype=np.int64)
        self.start_ns = np.asarray(start_ns, dtype=np.int64)
        self.end_ns = np.asarray(end_ns, dtype=np.int64)
        self.size_bytes = np.asarray(size_bytes, dtype=np.int64)
        self.sealed = np.asarray(sealed, dtype=bool)
        self.paths = paths
        self.tiered = (
            np.zeros(len(self.start_ns), dtype=bool)
            if tiered is None
            else np.asarray(tiered, dtype=bool)
        )
        self.locations = locations

    def __len__(self) -> int:
        return len(self.start_ns)

    @classmethod
    def from_infos(cls, infos: Iterable[SegmentInfo]) -> SegmentTable:
        rows = list(infos)
        names = sorted({s.camera for s in rows})
        pos = {c: i for i, c in enumerate(names)}
        return cls(
            names,
            [pos[s.camera] for s in rows],
            [s.camera_num for s in rows],
            [s.segment_id for s in rows],
            [s.start_ns for s in rows],
            [s.end_ns for s in rows],
            [s.size_bytes for s in rows],
            [s.state == "sealed" for s in rows],
            [s.path for s in rows],
            [s.tiered for s in rows],
            [s.location for s in rows],
        )

    def row(self, i: int) -> SegmentInfo:
        return SegmentInfo(
            self.cameras[int(self.cam_idx[i])],
            int(self.camera_num[i]),
            int(self.segment_id[i]),
            int(self.start_ns[i]),
            int(self.end_ns[i]),
            int(self.size_bytes[i]),
            self.paths[i] if self.paths is not None else "",
            "sealed" if self.sealed[i] else "open",
            self.locations[i] if self.locations is not None else "local",
        )


class RetentionPlan:
    """The planned deletions, as row indices into the catalog (materialized on demand)."""

    def __init__(
        self,
        now_ns: int,
        table: SegmentTable | None = None,
        rows: Any = None,
        reasons: Any = None,
        held_rows: Any = None,
    ) -> None:
        import numpy as np

        self.now_ns = now_ns
        self.table = table if table is not None else SegmentTable.from_infos([])
        self.rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
        self.reasons = np.asarray(reasons if reasons is not None else [], dtype=np.int8)
        self.held_rows = np.asarray(held_rows if held_rows is not None else [], dtype=np.int64)
        self.watermark_needed_bytes = 0
        self.watermark_unmet_bytes = 0  # still missing after deleting all unheld footage
        self.clock_warning = ""  # why ages were counted from a capped time (K1)
        self.watermark_why = ""  # why the watermark cannot be met, when it cannot
        # What decided it, recorded with each deletion: the run's overrides and each camera's
        # policy as resolved (set by run_retention).
        self.overrides: dict[str, Any] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.trim_gain_bytes = 0  # what the planned trims free (an estimate by time)
        self.trim_rows = np.zeros(0, dtype=np.int64)  # expired but held: keep held chunks only
        self._deletions: list[Deletion] | None = None

    @property
    def deletions(self) -> list[Deletion]:
        if self._deletions is None:
            self._deletions = [
                Deletion(self.table.row(int(i)), REASONS[int(r)])
                for i, r in zip(self.rows, self.reasons, strict=True)
            ]
        return self._deletions

    @property
    def trims(self) -> list[SegmentInfo]:
        return [self.table.row(int(i)) for i in self.trim_rows]

    @property
    def kept_for_holds(self) -> list[SegmentInfo]:
        return [self.table.row(int(i)) for i in self.held_rows]

    @property
    def bytes(self) -> int:
        return int(self.table.size_bytes[self.rows].sum()) if len(self.rows) else 0

    def by_camera(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        t = self.table
        for d in self.deletions if len(self.rows) < 100_000 else []:
            c = out.setdefault(
                d.segment.camera,
                {"segments": 0, "bytes": 0, "from_ns": None, "to_ns": None, "reasons": {}},
            )
            c["segments"] += 1
            c["bytes"] += d.segment.size_bytes
            c["from_ns"] = min(c["from_ns"] or d.segment.start_ns, d.segment.start_ns)
            c["to_ns"] = max(c["to_ns"] or d.segment.end_ns, d.segment.end_ns)
            c["reasons"][d.reason] = c["reasons"].get(d.reason, 0) + 1
        if len(self.rows) >= 100_000:  # summarize without materializing millions of rows
            for ci in set(t.cam_idx[self.rows].tolist()):
                sel = self.rows[t.cam_idx[self.rows] == ci]
                out[t.cameras[ci]] = {
                    "segments": len(sel),
                    "bytes": int(t.size_bytes[sel].sum()),
                    "from_ns": int(t.start_ns[sel].min()),
                    "to_ns": int(t.end_ns[sel].max()),
                    "reasons": {},
                }
        return out

    def as_json(self) -> dict[str, Any]:
        cams = self.by_camera()
        for c in cams.values():
            c["from"] = format_time(c["from_ns"])
            c["to"] = format_time(c["to_ns"])
        return {
            "now": format_time(self.now_ns),
            "segments": len(self.rows),
            "bytes": self.bytes,
            "cameras": cams,
            "kept_for_holds": len(self.held_rows),
            "trims": len(self.trim_rows),
            "trim_segments": [
                {
                    "camera": s.camera,
                    "segment_id": s.segment_id,
                    "from": format_time(s.start_ns),
                    "to": format_time(s.end_ns),
                    "bytes": s.size_bytes,
                }
                for s in self.trims[:1000]
            ],
            "trim_estimated_freed_bytes": self.trim_gain_bytes,
            "watermark_why": self.watermark_why or None,
            "watermark_needed_bytes": self.watermark_needed_bytes,
            "watermark_unmet_bytes": self.watermark_unmet_bytes,
            "clock_warning": self.clock_warning or None,
        }


def plan_retention(
    segments: SegmentTable | Iterable[SegmentInfo],
    holds: Iterable[Hold],
    policy_of: Callable[[str], RetentionPolicy],
    now_ns: int,
    *,
    disk: DiskUsage | None = None,
    min_free_bytes: int = 0,
    leased: frozenset[int] = frozenset(),
) -> RetentionPlan:
    """Pure: the segments to delete, oldest first per rule. Never a held, open or leased one.

    Vectorized with NumPy over a columnar catalog: per camera, age (tiered footage by its own
    age when the policy has one) then the byte budget (hot and tiered bytes together); then
    the store-wide disk watermark over the local footage left, oldest first across cameras.
    Segments that a hold overlaps are trimmed to the held chunks (not kept whole) when they
    expire, or when the byte budget or the watermark cannot be met without them.
    """
    import numpy as np

    t = segments if isinstance(segments, SegmentTable) else SegmentTable.from_infos(segments)
    holds = [h for h in holds if h.active]
    n = len(t)
    order = np.lexsort((t.start_ns, t.cam_idx))  # by camera, then time
    cam_sorted = t.cam_idx[order]
    bounds = np.searchsorted(cam_sorted, np.arange(len(t.cameras) + 1))
    usable = t.sealed.copy()
    if leased:
        usable &= ~np.isin(t.segment_id, np.fromiter(leased, dtype=np.int64))
    held = np.zeros(n, dtype=bool)
    cam_pos = {c: i for i, c in enumerate(t.cameras)}
    for h in holds:
        ci = cam_pos.get(h.camera)
        if not h.active or ci is None:
            continue
        idx = order[bounds[ci] : bounds[ci + 1]]
        hit = (t.start_ns[idx] < h.to_ns) & (t.end_ns[idx] > h.from_ns)
        held[idx[hit]] = True
    free = usable & ~held
    chosen_rows: list[Any] = []
    chosen_reasons: list[Any] = []
    trim_rows: list[Any] = []
    taken = np.zeros(n, dtype=bool)
    for ci, cam in enumerate(t.cameras):
        idx = order[bounds[ci] : bounds[ci + 1]]
        if not len(idx):
            continue
        pol = policy_of(cam)
        f = free[idx]
        hot_age, cold_age = pol.age_limit_ns(False), pol.age_limit_ns(True)
        if hot_age is not None or cold_age is not None:
            never = np.iinfo(np.int64).min
            cut_hot = now_ns - hot_age if hot_age is not None else never
            cut_cold = now_ns - cold_age if cold_age is not None else never
            expired = t.end_ns[idx] <= np.where(t.tiered[idx], cut_cold, cut_hot)
            age = idx[f & expired]
            taken[age] = True
            chosen_rows.append(age)
            chosen_reasons.append(np.full(len(age), 1, dtype=np.int8))
            # Expired but held: trimmed to the chunks the holds cover (not kept whole). A tiered
            # one stays whole until released: its object is under an S3 legal hold, and
            # trimming would mean rewriting evidence just to save one segment's bytes.
            trim_rows.append(idx[usable[idx] & held[idx] & expired & ~t.tiered[idx]])
        if pol.max_bytes is not None:
            total = int(t.size_bytes[idx].sum() - t.size_bytes[idx][taken[idx]].sum())
            excess = total - pol.max_bytes
            if excess > 0:
                cand = idx[f & ~taken[idx]]
                cs = np.cumsum(t.size_bytes[cand])
                k = int(np.searchsorted(cs, excess)) + 1  # smallest prefix covering excess
                sel = cand[:k]
                taken[sel] = True
                chosen_rows.append(sel)
                chosen_reasons.append(np.full(len(sel), 2, dtype=np.int8))
                if int(t.size_bytes[sel].sum()) < excess:
                    # Still over budget with only held footage left: trim the held segments
                    # to the chunks their holds pin (a hold pins chunks, not segments).
                    trim_rows.append(idx[usable[idx] & held[idx] & ~t.tiered[idx]])
    # Only deleting local footage frees the disk.
    plan_bytes = sum(int(t.size_bytes[r][~t.tiered[r]].sum()) for r in chosen_rows)
    needed = unmet = 0
    watermark_why = ""
    if disk is not None and min_free_bytes > 0:
        needed = max(0, min_free_bytes - disk.free_bytes)
        need = needed - plan_bytes
        if need > 0:
            # Only local footage frees the disk; oldest of any camera first (store-wide).
            cand = np.nonzero(free & ~taken & ~t.tiered)[0]
            cand = cand[np.lexsort((t.cam_idx[cand], t.start_ns[cand]))]
            cs = np.cumsum(t.size_bytes[cand])
            unheld = int(cs[-1]) if len(cs) else 0
            # Held segments free what their holds leave (an estimate by time; S2).
            hcand = np.nonzero(usable & held & ~t.tiered & ~taken)[0]
            hcand = hcand[np.argsort(t.start_ns[hcand], kind="stable")]
            gain = _trim_gains(t, hcand, holds)
            if unheld + int(gain.sum()) < need:
                # S2: even all of it would not meet the target (another program fills the
                # disk, or what is left is held or being read): deleting would lose footage
                # and free too little. Nothing goes; recording stops as declared.
                unmet = need
                local = usable & ~t.tiered & ~taken
                if not (~t.tiered).any():
                    why = "there is no footage on this disk to delete"
                elif not (local & free).any() and not len(hcand):
                    why = "what is left is being written or read"
                elif unheld == 0 and not int(gain.sum()):
                    why = "only held footage is left"
                else:
                    why = (
                        f"deleting every unheld, unread segment ({_mib(unheld)}) and trimming "
                        f"held ones would free less than the {_mib(need)} missing: other data "
                        "fills the disk"
                    )
                watermark_why = why
            else:
                k = int(np.searchsorted(cs, need)) + 1  # the fewest, oldest first
                sel = cand[:k]
                chosen_rows.append(sel)
                chosen_reasons.append(np.full(len(sel), 3, dtype=np.int8))
                rest = need - int(t.size_bytes[sel].sum())
                if rest > 0:  # trim the oldest held segments, only as many as the rest needs
                    k = int(np.searchsorted(np.cumsum(gain), rest)) + 1
                    trim_rows.append(hcand[:k])
                    unmet = max(0, rest - int(gain[:k].sum()))
    rows = np.concatenate(chosen_rows) if chosen_rows else np.zeros(0, dtype=np.int64)
    reasons = np.concatenate(chosen_reasons) if chosen_reasons else np.zeros(0, dtype=np.int8)
    held_rows = np.nonzero(held & usable)[0]
    plan = RetentionPlan(now_ns, t, rows, reasons, held_rows[np.argsort(t.start_ns[held_rows])])
    trims = np.unique(np.concatenate(trim_rows)) if trim_rows else np.zeros(0, dtype=np.int64)
    plan.trim_rows = trims[np.argsort(t.start_ns[trims], kind="stable")]  # oldest first
    plan.watermark_needed_bytes = needed
    plan.watermark_unmet_bytes = unmet
    plan.watermark_why = watermark_why
    plan.trim_gain_bytes = int(_trim_gains(t, plan.trim_rows, holds).sum())
    return plan


# --- catalog, leases and execution -------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _trim_gains(t: SegmentTable, rows: Any, holds: list[Hold]) -> Any:
    """Bytes that trimming each held segment to its holds would free, estimated by the share
    of its time no hold of its camera covers (trimming keeps whole GOPs, so a little less)."""
    import numpy as np

    out = np.zeros(len(rows), dtype=np.int64)
    for j, i in enumerate(rows):
        cam = t.cameras[int(t.cam_idx[i])]
        s, e = int(t.start_ns[i]), int(t.end_ns[i])
        spans = sorted((max(h.from_ns, s), min(h.to_ns, e)) for h in holds if h.covers(cam, s, e))
        covered, cursor = 0, s
        for a, b in spans:
            a = max(a, cursor)
            if b > a:
                covered += b - a
                cursor = b
        dur = max(1, e - s)
        out[j] = int(t.size_bytes[i]) * (dur - covered) // dur
    return out


def catalog(store: Any, cameras: Iterable[str] | None = None) -> SegmentTable:
    """Every segment of the store (or of some cameras), hot and tiered, as a columnar table."""
    wanted = set(cameras) if cameras is not None else None
    out = []
    for cam, num in store.index.cameras():
        if wanted is not None and cam not in wanted:
            continue
        out.extend(
            SegmentInfo(
                cam,
                num,
                r.segment_id,
                r.start_ns,
                r.end_ns,
                r.size_bytes,
                r.path,
                r.state,
                r.location,
            )
            for r in store.index.segments(num)
            if not r.foreign  # another store's objects are its own to keep or delete (D6)
        )
    return SegmentTable.from_infos(out)


def _leased_ids(leases: LeaseSet, table: SegmentTable) -> frozenset[int]:
    """The catalog's segments that live leases cover (by id or by camera range)."""
    if not leases:
        return frozenset()
    return frozenset(
        int(table.segment_id[i])
        for i in range(len(table))
        if leases.covers(
            table.cameras[int(table.cam_idx[i])],
            int(table.start_ns[i]),
            int(table.end_ns[i]),
            int(table.segment_id[i]),
        )
    )


def disk_usage(path: os.PathLike[str] | str) -> DiskUsage:
    u = shutil.disk_usage(path)
    return DiskUsage(u.total, u.free)


def min_free_bytes(cfg: RetentionConfig, disk: DiskUsage) -> int:
    if cfg.min_free_bytes is not None:
        return cfg.min_free_bytes
    if cfg.min_free_ratio is not None:
        return int(disk.total_bytes * cfg.min_free_ratio)
    return 0


@dataclass
class ApplyResult:
    deleted_segments: int = 0
    deleted_bytes: int = 0
    finished_garbage: int = 0
    skipped_leased: int = 0
    deferred_leased: int = 0  # out of the index, bytes kept until their reader is done (L2)
    trimmed_segments: int = 0
    trimmed_bytes: int = 0
    errors: list[str] = field(default_factory=list)  # objects a tier would not delete yet


def _remove_marked(
    store: Any,
    segment_id: int,
    rec: dict[str, Any],
    leases: LeaseSet | None = None,
) -> bool:
    """D2-D3: remove the file or object (if still there), make that durable, clear the
    garbage mark. A reader's live lease on it defers this (L2: False, the mark stays for
    D4). A tier that fails raises TierError and the mark stays for a rerun."""
    if leases is None:
        leases = store.leases()
    if leases.covers(rec.get("camera", ""), rec["start_ns"], _mark_end_ns(rec), segment_id):
        return False
    location = rec.get("location", "local")
    if location != "local":
        store.tier(location).delete(rec["path"])  # a missing object is not an error
    else:
        _unlink_durably(store, store.layout.path(rec["path"]))
    b = Batch()
    b.delete(layout.garbage_key(segment_id))
    store.index.commit(b, sync=False)  # a lost clear is redone by D4
    return True


def _unlink_durably(store: Any, path: Any) -> None:
    """Remove a file (if still there) and make that durable (fsync its directory)."""
    try:
        store.fs.unlink(path)
        store.fs.fsync_dir(path.parent)
    except FileNotFoundError:
        pass


def _mark_end_ns(rec: dict[str, Any]) -> int:
    """A garbage mark's end; marks written before ends were recorded reach to the end of
    time, so a hold anywhere after their start keeps them (D5 errs toward keeping)."""
    return int(rec.get("end_ns", 2**63 - 1))


def _reindexed(store: Any, segment_id: int, rec: dict[str, Any]) -> bool:
    """Whether an index row names the marked file or object again (rebuild-index, repair)."""
    num = store.index.camera_num(rec.get("camera", "")) if rec.get("camera") else None
    if num is None:
        return False
    location = rec.get("location", "local")
    for r in store.index.segments(num, rec["start_ns"], rec["start_ns"] + 1):
        if r.path == rec["path"] and r.location == location:
            return True
    return False


def finish_garbage(store: Any, errors: list[str] | None = None, *, local_only: bool = False) -> int:
    """D4: finish deletions a crash or an unreachable tier interrupted (remove the file or
    object if still there, clear the mark). D5: a mark whose footage is indexed again or
    now under an active hold is cancelled instead (the bytes stay, the audit log says so).
    Objects a tier cannot delete now stay marked; their errors are listed. ``local_only``
    leaves tiered ones to the next retention run (opening a store must not wait on an
    object store)."""
    from vstore.base.errors import TierError

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
            if _remove_marked(store, seg_id, rec, leases):
                done += 1
        except TierError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return done


def mark_conflict(
    store: Any, segment_id: int, rec: dict[str, Any], holds: list[Hold]
) -> str | None:
    """Why a garbage mark must not be carried out (D5), or None: its file or object is
    indexed again, or it is the only copy of footage an active hold covers."""
    if _reindexed(store, segment_id, rec):
        return "indexed again"
    if _held_and_unindexed(store, rec, holds):
        return "under an active legal hold, and not indexed elsewhere"
    return None


def _held_and_unindexed(store: Any, rec: dict[str, Any], holds: list[Hold]) -> bool:
    """Whether an active hold covers part of a mark's span that no indexed chunk of its
    camera covers: footage a hold wants whose only copy is the marked one. (A tiered
    segment's local file, or a trimmed segment's rest, is covered by the object or the
    copy, and goes.)"""
    cam = rec.get("camera", "")
    start, end = int(rec["start_ns"]), _mark_end_ns(rec)
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


def cancel_mark(store: Any, segment_id: int, rec: dict[str, Any], why: str) -> None:
    """D5: keep marked footage the index or a hold claims again: drop the mark, not the bytes."""
    where = (
        rec["path"]
        if rec.get("location", "local") == "local"
        else (f"{rec['location']}/{rec['path']}")
    )
    b = Batch()
    b.delete(layout.garbage_key(segment_id))
    store.index.audit(
        "delete_cancelled",
        "retention",
        {
            "camera": rec.get("camera"),
            "segment_id": segment_id,
            "from": format_time(rec["start_ns"]),
            "path": where,
            "reason": why,
            "indexed": why == "indexed again",
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)


def _garbage_record(path: str, camera: str, start_ns: int, end_ns: int, location: str) -> bytes:
    rec: dict[str, Any] = {"path": path, "camera": camera, "start_ns": start_ns, "end_ns": end_ns}
    if location != "local":
        rec["location"] = location
    return _json(rec)


def apply_plan(
    store: Any,
    plan: RetentionPlan,
    by: str = "retention",
    progress: Callable[[int, int], None] | None = None,
    *,
    finish_pending: bool = True,
) -> ApplyResult:
    """Delete the planned segments: D1 one synced batch removes the segment's rows, adds a
    garbage mark and an audit record; D2 unlink + fsync dir; D3 clear the mark. A crash at
    any point leaves the index never pointing at missing bytes, and a rerun finishes."""
    if store.read_only:
        raise VstoreError("retention needs the store opened for writing")
    from vstore.base.errors import TierError

    res = ApplyResult()
    if finish_pending:  # (the space keeper finishes only local ones, beside the writers)
        res.finished_garbage = finish_garbage(store, res.errors)
    total = len(plan.deletions)
    for i, d in enumerate(plan.deletions):
        s = d.segment
        # Leases are read at the moment of each deletion (L2): a clip that leased its range
        # after the plan was made is honoured.
        if store.leases().covers(s.camera, s.start_ns, s.end_ns, s.segment_id):
            res.skipped_leased += 1
            continue
        row = _current_row(store, s)
        if row is None:
            continue  # already gone (a concurrent run, or a rerun)
        row_key = row.key()
        rec = _garbage_record(row.path, s.camera, s.start_ns, row.end_ns, row.location)
        b = Batch()
        b.put(layout.garbage_key(s.segment_id), rec)
        for c in store.index.chunks(s.camera_num, row.start_ns, row.end_ns):
            if c.segment_id == s.segment_id:
                b.delete(c.key())
        b.delete(row_key)
        store.index.audit(
            "delete",
            by,
            {
                "camera": s.camera,
                "segment_id": s.segment_id,
                "from": format_time(s.start_ns),
                "to": format_time(s.end_ns),
                "bytes": s.size_bytes,
                "reason": d.reason,
                "sha256": row.sha256,
                "location": row.location,
                "now": format_time(plan.now_ns),
                "policy": plan.policies.get(s.camera),
                "overrides": plan.overrides,
                **(
                    {
                        "watermark_needed_bytes": plan.watermark_needed_bytes,
                    }
                    if d.reason == "watermark"
                    else {}
                ),
            },
            store.clock.wall_ns(),
            batch=b,
        )
        store.index.commit(b, sync=True)
        res.deleted_segments += 1  # D1 is the deletion: the footage is out of the index
        try:
            # A reader that leased it between the check above and D1 may have planned from
            # the row just removed: its bytes then wait for it (L2), the mark stays for D4.
            if not _remove_marked(store, s.segment_id, _loads(rec)):
                res.deferred_leased += 1
        except TierError as exc:
            res.errors.append(f"{row.location}/{row.path}: {exc} (marked; a rerun deletes it)")
        res.deleted_bytes += s.size_bytes
        if progress is not None:
            progress(i + 1, total)
    if len(plan.trim_rows):
        holds = list_holds(store)
        for s in plan.trims:
            if store.leases().covers(s.camera, s.start_ns, s.end_ns, s.segment_id):
                res.skipped_leased += 1
                continue
            try:
                freed = trim_segment(store, s, holds, by)
            except TierError as exc:
                res.errors.append(f"{s.location}/{s.path}: {exc}")
                continue
            except CorruptSegment as exc:
                # T4: footage that does not verify is never rewritten (that would certify
                # it) nor deleted: the whole segment is kept for `vstore check` and people.
                res.errors.append(f"{s.location}/{s.path}: not trimmed, kept whole: {exc}")
                continue
            if freed:
                res.trimmed_segments += 1
                res.trimmed_bytes += freed
    return res


def trim_segment(store: Any, seg: SegmentInfo, holds: list[Hold], by: str) -> int:
    """Keep only the chunks of a segment that active holds cover (with the chunks back to
    their GOP start); delete the rest. Returns the bytes freed.

    Protocol (lifecycle T1-T4): T4 first: the original is verified whole (every chunk
    against its directory CRC, the content against the trailer's SHA-256, which must be the
    index's) and each kept chunk against its index row; on any mismatch CorruptSegment is
    raised and nothing changes. T1 an open marker for the copy, then the copy is written and
    fsynced (chunk bytes verbatim, a new header naming the original's hash and chunk CRCs,
    footer and hash) and read back and verified; T2 one synced batch indexes the copy,
    re-points the held chunk rows, drops the old rows, marks the old file as garbage and
    audits; T3 the old file is removed. After a crash in T1, recovery seals and indexes the
    copy (R4) and the next run finds the held chunks already copied.
    """
    from vstore.segment.reader import SegmentReader, parse_chunk
    from vstore.store.camera_writer import SegmentFile

    row = _current_row(store, seg)
    if row is None:
        return 0
    row_key = row.key()
    mine = [h for h in holds if h.active and h.camera == seg.camera]
    where = f"{row.location}/{row.path}" if row.location != "local" else row.path
    # A tiered segment is trimmed through ranged reads; its held chunks become a new local
    # segment (which tiers again in its time) and the old object is deleted.
    with store.segment_reader(row) as rd:
        entries = rd.directory()
        keep = _kept_chunks(entries, mine)
        if all(keep):
            return 0
        # Damaged bytes kept in the file by recovery (R5) lie between the directory's chunks;
        # where a hold covers their time, the file is kept whole: they are held evidence too.
        prev_end, prev_ns = rd.header_len, row.start_ns
        footer = rd.trailer().footer_offset
        for e in [*entries, None]:
            at = e.offset if e is not None else footer
            until_ns = e.start_ns if e is not None else 2**63 - 1
            if at > prev_end and any(h.from_ns < until_ns and h.to_ns > prev_ns for h in mine):
                raise CorruptSegment(
                    f"{where}: damaged bytes a hold covers lie between its chunks "
                    f"(from {format_time(prev_ns)})"
                )
            if e is not None:
                prev_end, prev_ns = e.offset + e.length, e.end_ns
        # T4: what is kept must be what was recorded, or it would leave here certified.
        if rd.trailer().sha256.hex() != row.sha256:
            raise CorruptSegment(f"{where}: its trailer's hash is not the one indexed")
        rd.verify()
        current = {
            c.start_ns: c for c in store.index.chunks(seg.camera_num, row.start_ns, row.end_ns)
        }
        # Held chunks whose rows already point elsewhere were copied by an earlier attempt.
        to_copy = [
            e
            for e, k in zip(entries, keep, strict=True)
            if k
            and current.get(e.start_ns) is not None
            and current[e.start_ns].segment_id == seg.segment_id
        ]
        for e in to_copy:
            c = current[e.start_ns]
            if (c.offset, c.length, c.crc32) != (e.offset, e.length, e.crc32):
                raise CorruptSegment(
                    f"{where}: the chunk at {format_time(e.start_ns)} differs from its index row"
                )
        b = Batch()
        new_row = None
        if to_copy:
            new_id = store.index.new_segment_id()
            relpath = store.layout.segment_relpath(seg.camera, to_copy[0].start_ns, new_id)
            marker = Batch()
            marker.put(
                layout.open_key(new_id),
                _json(
                    {
                        "camera": seg.camera,
                        "path": relpath,
                        "start_ns": to_copy[0].start_ns,
                        "camera_num": seg.camera_num,
                    }
                ),
            )
            store.index.commit(marker, sync=True)
            # Provenance: the copy's header names the original's content hash and the CRCs
            # of the chunks it keeps (verbatim, so the same), earlier trims' first.
            origin = {
                "segment_id": seg.segment_id,
                "sha256": row.sha256,
                "size_bytes": row.size_bytes,
                "chunks": [[e.start_ns, e.crc32] for e in to_copy],
            }
            chain = [*rd.meta.extra.get("trimmed_from", []), origin]
            meta = rd.meta._replace(
                segment_id=new_id,
                created_ns=store.clock.wall_ns(),
                extra={**rd.meta.extra, "trimmed_from": chain},
            )
            sf = SegmentFile(store.fs, store.layout.root, relpath, meta)
            try:
                moved = []
                for e in to_copy:
                    raw = rd.src.read(e.offset, e.length)
                    # The bytes copied are checked themselves (verify() read them before).
                    parse_chunk(raw, current[e.start_ns].crc32, f"{where}@{e.offset}: ")
                    moved.append(sf.append_raw_chunk(raw, e))
                size, sha = sf.seal(moved[-1].end_ns)
                with SegmentReader.open(store.layout.path(relpath)) as copy:
                    copy.verify()
                    if [(e.start_ns, e.crc32) for e in copy.directory()] != [
                        (e.start_ns, e.crc32) for e in to_copy
                    ]:
                        raise CorruptSegment(f"{relpath}: the copy does not hold the kept chunks")
            except CorruptSegment:
                # A copy that does not verify is ours, not evidence: it goes, with its marker
                # (recovery would otherwise index it), and the original stays whole.
                sf.abandon()
                _discard_copy(store, new_id, relpath)
                raise
            except VstoreError:
                sf.abandon()
                raise
            new_row = SegmentRow(
                seg.camera_num,
                new_id,
                moved[0].start_ns,
                moved[-1].end_ns,
                "sealed",
                "local",
                relpath,
                size,
                sha,
                len(moved),
                sum(e.packet_count for e in moved),
                row.codecs,
            )
            b.put(new_row.key(), new_row.value())
            b.delete(layout.open_key(new_id))
            for e in moved:
                c = ChunkRow.from_entry(seg.camera_num, new_id, e)
                b.put(c.key(), c.value())
    kept_starts = {e.start_ns for e, k in zip(entries, keep, strict=True) if k}
    for e in entries:
        c = current.get(e.start_ns)
        if c is not None and c.segment_id == seg.segment_id and e.start_ns not in kept_starts:
            b.delete(c.key())
    b.delete(row_key)
    rec = _garbage_record(row.path, seg.camera, seg.start_ns, row.end_ns, row.location)
    b.put(layout.garbage_key(seg.segment_id), rec)
    freed = row.size_bytes - (new_row.size_bytes if new_row is not None else 0)
    store.index.audit(
        "trim",
        by,
        {
            "camera": seg.camera,
            "segment_id": seg.segment_id,
            "from": format_time(row.start_ns),
            "to": format_time(row.end_ns),
            "kept_chunks": len(kept_starts),
            "kept_segment_id": new_row.segment_id if new_row is not None else None,
            "kept_sha256": new_row.sha256 if new_row is not None else None,
            "bytes": freed,
            "reason": "retention (held chunks kept)",
            "sha256": row.sha256,
            "verified": True,
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)
    _remove_marked(store, seg.segment_id, _loads(rec))
    return freed


def _current_row(store: Any, seg: SegmentInfo) -> SegmentRow | None:
    """The index's row of a planned segment now (None: already gone)."""
    key = layout.segment_key(seg.camera_num, seg.start_ns, seg.segment_id)
    raw = store.index.get(key)
    return None if raw is None else SegmentRow.decode(key, raw)


def _kept_chunks(entries: list[Any], holds: list[Hold]) -> list[bool]:
    """Which chunks of a segment a trim keeps: those its camera's holds overlap, with the
    chunks back to their GOP's start (a kept continuation cannot decode without them)."""
    from vstore.segment import format as fmt

    keep = [any(e.start_ns < h.to_ns and e.end_ns > h.from_ns for h in holds) for e in entries]
    for i in range(len(entries) - 1, 0, -1):
        if keep[i] and entries[i].flags & fmt.CHUNK_CONTINUATION:
            keep[i - 1] = True
    return keep


def trim_gain_bytes(store: Any, seg: SegmentInfo, holds: list[Hold]) -> int:
    """The bytes a trim of ``seg`` would free (its chunks no hold keeps), from its footer."""
    row = _current_row(store, seg)
    if row is None:
        return 0
    mine = [h for h in holds if h.active and h.camera == seg.camera]
    try:
        with store.segment_reader(row) as rd:
            entries = rd.directory()
    except VstoreError:
        return 0  # unreadable: the trim will refuse it and say why
    keep = _kept_chunks(entries, mine)
    return sum(e.length for e, k in zip(entries, keep, strict=True) if not k)


def _discard_copy(store: Any, segment_id: int, relpath: str) -> None:
    _unlink_durably(store, store.layout.path(relpath))
    b = Batch()
    b.delete(layout.open_key(segment_id))
    store.index.commit(b, sync=True)


def watermark_unmet_after(plan: RetentionPlan, res: ApplyResult | None) -> int:
    """Bytes still missing below the watermark once the plan ran (trims free some)."""
    if res is None:
        return plan.watermark_unmet_bytes
    return max(0, plan.watermark_unmet_bytes - res.trimmed_bytes)


def _json(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d, separators=(",", ":")).encode()


def _loads(raw: bytes) -> dict[str, Any]:
    import json

    return dict(json.loads(raw))


def run_retention(
    store: Any,
    *,
    cameras: Iterable[str] | None = None,
    max_age_ns: int | None = None,
    max_bytes: int | None = None,
    tiered_max_age_ns: int | None = None,
    dry_run: bool = False,
    disk: DiskUsage | None = None,
    trust_clock: bool = False,
    by: str = "retention",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[RetentionPlan, ApplyResult | None]:
    """Plan with the store's policies (overridden by max_age_ns for local footage,
    tiered_max_age_ns for tiered footage and max_bytes, each only what it names) and,
    unless dry_run, apply the plan. Ages count from a wall clock the store can trust (K1):
    one that stepped ahead is capped, and said so in ``plan.clock_warning``, unless
    ``trust_clock`` (an operator's word that the clock is right, audited)."""
    cfg: RetentionConfig = store.config.retention
    cameras = store.require_cameras(cameras)

    def policy_of(cam: str) -> RetentionPolicy:
        return cfg.policy(cam).overridden(max_age_ns, tiered_max_age_ns, max_bytes)

    if disk is None:
        disk = disk_usage(store.root)
    table = catalog(store, cameras)
    # K1: ages are judged by a clock that agrees with what this store saw of it before.
    newest = int(table.end_ns.max()) if len(table) else None
    verdict = store.clock_verdict(newest)
    if trust_clock and not verdict.trusted:
        store.index.audit(
            "clock_trusted",
            by,
            {"clock": format_time(store.clock.wall_ns()), "instead_of": verdict.message},
            store.clock.wall_ns(),
        )
        verdict = verdict._replace(trusted=True, now_ns=store.clock.wall_ns())
        store.mark_clock(rebase=True)  # the operator's word is the new reference
    plan = plan_retention(
        table,
        list_holds(store),
        policy_of,
        verdict.now_ns,
        disk=disk,
        min_free_bytes=min_free_bytes(cfg, disk),
        leased=_leased_ids(store.leases(), table),
    )
    if len(plan.trim_rows):
        # What the trims free, from the segments' own directories: a dry run then says
        # exactly what the run does (a segment its holds keep whole is not trimmed).
        holds = list_holds(store)
        gains = [trim_gain_bytes(store, plan.table.row(int(i)), holds) for i in plan.trim_rows]
        plan.trim_rows = plan.trim_rows[[g > 0 for g in gains]]
        plan.trim_gain_bytes = sum(g for g in gains if g > 0)
    plan.clock_warning = "" if verdict.trusted else verdict.message
    plan.overrides = {
        k: v
        for k, v in (
            ("max_age", format_duration(max_age_ns) if max_age_ns else None),
            ("tiered_max_age", format_duration(tiered_max_age_ns) if tiered_max_age_ns else None),
            ("max_bytes", max_bytes),
            ("trust_clock", trust_clock or None),
        )
        if v is not None
    }
    for cam in plan.table.cameras:
        pol = policy_of(cam)
        plan.policies[cam] = {
            "max_age": format_duration(pol.max_age_ns) if pol.max_age_ns else None,
            "tiered_max_age": (
                format_duration(pol.tiered_max_age_ns) if pol.tiered_max_age_ns else None
            ),
            "max_bytes": pol.max_bytes,
        }
    if not verdict.trusted:
        import logging

        logging.getLogger(__name__).error("retention: %s", verdict.message)
    if dry_run:
        return plan, None
    if verdict.trusted:
        store.mark_clock()
    return plan, apply_plan(store, plan, by=by, progress=progress)


# --- jobs: what `vstore hold` and `vstore retention run` run, here or through the process
# that holds the store open for writing (vstore.service.control) -------------------------------------


@job("hold")
def hold_job(
    store: Any, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``action`` add (camera, from_ns, to_ns, reason, by), release (id, by, reason) or sync:
    the hold is recorded first (the index is the authority), then mirrored onto S3 object
    legal holds, which may fail on its own (reported in ``objects.errors``)."""
    action = params.get("action")
    hold = None
    warning = None
    if action == "sync":
        objects = sync_object_holds(store)
    elif action == "add":
        num = store.camera_num(params["camera"])  # NotFound, naming the cameras there are
        hold = add_hold(
            store,
            params["camera"],
            int(params["from_ns"]),
            int(params["to_ns"]),
            params["reason"],
            params["by"],
            mirror=False,
        )
        objects = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
        if next(iter(store.index.chunks(num, hold.from_ns, hold.to_ns)), None) is None:
            warning = (
                f"camera {hold.camera!r} has no footage in that range (yet): the hold is "
                "placed, but check the times and their offset (`vstore timeline`)"
            )
    elif action == "release":
        hold = release_hold(
            store, int(params["id"]), params["by"], params.get("reason", ""), mirror=False
        )
        objects = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
    else:
        raise UsageError(f"unknown hold action {action!r}")
    doc = {**(hold.as_json() if hold is not None else {}), "objects": objects.as_json()}
    if warning:
        doc["warning"] = warning
    return doc


@job("retention")
def retention_job(
    store: Any, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """One retention run (``cameras``, ``max_age_ns``, ``tiered_max_age_ns``, ``max_bytes``,
    ``dry_run``): the plan
    and what applying it did, with the free space still missing below the watermark."""
    dry_run = bool(params.get("dry_run"))
    with store.retention_lock:  # one run at a time, and no hold change inside one (H1)
        plan, res = run_retention(
            store,
            cameras=params.get("cameras"),
            max_age_ns=params.get("max_age_ns"),
            tiered_max_age_ns=params.get("tiered_max_age_ns"),
            max_bytes=params.get("max_bytes"),
            dry_run=dry_run,
            trust_clock=bool(params.get("trust_clock")),
            progress=progress,
        )
    doc = plan.as_json()
    if res is not None:
        doc["deleted_segments"] = res.deleted_segments
        doc["deleted_bytes"] = res.deleted_bytes
        doc["skipped_leased"] = res.skipped_leased
        doc["trimmed_segments"] = res.trimmed_segments
        doc["trimmed_bytes"] = res.trimmed_bytes
        doc["errors"] = res.errors
    doc["dry_run"] = dry_run
    doc["watermark_unmet_after_bytes"] = watermark_unmet_after(plan, res)
    doc["disk_full"] = store.config.retention.disk_full
    return doc
