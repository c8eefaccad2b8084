"""The key rotation job: a new current key for one purpose, the old one retired, and the
rotation audited; run by the process that holds the store, so that a node signs with the new
key from the next signature on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vstore.base.errors import UsageError
from vstore.store.keys import PURPOSES
from vstore.store.store import Store


def key_rotate_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    purpose = str(params.get("purpose") or "")
    if purpose not in PURPOSES:
        raise UsageError(f"no key purpose {purpose!r} (purposes: {', '.join(PURPOSES)})")
    ring = store.keys
    old = [k.key_id for k in ring.all_keys() if k.purpose == purpose and k.state == "current"]
    info = ring.rotate(purpose)
    store.index.audit(
        "key_rotate",
        str(params.get("by") or "operator"),
        {
            "purpose": purpose,
            "key_id": info.key_id,
            "algorithm": info.algorithm,
            "retired": old,
            "directory": str(ring.dir),
        },
        time.time_ns(),
    )
    return info.as_json()
