"""The audit digest job: sign the audit records written since the last digest (what a node
does every hour; `vstore audit digest` for a store no node serves)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vstore.base.timebase import format_time
from vstore.evidence.audit_chain import write_digest
from vstore.store.store import Store


def audit_digest_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    d = write_digest(store, store.keys, time.time_ns())
    return {
        "digest": d.seq,
        "first_seq": d.first_seq,
        "last_seq": d.last_seq,
        "records": d.last_seq - d.first_seq + 1,
        "from": format_time(d.from_ns),
        "to": format_time(d.to_ns),
        "key_id": d.key_id,
        # Copies in the object store: None without a tier.
        "copies": None if d.copies is None else d.copies._asdict(),
    }
