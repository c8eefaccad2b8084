"""The job table: every job a command runs on a store it opened, or a serving process runs
for it. A job is ``fn(store, params, progress) -> result``: JSON-able params in, a JSON-able
result out (what the command prints with ``--json``), ``progress(done, total)`` or None."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.base.errors import UsageError
from vstore.jobs.audit_digest import audit_digest_job
from vstore.jobs.audit_prune import audit_prune_job
from vstore.jobs.check import check_job
from vstore.jobs.export import export_job
from vstore.jobs.hold import hold_job
from vstore.jobs.imports import import_job
from vstore.jobs.key_rotate import key_rotate_job
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
    "export": export_job,
    "audit-digest": audit_digest_job,
    "key-rotate": key_rotate_job,
    "audit-prune": audit_prune_job,
}


# Each job's parameters and the JSON types they take (None: may be null). A parameter no job
# knows is refused, never ignored: a misspelt "dry-run" must not run a real deletion.
_INT, _STR, _BOOL, _LIST = (int,), (str,), (bool,), (list,)
PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "hold": {"action": _STR, "camera": _STR, "from_ns": _INT, "to_ns": _INT, "reason": _STR,
             "by": _STR, "id": (int, str)},  # (a number here, or a name NODE:N)
    "retention": {"cameras": _LIST, "max_age_ns": _INT, "tiered_max_age_ns": _INT,
                  "max_bytes": _INT, "dry_run": _BOOL, "trust_clock": _BOOL},
    "tier": {"to": _STR, "older_than_ns": _INT, "cameras": _LIST, "dry_run": _BOOL,
             "parallel": _INT, "max_rate": (int, str)},
    "import": {"file": _STR, "camera": _STR, "start_ns": _INT, "max_rate": _INT,
               "abandon": _STR},
    "check": {"repair": _BOOL, "quick": _BOOL, "max_rate": _INT},
    "rebuild-index": {"source": _STR, "adopt": _BOOL},
    "export": {"items": _LIST, "out": _STR, "case": _STR, "purpose": _STR, "by": _STR},
    "audit-digest": {},
    "key-rotate": {"purpose": _STR, "by": _STR},
    "audit-prune": {"by": _STR},
}  # fmt: skip


def check_params(name: str, params: Any) -> None:
    """Refuse unknown jobs, unknown parameters and values of the wrong type (UsageError)."""
    if name not in JOBS:
        raise UsageError(f"unknown job {name!r} (jobs: {', '.join(sorted(JOBS))})")
    if not isinstance(params, dict):
        raise UsageError("params must be a JSON object")
    known = PARAMS.get(name)
    if known is None:
        return  # (a job registered without a parameter table: tests' own)
    for key, value in params.items():
        types = known.get(key)
        if types is None:
            raise UsageError(
                f"the {name} job takes no parameter {key!r} (it takes: {', '.join(known)})"
            )
        if value is None:
            continue
        # bool is an int in Python, not in JSON: a flag is true/false, a number a number.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            want = " or ".join({int: "a number", str: "a string", bool: "true or false",
                                list: "a list"}[t] for t in types)  # fmt: skip
            raise UsageError(f"the {name} job's {key!r} must be {want}, not {value!r}")


def run(
    store: Store, name: str, params: dict[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """Run the job ``name`` on an open store."""
    check_params(name, params)
    return JOBS[name](store, params, progress)
