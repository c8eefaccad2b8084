"""The job table: every job a command runs on a store it opened, or a serving process runs
for it. A job is ``fn(store, params, progress) -> result``: JSON-able params in, a JSON-able
result out (what the command prints with ``--json``), ``progress(done, total)`` or None."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.base.errors import UsageError
from vstore.jobs.check import check_job
from vstore.jobs.hold import hold_job
from vstore.jobs.imports import import_job
from vstore.jobs.rebuild_index import rebuild_index_job
from vstore.jobs.retention import retention_job
from vstore.jobs.tier import tier_job
from vstore.store.store import Store

Progress = Callable[[int, int], None]
Job = Callable[[Any, dict[str, Any], Progress | None], dict[str, Any]]

JOBS: dict[str, Job] = {
    "hold": hold_job,
    "retention": retention_job,
    "tier": tier_job,
    "import": import_job,
    "check": check_job,
    "rebuild-index": rebuild_index_job,
}


def run(
    store: Store, name: str, params: dict[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """Run the job ``name`` on an open store."""
    fn = JOBS.get(name)
    if fn is None:
        raise UsageError(f"unknown job {name!r} (jobs: {', '.join(sorted(JOBS))})")
    return fn(store, params, progress)
