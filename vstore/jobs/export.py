"""The export job: a signed evidence package of cameras and ranges (what `vstore export`
runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vstore.base.errors import UsageError, VstoreError
from vstore.base.fsutil import translate_oserror
from vstore.base.layout import validate_camera_id
from vstore.base.timebase import format_time
from vstore.evidence.package import ExportItem, export_package
from vstore.store.store import Store


def export_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``items`` (a list of {camera, from_ns, to_ns}), ``out`` (an absolute path on this host,
    ending in .zip for a ZIP), ``case``, ``purpose``, ``by``."""
    out = Path(str(params.get("out", "")))
    if not out.is_absolute():
        raise UsageError(f"{out}: give the package's path as an absolute path")
    items: list[ExportItem] = []
    for it in params.get("items") or []:
        try:
            cam = validate_camera_id(str(it["camera"]))
            start, end = int(it["from_ns"]), int(it["to_ns"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"an export item is {{camera, from_ns, to_ns}}: {exc}") from None
        if end <= start:
            raise UsageError(f"camera {cam}: the range ends before it starts")
        items.append(ExportItem(cam, start, end))
    case, purpose, by = (str(params.get(k) or "") for k in ("case", "purpose", "by"))
    try:
        try:
            r = export_package(
                store, items, out, case=case, purpose=purpose, by=by, progress=progress
            )
        except OSError as exc:  # (where the package goes: read-only, full, not ours)
            raise translate_oserror(exc, f"cannot write the package {out}") from exc
    except VstoreError as exc:
        # A failed export is evidence of an attempt: who asked, for what, and why it failed.
        store.index.audit(
            "export_failed",
            by or "?",
            {
                "case": case[:200],
                "purpose": purpose[:200],
                "clips": [
                    {
                        "camera": i.camera,
                        "from": format_time(i.start_ns),
                        "to": format_time(i.end_ns),
                    }
                    for i in items
                ],
                "error": str(exc)[:500],
            },
            store.clock.wall_ns(),
        )
        raise
    return {**r._asdict()}
