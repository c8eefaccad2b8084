"""The rebuild-index job: index the tiered footage of an object store (what
`vstore rebuild-index` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vstore.base.errors import UsageError
from vstore.base.jsonio import to_jsonable
from vstore.lifecycle.tiering import rebuild_index_from_tier
from vstore.store.store import Store


def rebuild_index_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``source`` (a tier URL), ``adopt``: what was indexed, and the problems found."""
    source = params.get("source")
    if not isinstance(source, str) or not source:
        raise UsageError("give the tier to index: --from s3://BUCKET/PREFIX or a directory")
    res = rebuild_index_from_tier(
        store, store.tier(source), progress=progress, adopt=bool(params.get("adopt"))
    )
    return {"from": source, **to_jsonable(res)}
