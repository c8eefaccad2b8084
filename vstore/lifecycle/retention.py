"""Retention runs: plan with the store's policies, then delete through the garbage
protocol and trim held segments; also the space keeper's pass that frees room when the disk
falls below the watermark. Every deletion is recorded in the permanent audit log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vstore.base.errors import CorruptSegment, TierError, VstoreError
from vstore.base.timebase import format_duration, format_time
from vstore.lifecycle.bucket_retention import NotDeleter, catch_up, run_bucket_retention
from vstore.lifecycle.catalog import catalog, leased_ids
from vstore.lifecycle.retention_plan import RetentionPlan, plan_retention
from vstore.lifecycle.shared_catalog import publish_pending
from vstore.lifecycle.trim import current_row, trim_gain_bytes, trim_segment
from vstore.store import shared_holds
from vstore.store.config import RetentionConfig, RetentionPolicy, retention_limit
from vstore.store.disk import DiskUsage, disk_usage, min_free_bytes
from vstore.store.garbage import delete_segment, finish_garbage
from vstore.store.holds import list_holds
from vstore.store.store import Store

log = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    """What a retention run did (``vstore retention run --json`` prints it beside the plan):
    counts of segments and bytes deleted or trimmed, and what it had to leave for later."""

    deleted_segments: int = 0
    deleted_bytes: int = 0
    finished_garbage: int = 0
    skipped_leased: int = 0
    deferred_leased: int = 0  # out of the index, bytes kept until their reader is done (L2)
    trimmed_segments: int = 0
    trimmed_bytes: int = 0
    errors: list[str] = field(default_factory=list)  # objects a tier would not delete yet


def apply_plan(
    store: Store,
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
        row = current_row(store, s)
        if row is None:
            continue  # already gone (a concurrent run, or a rerun)
        detail = {
            "reason": d.reason,
            "now": format_time(plan.now_ns),
            "policy": plan.policies.get(s.camera),
            "overrides": plan.overrides,
        }
        if d.reason == "watermark":
            detail["watermark_needed_bytes"] = plan.watermark_needed_bytes
        try:
            # A reader that leased it between the check above and D1 may have planned from
            # the row D1 removes: its bytes then wait for it (L2), the mark stays for D4.
            if not delete_segment(store, row, s.camera, by, detail):
                res.deferred_leased += 1
        except TierError as exc:
            res.errors.append(f"{row.location}/{row.path}: {exc} (marked; a rerun deletes it)")
        res.deleted_segments += 1  # D1 is the deletion: the footage is out of the index
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
                # P4: footage that does not verify is never rewritten (that would certify
                # it) nor deleted: the whole segment is kept for `vstore check` and people.
                res.errors.append(f"{s.location}/{s.path}: not trimmed, kept whole: {exc}")
                continue
            if freed:
                res.trimmed_segments += 1
                res.trimmed_bytes += freed
    # The shared catalog stops listing the tiered segments deleted (marked in their D1).
    res.errors.extend(f"shared catalog: {e}" for e in publish_pending(store).errors)
    return res


def watermark_unmet_after(plan: RetentionPlan, res: ApplyResult | None) -> int:
    """Bytes still missing below the watermark once the plan ran (trims free some)."""
    if res is None:
        return plan.watermark_unmet_bytes
    return max(0, plan.watermark_unmet_bytes - res.trimmed_bytes)


def run_retention(
    store: Store,
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
    cluster: bool = True,
) -> tuple[RetentionPlan, ApplyResult | None]:
    """Plan with the store's policies (overridden by max_age_ns for local footage,
    tiered_max_age_ns for tiered footage and max_bytes, each only what it names) and,
    unless dry_run, apply the plan, then (``cluster``) the store's share of its cluster's
    (``cluster_retention``). Ages count from a wall clock the store can trust (K1):
    one that stepped ahead is capped, and said so in ``plan.clock_warning``, unless
    ``trust_clock`` (an operator's word that the clock is right, audited)."""
    cfg: RetentionConfig = store.config.retention
    # An override of 0 or less would delete all unheld footage: refused for every caller
    # (a job over the node's API as much as the command).
    for value, what in ((max_age_ns, "max_age_ns"), (tiered_max_age_ns, "tiered_max_age_ns"),
                        (max_bytes, "max_bytes")):  # fmt: skip
        if value is not None:
            retention_limit(value, what)
    cameras = store.require_cameras(cameras)
    # Holds other stores of the bucket placed bind here too: brought in first (those brought
    # in before bind when the bucket cannot be read now), their objects' legal holds following.
    hold_sync = shared_holds.sync(store) if not dry_run and not store.read_only else None

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
        leased=leased_ids(store.leases(), table),
    )
    bucket = _cluster_bucket(store)
    if bucket is not None:  # (its tiered footage is the cluster's deleter's)
        plan.leave_to_deleter(bucket)
    if len(plan.trim_rows):
        # What the trims free, from the segments' own directories: a dry run then says
        # exactly what the run does (a segment its holds keep whole is not trimmed).
        holds = list_holds(store)
        gains = [trim_gain_bytes(store, plan.table.row(int(i)), holds) for i in plan.trim_rows]
        plan.trim_rows = plan.trim_rows[[g > 0 for g in gains]]
        plan.trim_gain_bytes = sum(g for g in gains if g > 0)
    plan.clock_warning = "" if verdict.trusted else verdict.message
    known = {cam for cam, _num in store.index.cameras()} | set(store.config.cameras)
    plan.unknown_policy_cameras = sorted(set(cfg.cameras) - known)
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
        logging.getLogger(__name__).error("retention: %s", verdict.message)
    plan.policy_of = policy_of
    if dry_run:
        if cluster:
            cluster_retention(store, plan, None, by=by, dry_run=True)
        return plan, None
    if verdict.trusted:
        store.mark_clock()
    res = apply_plan(store, plan, by=by, progress=progress)
    if hold_sync is not None:
        res.errors.extend(f"shared holds: {e}" for e in hold_sync.errors)
        res.errors.extend(f"object legal holds: {e}" for e in hold_sync.objects.errors)
    if cluster:
        cluster_retention(store, plan, res, by=by)
    return plan, res


def _cluster_bucket(store: Store) -> str | None:
    """The bucket whose tiered footage the cluster's elected deleter deletes: a cluster
    member's [tier] url (None alone: each store deletes its own objects)."""
    cfg = store.config
    if not (cfg.cluster.etcd and cfg.tier.url):
        return None
    return store.tier(cfg.tier.url).url  # (as rows name it: the tier's own form of the URL)


def deletion_delay_ns(store: Store) -> int:
    """How long the deleter keeps an object after taking it out of the catalog: [cluster]
    deletion_delay_s, else twice the retention interval (so every store's run sees it)."""
    cfg = store.config
    if cfg.cluster.deletion_delay_s is not None:
        return int(cfg.cluster.deletion_delay_s * 10**9)
    return 2 * (cfg.retention.every_ns or 300 * 10**9)


def cluster_retention(
    store: Store,
    plan: RetentionPlan,
    res: ApplyResult | None,
    *,
    by: str = "retention",
    dry_run: bool = False,
) -> None:
    """A cluster member's share of retention beyond its own disk, after ``run_retention``
    made ``plan`` (and ``res``, unless dry): as the elected deleter, the bucket's run
    (E1-E4); as every member, its index caught up with the deleter's decisions (E5). What
    it did goes into ``plan.cluster``; its errors join ``res``'s. Nothing alone."""
    bucket = _cluster_bucket(store)
    if bucket is None:
        return
    policy_of = plan.policy_of
    assert policy_of is not None  # (set by run_retention)
    tier = store.tier(bucket)
    deleter = store.tiered_deleter() if store.tiered_deleter is not None else None
    out: dict[str, Any] = {"bucket": tier.url, "deleter": None}
    errors: list[str] = []
    if deleter is None and store.tiered_deleter is not None:
        out["note"] = (
            "tiered footage is deleted by the cluster's elected deleter, and this member is "
            "not it now (`vstore cluster status` names it; a member whose lease is not valid, "
            "etcd unreachable, is none)"
        )
    elif deleter is None:
        out["note"] = (
            "tiered footage is deleted by the cluster's elected deleter (a member of a running "
            "`vstore serve`), not by this run"
        )
    elif plan.clock_warning:
        out["deleter"] = deleter.who()
        out["note"] = "the clock is not trusted: the deleter deleted nothing this run"
    else:
        out["deleter"] = deleter.who()
        try:
            done = run_bucket_retention(store, tier, deleter, plan.now_ns,
                                        deletion_delay_ns(store), policy_of, list_holds(store),
                                        by=by, dry_run=dry_run)  # fmt: skip
            out["bucket_run"] = done.as_json()
            errors.extend(done.errors)
        except NotDeleter as exc:
            out["note"] = str(exc)
        except VstoreError as exc:
            errors.append(f"the cluster's deletion run stopped: {exc}")
    cu = catch_up(store, tier, by, dry_run=dry_run)
    out["index_caught_up"] = {"dropped": cu.dropped, "taken_back": cu.taken_back}
    errors.extend(cu.errors)
    if res is not None:
        res.errors.extend(f"cluster retention: {e}" for e in errors)
    else:
        out["errors"] = errors
    plan.cluster = out


def make_room(store: Store) -> tuple[int, str]:
    """The space keeper's pass beyond the cache (S1, S2): delete only as much of the
    oldest local, unheld, unleased footage as meets the watermark, through the garbage
    protocol, finishing only local deletions (never the network beside the writers). When
    even that cannot meet it, nothing is deleted. Returns (bytes still missing, why)."""
    cfg = store.config.retention
    with store.retention_lock:
        # Local deletions a crash left pending free space too.
        finish_garbage(store, local_only=True)
        usage = store.disk_usage()
        table = catalog(store)
        plan = plan_retention(
            table,
            list_holds(store),
            lambda _cam: RetentionPolicy(),  # ages and budgets are retention runs' work
            store.clock.wall_ns(),
            disk=usage,
            min_free_bytes=min_free_bytes(cfg, usage),
            leased=leased_ids(store.leases(), table),
        )
        if plan.watermark_unmet_bytes:
            # (the space keeper says so in the log: it asks every second while it lasts)
            return plan.watermark_unmet_bytes, plan.watermark_why
        res = apply_plan(store, plan, by="watermark", finish_pending=False)
        if res.deleted_segments:
            log.warning("disk below the watermark: deleted the %d oldest segment(s), %d B, to "
                        "make room (disk_full = overwrite-oldest)", res.deleted_segments,
                        res.deleted_bytes)  # fmt: skip
    return watermark_unmet_after(plan, res), ""
