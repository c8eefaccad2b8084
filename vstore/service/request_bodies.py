"""The JSON Schema of every request body the HTTP API takes. The OpenAPI document publishes
these, and ``check_body`` holds each request to its own (with ``jsonschema``), so what the
document promises is what the node accepts: a misspelt key or a wrong type is a 400 naming
it, never ignored."""

from __future__ import annotations

from typing import Any

from vstore.base.errors import UsageError
from vstore.jobs.registry import JOBS, PARAMS
from vstore.service.access import ROLES

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": 4096}
_TIME: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "ISO 8601 with offset, 'now' or relative to now (-15m)",
}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


HOLD = _object(
    {
        "camera": _TEXT,
        "from": _TIME,
        "to": _TIME,
        "reason": {**_TEXT, "description": "why: a case number"},
    }
)
HOLD_RELEASE = _object(
    {"reason": {**_TEXT, "description": "why the hold ends"}},
    {"camera": {**_TEXT, "description": "the camera the hold is of: a hold of another is refused"}},
)

MAX_EXPORT_ITEMS = 32
EXPORT = _object(
    {
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EXPORT_ITEMS,
            "items": _object({"camera": _TEXT, "from": _TIME, "to": _TIME}),
        },
        "case": _TEXT,
        "purpose": _TEXT,
    }
)

SESSION = _object({"token": _TEXT})

# A camera's table in vstore.toml (docs/design/service.md, Configuration).
CAMERA = _object(
    {"url": {**_TEXT, "description": "its source: rtsp://, tcp://, udp://, or a file"}},
    {
        "name": _TEXT,
        "location": _TEXT,
        "timezone": {**_TEXT, "description": "IANA time zone of its local times"},
        "demuxer": {"enum": ["auto", "ffmpeg"]},
        "segment_duration_s": {"type": "number"},
        "fsync_interval_s": {"type": "number"},
        "max_chunk_bytes": {"type": "integer"},
        "max_clock_drift_s": {"type": "number"},
        "queue_packets": {"type": "integer"},
        "drop_page_cache": {"type": "boolean"},
    },
)

TOKEN = _object(
    {
        "name": _TEXT,
        "role": {"enum": list(ROLES)},
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": _TEXT,
            "description": 'camera groups, or ["*"] for every camera',
        },
    },
    {"expires": {"type": ["string", "null"], "description": "a lifetime: 30d, 12h"}},
)

_JSON_TYPE = {int: "integer", str: "string", bool: "boolean", list: "array"}


def _params(name: str) -> Schema:
    """A job's own parameters (registry.PARAMS), each of its types or null."""
    props = {
        key: {"type": [*(_JSON_TYPE[t] for t in types), "null"]}
        for key, types in PARAMS.get(name, {}).items()
    }
    return {"type": "object", "properties": props, "additionalProperties": False}


_job_bodies: dict[tuple[str, ...], Schema] = {}


def job_body() -> Schema:
    """A job request's body: the job's name picks its parameters. (Built from the job table
    as it stands: a test, or a later version, may add to it.)"""
    names = tuple(sorted(JOBS))
    schema = _job_bodies.get(names)
    if schema is None:
        schema = _job_bodies[names] = {
            **_object(
                {"job": {"enum": list(names)}},
                {
                    "params": {"type": "object"},
                    "actor": {
                        "type": "object",
                        "description": "who runs the CLI (user, uid, host, command): the local "
                        "socket's only",
                    },
                },
            ),
            "allOf": [
                {
                    "if": {"properties": {"job": {"const": name}}, "required": ["job"]},
                    "then": {"properties": {"params": _params(name)}},
                }
                for name in names
                if name in PARAMS  # (a job registered without a parameter table: tests')
            ],
        }
    return schema


_validators: dict[int, tuple[Schema, Any]] = {}


def check_body(schema: Schema, doc: Any) -> None:
    """Raise UsageError naming the first way ``doc`` breaks ``schema``."""
    # (Loaded with the first request body: an idle node with many cameras stays ~11 MB
    # smaller, which the service's memory target counts.)
    import jsonschema

    kept = _validators.get(id(schema))
    if kept is None or kept[0] is not schema:
        kept = _validators[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    err = jsonschema.exceptions.best_match(kept[1].iter_errors(doc))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path)
        message = f"{where}: {err.message}" if where else err.message
        known = err.schema.get("properties") if isinstance(err.schema, dict) else None
        if err.validator == "additionalProperties" and known:
            message += f" (it takes: {', '.join(known)})"
        raise UsageError(message)
