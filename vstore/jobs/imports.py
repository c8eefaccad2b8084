"""The import job: an existing recording placed at a wall-clock start (what `vstore import`
runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vstore.base.errors import UsageError
from vstore.base.layout import validate_camera_id
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_time
from vstore.ingest.file_import import import_file
from vstore.store.store import Store


def import_job(
    store: Store, params: dict[str, Any], progress: Callable[[float, float], None] | None = None
) -> dict[str, Any]:
    """``file`` (an absolute path on this host), ``camera``, ``start_ns``, ``max_rate``
    (bytes/s, 0: unpaced). ``progress(done_s, total_s)`` in media seconds."""
    path = Path(str(params.get("file", "")))
    if not path.is_absolute():
        raise UsageError(f"{path}: give the file as an absolute path")
    camera = validate_camera_id(str(params.get("camera", "")))
    rate = int(params.get("max_rate") or 0)
    r = import_file(
        store,
        path,
        camera,
        int(params["start_ns"]),
        progress=progress,
        rate=RateLimiter(rate) if rate else None,
    )
    first_ns = r.first_ns if r.first_ns is not None else r.start_ns
    return {
        "camera": r.camera,
        "file": str(path),
        "from": format_time(first_ns),
        "from_ns": first_ns,
        "to": format_time(r.end_ns) if r.end_ns else None,
        "to_ns": r.end_ns,
        "packets": r.packets,
        "bytes": r.bytes,
        "segments": r.segments,
        "stats": r.stats,
        "ignored_streams": list(r.ignored),
        "warnings": list(r.warnings),
        "max_rate_bytes": rate,
        "replaced_segments": r.replaced_segments,
    }
