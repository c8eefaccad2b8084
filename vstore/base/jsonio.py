"""Compact JSON for what vstore stores (index values, markers, records) and one encoder for
what it reports: dataclasses, named tuples and paths become plain JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import PurePath
from typing import Any


def dumps_compact(doc: dict[str, Any]) -> bytes:
    """A JSON object as compact UTF-8 bytes: how records are stored."""
    return json.dumps(doc, separators=(",", ":")).encode()


def loads_dict(raw: bytes | str) -> dict[str, Any]:
    """A stored JSON object back as a dict."""
    return dict(json.loads(raw))


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from results: an object's ``as_json()`` when it has one, then
    dataclasses and named tuples field by field, paths as strings."""
    as_json = getattr(value, "as_json", None)
    if callable(as_json):
        return as_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: to_jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value
