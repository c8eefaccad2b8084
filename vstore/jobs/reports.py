"""The JSON documents of the engine's answers, one shape whichever face gives them: the CLI's
``--json`` and the HTTP API print the same fields."""

from __future__ import annotations

from typing import Any

from vstore.base.timebase import format_time
from vstore.store.store import Timeline


def spans_doc(spans: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [
        {"from": format_time(s), "to": format_time(e), "from_ns": s, "to_ns": e} for s, e in spans
    ]


def timeline_doc(tl: Timeline) -> dict[str, Any]:
    """A camera's covered ranges, gaps, footage of open segments and recorded events."""
    return {
        "camera": tl.camera,
        "from": format_time(tl.range.start_ns),
        "to": format_time(tl.range.end_ns),
        "covered": spans_doc(tl.covered),
        "gaps": spans_doc(tl.gaps),
        "open": spans_doc(tl.open),
        "events": [{"at": format_time(ev["at_ns"]), **ev} for ev in tl.events],
    }
