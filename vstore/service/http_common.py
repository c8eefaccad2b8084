"""What every HTTP face of a node shares: the route table's records, JSON errors and the
middleware that maps engine errors to them, request bodies, and who a local client is."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from vstore.base.actor import acting_as
from vstore.base.errors import StoreLocked, UsageError, VstoreError
from vstore.base.jsonio import to_jsonable
from vstore.service.access import Principal
from vstore.service.http_status import http_status
from vstore.service.limits import TooMany, retry_after_header
from vstore.service.request_bodies import Schema, check_body
from vstore.store.store import Store

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_BODY_BYTES = 64 * 1024

# Whoever can open the store's Unix socket (mode 0600) is the store's own user.
LOCAL = Principal("local", "admin", ("*",), "local:socket")
# Who is asking, set on the request once authenticated.
PRINCIPAL = web.RequestKey("principal", Principal)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" | "path"
    description: str
    required: bool = False
    schema: dict[str, Any] | None = None  # its JSON Schema (None: a string)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    action: str | None  # what the principal must be allowed; None: no authentication
    params: tuple[Param, ...] = ()
    produces: str | tuple[str, ...] = "application/json"  # (several: one by the path)
    body: Schema | None = None  # the JSON Schema of its request body (request_bodies.py)
    ok: tuple[int, ...] = (200,)  # the statuses of success it answers with


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(
        status=status, text=body, content_type="application/json", headers=headers or {}
    )


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(to_jsonable(doc)), content_type="application/json"
    )


def via_socket(request: web.Request) -> bool:
    """Whether the request came through a Unix socket (the store's own)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return isinstance(sockname, str)


def as_requester(request: web.Request) -> AbstractContextManager[None]:
    """Attribute what runs in the block (audit records, jobs) to the request's principal and
    address."""
    p: Principal = request[PRINCIPAL]
    return acting_as(p.as_actor(request.remote or ""))


def audit(store: Store, request: web.Request, action: str, detail: dict[str, Any]) -> None:
    """A permanent record of what the request's principal did (blocking: off the loop)."""
    with as_requester(request):
        store.index.audit(action, request[PRINCIPAL].name, detail, time.time_ns())


async def serve_store_socket(runner: web.AppRunner, sock: Path) -> None:
    """Listen on the store's Unix socket, created mode 0600 (the store's own user). A socket
    left there by a process that died is replaced: the caller holds the store's lock, so no
    live process serves it; anything else at that path is refused."""
    if sock.is_socket():
        sock.unlink()
    elif sock.exists():
        raise StoreLocked(f"{sock} exists and is not a socket: move it away")
    old_umask = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(sock)).start()
    finally:
        os.umask(old_umask)


async def json_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The request's JSON object (at most MAX_BODY_BYTES), held to its route's ``schema``
    (request_bodies.py): a misspelt key or a wrong type is refused, never ignored."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "a request body is at most 64 KiB")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "a request body is at most 64 KiB")
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the body must be a JSON object") from None
    except RecursionError:  # (nested deeper than the parser goes: no request needs that)
        raise UsageError("the body's JSON nests too deep") from None
    if not isinstance(doc, dict):
        raise UsageError("the body must be a JSON object")
    check_body(schema, doc)
    return doc


# A clip's path with any extension: one the routes do not serve is answered with the ones
# they do.
_CLIP_PATH = re.compile(r"/api/v1/cameras/[^/]+/clip\.[^/]*")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON error with the status mapped from the engine's error."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, str(exc), exc.headers)
    except TooMany as exc:
        after = retry_after_header(exc.retry_after_s)
        return error_response(429, "too_many_requests", str(exc), {"Retry-After": after})
    except VstoreError as exc:
        status, code = http_status(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(status, code, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = exc.reason
        if exc.status == 404 and _CLIP_PATH.fullmatch(request.path):
            # (said of any camera, seen or not: it names no camera's existence)
            message = (
                "no such clip format: the node serves clip.mp4, clip.fmp4 and clip.ts "
                "(QuickTime .mov, for G.711 audio, is made by `vstore clip` on the host)"
            )
        return error_response(
            exc.status,
            code,
            message,
            {"Allow": exc.headers.get("Allow", "")} if exc.status == 405 else None,
        )
    except (ConnectionError, asyncio.CancelledError, TimeoutError):
        raise  # the client went away or stalled: nothing to answer
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error (see the node's log)")
