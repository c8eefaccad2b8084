"""JSON in vstore: compact records for what it stores, and the one encoder of what it reports.

Reports are dataclasses (or named tuples) encoded field by field; a field typed ``WallNs`` is
shown as ISO 8601 text beside its integer, and a class lists computed values it reports in
``JSON_EXTRA``. A class whose report is a different shape than its fields (a nested view, such
as a clip plan) says so with its own ``as_json``.
"""

import json
import types
import typing
from functools import cache
from pathlib import PurePath
from typing import Any

from vstore.base.timebase import WALL_CLOCK, format_time


def dumps_compact(doc: Any, sort_keys: bool = False) -> bytes:
    """A JSON document as compact UTF-8 bytes: how records are stored."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=sort_keys).encode()


def loads_dict(raw: bytes | str) -> dict[str, Any]:
    """A stored JSON object back as a dict."""
    return dict(json.loads(raw))


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from a report object, recursively."""
    as_json = getattr(value, "as_json", None)
    if callable(as_json):
        return as_json()
    # (a dataclass instance, tested as dataclasses.is_dataclass does: reports need not
    # load the dataclasses module into every command)
    if (hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type)) or (
        isinstance(value, tuple) and hasattr(value, "_fields")
    ):
        return _record(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def _record(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, wall in _fields(type(value)):
        v = getattr(value, name)
        if wall:
            out[name.removesuffix("_ns")] = None if v is None else format_time(v)
        out[name] = to_jsonable(v)
    for name in getattr(value, "JSON_EXTRA", ()):
        out[name] = to_jsonable(getattr(value, name))
    return out


@cache
def _fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, is a wall-clock instant) of each field a report shows, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    if hasattr(cls, "__dataclass_fields__"):
        import dataclasses  # (loaded already: the class is one)

        names = [f.name for f in dataclasses.fields(cls)]
    else:
        names = list(cls._fields)  # type: ignore[attr-defined]
    return tuple((n, _is_wall(hints.get(n))) for n in names)


def _is_wall(tp: Any) -> bool:
    if typing.get_origin(tp) is typing.Annotated:
        return WALL_CLOCK in tp.__metadata__
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_wall(a) for a in typing.get_args(tp))
    return False
