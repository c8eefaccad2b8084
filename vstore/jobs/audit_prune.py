"""The audit retention job: prune audit records older than ``[audit] max_age`` once a signed
digest covers them (evidence/audit_retention.py); a node runs it daily."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vstore.evidence.audit_retention import prune_audit
from vstore.store.store import Store


def audit_prune_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    rep = prune_audit(store, store.keys, time.time_ns(), str(params.get("by") or "retention"))
    if rep is None:
        return {"pruned": 0, "kept_forever": True}
    return {**rep._asdict(), "kept_forever": False}
