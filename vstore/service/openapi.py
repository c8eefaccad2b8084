"""The OpenAPI 3.1 document of the node's HTTP API, built from its route table so that it
cannot drift from what the router serves."""

from __future__ import annotations

import re
from typing import Any

from vstore.service.access import role_needed

_PATTERN = re.compile(r"\{(\w+):([^}]+)\}")

_WHAT = {
    200: "OK",
    201: "created",
    202: "accepted: a job, to follow at its URL",
    206: "the byte range asked for",
    304: "not modified (If-None-Match)",
}

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
}


def _operation_id(handler: Any) -> str:
    """A handler's name, prefixed by its API's (``create`` of TokensApi: tokens_create)."""
    owner, _, name = handler.__qualname__.rpartition(".")
    prefix = owner.removesuffix("Api").lower()
    return f"{prefix}_{name}" if prefix else name


def openapi_document(routes: list[Any], version: str) -> dict[str, Any]:
    """The document of ``routes`` (``http_api.Route``s)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        enums = {m.group(1): m.group(2).split("|") for m in _PATTERN.finditer(r.path)}
        path = _PATTERN.sub(r"{\1}", r.path)
        produced = (r.produces,) if isinstance(r.produces, str) else r.produces
        params = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": p.schema or {"type": "string"},
            }
            for p in r.params
        ]
        params += [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "enum": e}}
            for name, e in enums.items()
        ]
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _operation_id(r.handler),
            "parameters": params,
            "responses": {
                **{
                    str(code): {
                        "description": _WHAT[code],
                        "content": {t: {} for t in produced},
                    }
                    for code in r.ok
                },
                "default": {
                    "description": "an error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        if r.action is not None:
            op["security"] = [{"bearer": []}, {"session": []}]
            op["description"] = (
                f"Needs the {role_needed(r.action)} role or above, and the camera in the "
                "principal's groups (docs/design/service.md, Access)."
            )
        if r.body:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": r.body}},
            }
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "vstore node API", "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "vstore_token"},
            },
        },
    }
