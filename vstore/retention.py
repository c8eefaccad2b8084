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

from vstore import layout
from vstore.config import RetentionConfig, RetentionPolicy
from vstore.errors import NotFound, UsageError, VstoreError
from vstore.index import Batch, SegmentRow
from vstore.timebase import TimeRange, format_time

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
                )
            }
        ).encode()


def list_holds(store: Any, include_released: bool = False) -> list[Hold]:
    holds = [Hold(**h) for h in store.index.holds()]
    return holds if include_released else [h for h in holds if h.active]


def add_hold(store: Any, camera: str, from_ns: int, to_ns: int, reason: str, by: str) -> Hold:
    TimeRange(from_ns, to_ns)
    layout.validate_camera_id(camera)
    if not reason.strip():
        raise UsageError("a hold needs a reason")
    if not by.strip():
        raise UsageError("a hold needs the name of who places it (--by)")
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
    return hold


def release_hold(store: Any, hold_id: int, by: str, reason: str = "") -> Hold:
    if not by.strip():
        raise UsageError("releasing a hold needs the name of who releases it (--by)")
    raw = store.index.get(layout.hold_key(hold_id))
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

    done = replace(hold, released_ns=store.clock.wall_ns(), released_by=by.strip())
    b = Batch()
    b.put(layout.hold_key(hold_id), done.record())
    store.index.audit(
        "hold_release",
        done.released_by or "",
        {**done.as_json(), "release_reason": reason},
        done.released_ns or 0,
        batch=b,
    )
    store.index.commit(b, sync=True)
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


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int


@dataclass
class Deletion:
    segment: SegmentInfo
    reason: str  # "max_age" | "max_bytes" | "watermark"


@dataclass
class RetentionPlan:
    now_ns: int
    deletions: list[Deletion] = field(default_factory=list)
    kept_for_holds: list[SegmentInfo] = field(default_factory=list)
    watermark_needed_bytes: int = 0
    watermark_unmet_bytes: int = 0  # still missing after deleting all unheld footage

    @property
    def bytes(self) -> int:
        return sum(d.segment.size_bytes for d in self.deletions)

    def by_camera(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for d in self.deletions:
            c = out.setdefault(
                d.segment.camera,
                {"segments": 0, "bytes": 0, "from_ns": None, "to_ns": None, "reasons": {}},
            )
            c["segments"] += 1
            c["bytes"] += d.segment.size_bytes
            c["from_ns"] = min(c["from_ns"] or d.segment.start_ns, d.segment.start_ns)
            c["to_ns"] = max(c["to_ns"] or d.segment.end_ns, d.segment.end_ns)
            c["reasons"][d.reason] = c["reasons"].get(d.reason, 0) + 1
        return out

    def as_json(self) -> dict[str, Any]:
        cams = self.by_camera()
        for c in cams.values():
            c["from"] = format_time(c["from_ns"])
            c["to"] = format_time(c["to_ns"])
        return {
            "now": format_time(self.now_ns),
            "segments": len(self.deletions),
            "bytes": self.bytes,
            "cameras": cams,
            "kept_for_holds": len(self.kept_for_holds),
            "watermark_needed_bytes": self.watermark_needed_bytes,
            "watermark_unmet_bytes": self.watermark_unmet_bytes,
        }


def plan_retention(
    segments: Iterable[SegmentInfo],
    holds: Iterable[Hold],
    policy_of: Callable[[str], RetentionPolicy],
    now_ns: int,
    *,
    disk: DiskUsage | None = None,
    min_free_bytes: int = 0,
    leased: frozenset[int] = frozenset(),
) -> RetentionPlan:
    """Pure: the segments to delete, oldest first per rule. Never a held, open or leased one."""
    active = [h for h in holds if h.active]
    by_cam: dict[str, list[SegmentInfo]] = {}
    for s in segments:
        by_cam.setdefault(s.camera, []).append(s)
    plan = RetentionPlan(now_ns)
    chosen: set[tuple[int, int]] = set()
    deletable: list[SegmentInfo] = []

    def held(s: SegmentInfo) -> bool:
        return any(h.covers(s.camera, s.start_ns, s.end_ns) for h in active)

    for cam, segs in by_cam.items():
        segs.sort(key=lambda s: s.start_ns)
        pol = policy_of(cam)
        free: list[SegmentInfo] = []
        for s in segs:
            if s.state != "sealed" or s.segment_id in leased:
                continue
            if held(s):
                plan.kept_for_holds.append(s)
                continue
            free.append(s)
        if pol.max_age_ns is not None:
            cutoff = now_ns - pol.max_age_ns
            for s in free:
                if s.end_ns <= cutoff:
                    chosen.add((s.camera_num, s.segment_id))
                    plan.deletions.append(Deletion(s, "max_age"))
        if pol.max_bytes is not None:
            total = sum(s.size_bytes for s in segs if (s.camera_num, s.segment_id) not in chosen)
            for s in free:
                if total <= pol.max_bytes:
                    break
                if (s.camera_num, s.segment_id) in chosen:
                    continue
                chosen.add((s.camera_num, s.segment_id))
                plan.deletions.append(Deletion(s, "max_bytes"))
                total -= s.size_bytes
        deletable.extend(s for s in free if (s.camera_num, s.segment_id) not in chosen)
    if disk is not None and min_free_bytes > 0:
        need = min_free_bytes - disk.free_bytes - plan.bytes
        plan.watermark_needed_bytes = max(0, min_free_bytes - disk.free_bytes)
        # Oldest footage of any camera first (the watermark is store-wide).
        for s in sorted(deletable, key=lambda s: (s.start_ns, s.camera)):
            if need <= 0:
                break
            plan.deletions.append(Deletion(s, "watermark"))
            need -= s.size_bytes
        plan.watermark_unmet_bytes = max(0, need)
    return plan


# --- catalog, leases and execution -------------------------------------------------------------


def catalog(store: Any, cameras: Iterable[str] | None = None) -> list[SegmentInfo]:
    wanted = set(cameras) if cameras is not None else None
    out = []
    for cam, num in store.index.cameras():
        if wanted is not None and cam not in wanted:
            continue
        out.extend(
            SegmentInfo(cam, num, r.segment_id, r.start_ns, r.end_ns, r.size_bytes, r.path, r.state)
            for r in store.index.segments(num)
            if r.location == "local"
        )
    return out


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


def finish_garbage(store: Any) -> int:
    """D3-D4 for deletions a crash interrupted: remove the file if still there, clear the mark."""
    done = 0
    for seg_id, rec in store.index.garbage():
        path = store.layout.path(rec["path"])
        try:
            store.fs.unlink(path)
            store.fs.fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        b = Batch()
        b.delete(layout.garbage_key(seg_id))
        store.index.commit(b, sync=True)
        done += 1
    return done


def apply_plan(
    store: Any,
    plan: RetentionPlan,
    by: str = "retention",
    progress: Callable[[int, int], None] | None = None,
) -> ApplyResult:
    """Delete the planned segments: D1 one synced batch removes the segment's rows, adds a
    garbage mark and an audit record; D2 unlink + fsync dir; D3 clear the mark. A crash at
    any point leaves the index never pointing at missing bytes, and a rerun finishes."""
    if store.read_only:
        raise VstoreError("retention needs the store opened for writing")
    res = ApplyResult(finished_garbage=finish_garbage(store))
    leased = store.leased_segments()
    total = len(plan.deletions)
    for i, d in enumerate(plan.deletions):
        s = d.segment
        if s.segment_id in leased:
            res.skipped_leased += 1  # an open clip started reading it after planning
            continue
        row_key = layout.segment_key(s.camera_num, s.start_ns, s.segment_id)
        raw = store.index.get(row_key)
        if raw is None:
            continue  # already gone (a concurrent run, or a rerun)
        row = SegmentRow.decode(row_key, raw)
        b = Batch()
        b.put(
            layout.garbage_key(s.segment_id),
            _json({"path": row.path, "camera": s.camera, "start_ns": s.start_ns}),
        )
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
            },
            store.clock.wall_ns(),
            batch=b,
        )
        store.index.commit(b, sync=True)
        path = store.layout.path(row.path)
        try:
            store.fs.unlink(path)
            store.fs.fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        b = Batch()
        b.delete(layout.garbage_key(s.segment_id))
        store.index.commit(b, sync=False)
        res.deleted_segments += 1
        res.deleted_bytes += s.size_bytes
        if progress is not None:
            progress(i + 1, total)
    return res


def _json(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d, separators=(",", ":")).encode()


def run_retention(
    store: Any,
    *,
    cameras: Iterable[str] | None = None,
    max_age_ns: int | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
    disk: DiskUsage | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[RetentionPlan, ApplyResult | None]:
    """Plan with the store's policies (overridden by max_age_ns / max_bytes when given) and,
    unless dry_run, apply the plan."""
    cfg: RetentionConfig = store.config.retention

    def policy_of(cam: str) -> RetentionPolicy:
        p = cfg.policy(cam)
        return RetentionPolicy(
            max_age_ns if max_age_ns is not None else p.max_age_ns,
            max_bytes if max_bytes is not None else p.max_bytes,
        )

    if disk is None:
        disk = disk_usage(store.root)
    plan = plan_retention(
        catalog(store, cameras),
        list_holds(store),
        policy_of,
        store.clock.wall_ns(),
        disk=disk,
        min_free_bytes=min_free_bytes(cfg, disk),
        leased=frozenset(store.leased_segments()),
    )
    if dry_run:
        return plan, None
    return plan, apply_plan(store, plan, progress=progress)
