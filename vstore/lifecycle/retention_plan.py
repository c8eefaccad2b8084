"""The retention planner: a pure function of the catalog, the holds, the policies,
the clock and the disk usage. It never selects a segment that overlaps an active legal
hold, one being written, or one a reader's lease covers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vstore.base.timebase import format_time
from vstore.store.config import RetentionPolicy
from vstore.store.disk import DiskUsage
from vstore.store.holds import Hold


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
        import numpy as np  # NumPy: heavy, loaded on first use

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
        import numpy as np  # NumPy: heavy, loaded on first use

        self.now_ns = now_ns
        self.table = table if table is not None else SegmentTable.from_infos([])
        self.rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
        self.reasons = np.asarray(reasons if reasons is not None else [], dtype=np.int8)
        self.held_rows = np.asarray(held_rows if held_rows is not None else [], dtype=np.int64)
        self.watermark_needed_bytes = 0
        self.watermark_unmet_bytes = 0  # still missing after deleting all unheld footage
        self.clock_warning = ""  # why ages were counted from a capped time (K1)
        # Cameras a [retention.cameras.ID] policy names that the store has never had (a
        # typo keeps the policy meant from applying).
        self.unknown_policy_cameras: list[str] = []
        self.watermark_why = ""  # why the watermark cannot be met, when it cannot
        # What decided it, recorded with each deletion: the run's overrides and each camera's
        # policy as resolved (set by run_retention).
        self.overrides: dict[str, Any] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.trim_gain_bytes = 0  # what the planned trims free (an estimate by time)
        self.trim_rows = np.zeros(0, dtype=np.int64)  # expired but held: keep held chunks only
        self._deletions: list[Deletion] | None = None
        self.left_to_deleter = 0  # tiered deletions left to the cluster's deleter
        self.cluster: dict[str, Any] | None = None  # a cluster member's share (retention.py)
        # The policies the plan was made with, overrides applied (set by run_retention).
        self.policy_of: Callable[[str], RetentionPolicy] | None = None

    def leave_to_deleter(self, location: str) -> int:
        """Take out of the plan (deletions and trims) what is tiered to ``location``: a
        cluster's shared bucket, whose footage the cluster's elected deleter deletes from the
        catalog of record (bucket_retention.py). How many deletions were taken out."""
        import numpy as np

        t = self.table
        if t.locations is None or not len(t.locations):
            return 0
        there = np.fromiter((loc == location for loc in t.locations), dtype=bool,
                            count=len(t.locations))  # fmt: skip
        keep = ~there[self.rows]
        self.left_to_deleter = int((~keep).sum())
        self.rows, self.reasons = self.rows[keep], self.reasons[keep]
        self.trim_rows = self.trim_rows[~there[self.trim_rows]]
        self._deletions = None
        return self.left_to_deleter

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
            "unknown_policy_cameras": self.unknown_policy_cameras,
            "left_to_cluster_deleter": self.left_to_deleter,
            "cluster": self.cluster,
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
    import numpy as np  # NumPy: heavy, loaded on first use

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


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _trim_gains(t: SegmentTable, rows: Any, holds: list[Hold]) -> Any:
    """Bytes that trimming each held segment to its holds would free, estimated by the share
    of its time no hold of its camera covers (trimming keeps whole GOPs, so a little less)."""
    import numpy as np  # NumPy: heavy, loaded on first use

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
