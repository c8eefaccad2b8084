"""The import job: an existing recording placed at a wall-clock start (what `vstore import`
runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vstore.base.errors import NotFound, UsageError
from vstore.base.layout import validate_camera_id
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_time
from vstore.export.remux import AUDIO_CODECS_OK
from vstore.ingest.file_import import import_file
from vstore.store import imports
from vstore.store.store import Store


def _abandon(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """Give up the unfinished import at ``camera`` and ``start_ns``: ``keep`` what it stored,
    or ``discard`` it (deleted as F4 deletes, a hold refusing it)."""
    how = params["abandon"]
    if how not in ("keep", "discard"):
        raise UsageError(f"--abandon {how}: keep (what it stored) or discard (delete it)")
    camera = validate_camera_id(str(params.get("camera", "")))
    start_ns = int(params["start_ns"])
    num = store.index.camera_num(camera)
    prior = imports.find(store, num, start_ns) if num is not None else None
    if prior is None:
        raise NotFound(
            f"no unfinished import into camera {camera!r} at {format_time(start_ns)} "
            "(`vstore check` lists them)"
        )
    if camera in store.writing_cameras():
        raise UsageError(
            f"camera {camera!r} is being written here now (the import may still run): wait "
            "for it, or stop it, before giving it up"
        )
    by = str(params.get("by") or "import")
    n = (
        imports.keep(store, prior, by)
        if how == "keep"
        else imports.replace(store, prior, by, reason="import_discarded")
    )
    return {
        "camera": camera,
        "file": prior.file,
        "start": format_time(start_ns),
        "start_ns": start_ns,
        "abandoned": how,
        "segments": n,
    }


def import_job(
    store: Store, params: dict[str, Any], progress: Callable[[float, float], None] | None = None
) -> dict[str, Any]:
    """``file`` (an absolute path on this host), ``camera``, ``start_ns``, ``max_rate``
    (bytes/s, 0: unpaced). ``progress(done_s, total_s)`` in media seconds. With
    ``abandon`` (``keep`` or ``discard``) and no file: the unfinished import at that camera
    and start is given up (lifecycle F5)."""
    if params.get("abandon"):
        return _abandon(store, params)
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
    warnings = list(r.warnings)
    warnings += [
        f"its {codec} sound is stored as recorded, but no clip format delivers it without "
        "transcoding"
        for codec in r.audio_codecs
        if not any(codec in ok for ok in AUDIO_CODECS_OK.values())
    ]
    warnings += [f"ignored {s}" for s in r.ignored]
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
        "warnings": warnings,
        "max_rate_bytes": rate,
        "replaced_segments": r.replaced_segments,
    }
