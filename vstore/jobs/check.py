"""The check job: verify (and with ``repair``, mend) a store (what `vstore check` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.base.jsonio import to_jsonable
from vstore.base.ratelimit import RateLimiter
from vstore.lifecycle.check import check_store
from vstore.store.store import Store


def check_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``repair``, ``quick`` (chunk CRCs only), ``max_rate`` (bytes/s read back, 0: unpaced):
    the report, with ``ok``."""
    rate = int(params.get("max_rate") or 0)
    rep = check_store(
        store,
        repair=bool(params.get("repair")),
        verify_hashes=not params.get("quick"),
        progress=progress,
        rate=RateLimiter(rate) if rate else None,
    )
    return to_jsonable(rep)  # (with "ok")
