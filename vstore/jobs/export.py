"""The export job: a signed evidence package of cameras and ranges (what `vstore export`
runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vstore.base.errors import UsageError
from vstore.base.layout import validate_camera_id
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
    r = export_package(
        store,
        items,
        out,
        case=str(params.get("case") or ""),
        purpose=str(params.get("purpose") or ""),
        by=str(params.get("by") or ""),
        progress=progress,
    )
    return {**r._asdict()}
