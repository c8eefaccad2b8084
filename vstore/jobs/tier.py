"""The tier job: one tiering run (what `vstore tier run` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.base.errors import TierError, UsageError
from vstore.base.jsonio import to_jsonable
from vstore.lifecycle.tiering import run_tiering
from vstore.store.store import Store


def tier_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``to`` (a tier URL; default [tier] url), ``older_than_ns``, ``cameras``, ``dry_run``,
    ``parallel``, ``max_rate`` (bytes/s or "auto"/"none"). A failed run's TierError carries
    what it did as ``partial`` (the document it would have returned)."""
    url = params.get("to") or store.config.tier.url
    if not url:
        raise UsageError("no tier: give --to s3://BUCKET/PREFIX (or set [tier] url)")
    parallel = params.get("parallel")
    if parallel is not None and not 1 <= int(parallel) <= 64:
        raise UsageError("--parallel must be within 1..64")
    dry_run = bool(params.get("dry_run"))
    try:
        res = run_tiering(
            store,
            store.tier(url),
            params.get("older_than_ns"),
            cameras=params.get("cameras"),
            dry_run=dry_run,
            parallel=parallel,
            max_rate_bytes=params.get("max_rate"),
            progress=progress,
        )
    except TierError as exc:
        partial = getattr(exc, "result", None)
        if partial is not None:
            exc.partial = {"to": url, "dry_run": False, **to_jsonable(partial)}  # type: ignore[attr-defined]
        raise
    return {"to": url, "dry_run": dry_run, **to_jsonable(res)}
