"""The retention job: one retention run (what `vstore retention run` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.lifecycle.retention import cluster_retention, run_retention, watermark_unmet_after
from vstore.store.store import Store


def retention_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
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
            cluster=False,
        )
    # A cluster's share runs after, outside the lock: a city's pass over the bucket must not
    # keep an investigator's hold waiting, and one placed meanwhile is still honoured before
    # any object goes (E4).
    cluster_retention(store, plan, res, dry_run=dry_run)
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
