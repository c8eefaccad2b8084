"""The node's HTTP API (aiohttp): it parses, authorizes, audits and formats; the engine does
the work, on a thread pool so that the event loop never waits on a disk.

Every route is declared once in ``ROUTES``, which gives both the router and the OpenAPI
document. Errors are ``{"error": {"code", "message"}}`` with the status ``http_status`` maps
from the engine's error. A camera outside the principal's groups is answered exactly as a
camera that does not exist (404, same message), and the attempt is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from vstore._version import __version__
from vstore.base.errors import NotFound, UsageError
from vstore.base.free_text import printable
from vstore.base.jsonio import to_jsonable
from vstore.base.timebase import NS_PER_S, format_time, parse_time_ns
from vstore.export import hls
from vstore.export.clip import clip_bytes
from vstore.export.clip_file import ClipFile, open_clip_file
from vstore.export.clip_plan import MAX_CLIP_NS, ClipPlan
from vstore.export.remux import origin_ns
from vstore.export.snapshot import snapshot
from vstore.jobs import registry
from vstore.jobs.reports import timeline_doc
from vstore.service import request_bodies
from vstore.service.access import Principal, hold_in_scope
from vstore.service.byte_ranges import Unsatisfiable, requested_range
from vstore.service.clip_cache import ClipCache
from vstore.service.exports_api import ExportsApi, export_routes
from vstore.service.footage_api import FootageApi, footage_routes
from vstore.service.http_common import (
    API,
    LOCAL,
    PRINCIPAL,
    ApiError,
    Handler,
    Param,
    Route,
    as_requester,
    audit,
    errors_middleware,
    json_body,
    json_response,
    via_socket,
)
from vstore.service.jobs_api import JobsApi, job_routes
from vstore.service.jwt_auth import JwtVerifier, parse_jwt_config
from vstore.service.limits import Limits
from vstore.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from vstore.service.metrics import Metrics
from vstore.service.node import Node
from vstore.service.page_api import SESSION_COOKIE, PageApi, page_routes
from vstore.service.tokens import PREFIX as TOKEN_PREFIX
from vstore.service.tokens import TokenFile
from vstore.service.tokens_api import TokensApi, token_routes
from vstore.store import audit_log
from vstore.store.holds import hold_doc, list_holds

log = logging.getLogger(__name__)
_NOW_NS = "vstore.now_ns"  # (the request's "now", fixed at its first time read)

MAX_LINE_BYTES = 32 * 1024
BAD_REQUEST_LINES = 20  # a minute: the parser's refusals logged, the rest counted


class _QuietBadRequests(logging.Filter):
    """A request the HTTP parser refuses (a line too long, not HTTP at all) is a client's
    mistake, answered with 400: one warning line (what the client sent, escaped), not an
    error with a traceback; and at most BAD_REQUEST_LINES a minute, the rest counted in the
    next line, so a flood cannot grow the log without bound."""

    def __init__(self) -> None:
        super().__init__()
        self._window_start = 0.0
        self._shown = 0
        self._quiet = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not type(exc).__module__.startswith("aiohttp.http_exceptions"):
            return True
        now = time.monotonic()
        if now - self._window_start >= 60.0:
            self._window_start, self._shown = now, 0
        if self._shown >= BAD_REQUEST_LINES:
            self._quiet += 1
            return False
        self._shown += 1
        said = " ".join(str(exc).split())[:200]  # (one line, whatever the client sent)
        more = f" ({self._quiet} more refused before, not logged)" if self._quiet else ""
        self._quiet = 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {printable(said)}{more}"
        record.args = ()
        record.exc_info = None
        return True


logging.getLogger("aiohttp.server").addFilter(_QuietBadRequests())

STREAMED_TYPES = {"fmp4": "video/mp4", "ts": "video/mp2t"}
# A GOP's bytes never change once recorded: its URL names it by time.
_DAY_NS = 86_400 * NS_PER_S
_IMMUTABLE = {"Cache-Control": "private, max-age=86400, immutable"}

_CAMERA = Param("id", "path", "camera id")
_FROM = Param("from", "query", "start: ISO 8601 with offset, 'now' or relative (-15m)", True)
_TO = Param("to", "query", "end, as from", True)
_PURPOSE = Param("purpose", "query", "why (a case number); required when the node says so")
_NS = {"type": "string", "pattern": "^-?[0-9]{1,19}$"}  # an instant, ns since 1970
_FLAG = {"type": "string", "enum": ["0", "1", "false", "true"]}
_GOP_START = re.compile(r"-?[0-9]{1,19}")


class _Seen:
    """Keys seen lately (at most ``size``, oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self._keys: OrderedDict[Any, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, key: Any) -> bool:
        """Whether ``key`` is new (and remember it)."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


class Api:
    """The handlers, bound to one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.tokens = TokenFile(self.store.layout)
        svc = self.store.config.service
        self.limits = Limits(
            lambda: (self.store.config.service.rate_per_s, self.store.config.service.max_exports)
        )
        # A client that takes no bytes for this long is dropped (its leases go with it).
        self.write_timeout_s = svc.write_timeout_s
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vstore-http")
        self.clips = ClipCache()
        self.playlists = hls.Playlists()
        self._live_sessions = _Seen(4096)
        self.prometheus = Metrics(node)
        jwt_cfg = parse_jwt_config(self.store.config.auth.get("jwt"), "vstore.toml")
        self.jwt = JwtVerifier(jwt_cfg) if jwt_cfg is not None else None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the pool (the engine blocks on disks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args))

    # --- who is asking --------------------------------------------------------------------

    async def principal_of(self, request: web.Request) -> Principal | None:
        if via_socket(request):
            return LOCAL
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if token.startswith(TOKEN_PREFIX) or self.jwt is None:
                return self.tokens.authenticate(token)
            # (the provider's keys may have to be fetched: off the event loop)
            return await self.run(self.jwt.principal, token)
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
            # A cookie rides along with any cross-site form post; JSON cannot be sent
            # cross-site without a preflight this server never grants.
            return None
        return self.tokens.authenticate(cookie)

    def audit(self, request: web.Request, action: str, detail: dict[str, Any]) -> None:
        """A permanent record of an access (blocking: call through ``run``)."""
        audit(self.store, request, action, detail)

    async def camera(self, request: web.Request, cam: str | None = None) -> str:
        """The camera (the path's unless given), if the principal may see it; else 404
        exactly as for a camera that does not exist, the attempt audited. A camera that does
        not exist is audited too: the same durable write, so the answer's time does not tell
        another agency's camera from none."""
        cam = request.match_info["id"] if cam is None else cam
        p: Principal = request[PRINCIPAL]
        exists = cam in self.store.config.cameras or self.store.index.camera_num(cam) is not None
        if exists and p.sees(cam, self.store.config):
            return cam
        detail = {"camera": cam[:128], "path": request.path[:256]}
        await self.run(self.audit, request, "access_denied", detail)
        raise NotFound(f"no camera {cam!r}")

    # --- request values -------------------------------------------------------------------

    @staticmethod
    def time_arg(request: web.Request, name: str, required: bool = True) -> int | None:
        text = request.query.get(name)
        if text is None or not text.strip():
            if required:
                raise UsageError(f"give {name}= (ISO 8601 with an offset, 'now' or -15m)")
            return None
        # One "now" for all of a request's times: ?from=-10m&to=-9m is exactly a minute.
        now_ns = request.get(_NOW_NS)
        if now_ns is None:
            now_ns = request[_NOW_NS] = time.time_ns()
        # A '+' in a query string arrives as a space unless the client encoded it.
        return parse_time_ns(text.strip().replace(" ", "+"), now_ns)

    def range_args(self, request: web.Request, limit: bool = True) -> tuple[int, int]:
        start = self.time_arg(request, "from")
        end = self.time_arg(request, "to")
        assert start is not None and end is not None
        if end <= start:
            raise UsageError("to must be after from")
        max_s = self.store.config.service.max_clip_s
        if limit and (end - start) > max_s * NS_PER_S:
            raise UsageError(
                f"the range is {(end - start) / NS_PER_S:g} s; this node serves at most "
                f"{max_s:g} s per request ([service] max_clip_s)"
            )
        return start, end

    def purpose(self, request: web.Request, exporting: bool = True) -> str:
        """The request's purpose= (at most 500 characters); required of an export where the
        node says so, never of watching."""
        purpose = request.query.get("purpose", "").strip()
        if exporting and not purpose and self.store.config.service.require_purpose:
            raise UsageError("this node requires a purpose for exports: add purpose=CASE-NUMBER")
        return purpose[:500]

    # --- handlers -------------------------------------------------------------------------

    async def livez(self, request: web.Request) -> web.StreamResponse:
        return json_response({"live": True})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        ready = self.node.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        from vstore.service.openapi import openapi_document

        return json_response(openapi_document(ROUTES, __version__))

    def _camera_docs(self, p: Principal) -> list[dict[str, Any]]:
        config = self.store.config
        scope = p.cameras(config)
        summaries = {c.camera: c for c in self.store.cameras()}
        names = sorted(set(summaries) | set(config.cameras))
        recording = set(self.node.recording())
        out = []
        for cam in names:
            if scope is not None and cam not in scope:
                continue
            s = summaries.get(cam)
            doc: dict[str, Any] = to_jsonable(s) if s is not None else {"camera": cam}
            doc["recording"] = cam in recording
            doc["groups"] = sorted(g for g, members in config.groups.items() if cam in members)
            out.append(doc)
        return out

    async def cameras(self, request: web.Request) -> web.StreamResponse:
        docs = await self.run(self._camera_docs, request[PRINCIPAL])
        return json_response({"cameras": docs})

    async def camera_status(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)

        def status() -> dict[str, Any]:
            doc = next(d for d in self._camera_docs(request[PRINCIPAL]) if d["camera"] == cam)
            return {**doc, "status": self.node.camera_status(cam)}

        return json_response(await self.run(status))

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)
        start = self.time_arg(request, "from", required=False)
        end = self.time_arg(request, "to", required=False)
        if start is not None and end is not None and end <= start:
            raise UsageError("to must be after from")

        def build() -> dict[str, Any]:
            tl = self.store.timeline(cam, start, end)
            doc = timeline_doc(tl)
            rng = tl.range
            doc["holds"] = [
                to_jsonable(h)
                for h in list_holds(self.store)
                if h.covers(cam, rng.start_ns, rng.end_ns)
            ]
            self.audit(
                request, "view_timeline", {"camera": cam, "from": doc["from"], "to": doc["to"]}
            )
            return doc

        return json_response(await self.run(build))

    async def clip(self, request: web.Request) -> web.StreamResponse:
        fmt = request.match_info["format"]
        cam = await self.camera(request)
        if not request[PRINCIPAL].may("export"):
            raise ApiError(403, "forbidden", "exporting clips needs the investigator role")
        start, end = self.range_args(request)
        purpose = self.purpose(request)
        who = request[PRINCIPAL].key
        self.limits.begin_export(who)
        try:
            if fmt == "mp4":
                return await self._clip_mp4(request, cam, start, end, purpose)
            return await self._clip_streamed(request, cam, start, end, purpose, fmt)
        finally:
            self.limits.end_export(who)

    def _clip_headers(self, cam: str, start: int, fmt: str, request: web.Request) -> dict[str, str]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start // NS_PER_S))
        name = f"{cam}-{stamp}.{'mp4' if fmt == 'fmp4' else fmt}"
        disposition = "attachment" if request.query.get("download") in ("1", "true") else "inline"
        return {"Content-Disposition": f'{disposition}; filename="{name}"'}

    async def _clip_mp4(
        self, request: web.Request, cam: str, start: int, end: int, purpose: str
    ) -> web.StreamResponse:
        cf: ClipFile | None
        cf, done = await self.run(
            self.clips.acquire,
            (cam, start, end),
            lambda: open_clip_file(self.store, cam, start, end),
        )
        if cf is None:  # audio only FFmpeg's muxer can box: no layout ahead, no ranges
            return await self._clip_streamed(request, cam, start, end, purpose, "mp4")
        try:
            headers = {
                **self._clip_headers(cam, start, "mp4", request),
                "ETag": cf.etag,
                "Accept-Ranges": "bytes",
                "Cache-Control": "private, max-age=0",
                "X-Vstore-Start": format_time(cf.plan.start_ns),
            }
            if _etag_matches(request.headers.get("If-None-Match"), cf.etag):
                return web.Response(status=304, headers=headers)
            want: tuple[int, int] | None = None
            if_range = request.headers.get("If-Range")
            if if_range is None or if_range == cf.etag:
                try:
                    want = requested_range(request.headers.get("Range"), cf.size)
                except Unsatisfiable:
                    raise ApiError(
                        416,
                        "range_not_satisfiable",
                        f"the clip is {cf.size} bytes",
                        {"Content-Range": f"bytes */{cf.size}"},
                    ) from None
            a, b = want if want is not None else (0, cf.size)
            resp = web.StreamResponse(status=206 if want is not None else 200, headers=headers)
            resp.content_type = "video/mp4"
            resp.content_length = b - a
            if want is not None:
                resp.headers["Content-Range"] = f"bytes {a}-{b - 1}/{cf.size}"
            detail = {
                "camera": cam,
                "from": format_time(cf.plan.start_ns),
                "to": format_time(cf.plan.end_ns),
                "format": "mp4",
                "purpose": purpose,
                "bytes": f"{a}-{b - 1}/{cf.size}",
            }
            if request.method == "HEAD":
                await resp.prepare(request)
                return resp
            await self.run(self.audit, request, "export_clip", detail)
            await resp.prepare(request)
            blocks = cf.read(a, b)

            def next_block() -> bytes | memoryview | None:
                # One write per chunk, joined on the pool's thread: its samples are often
                # thousands of small pieces (audio and video interleaved), and each write is
                # a trip through the event loop.
                block = next(blocks, None)
                if block is None:
                    return None
                return block[0] if len(block) == 1 else b"".join(block)

            sent = 0
            # The next chunk is read (and checked, and joined) while this one is sent.
            ahead = asyncio.ensure_future(self.run(next_block))
            try:
                while (data := await ahead) is not None:
                    ahead = asyncio.ensure_future(self.run(next_block))
                    await asyncio.wait_for(resp.write(data), self.write_timeout_s)
                    sent += len(data)
            except (ConnectionError, TimeoutError) as exc:
                await _settled(ahead)
                await self._export_cut_short(request, detail, sent, exc)
                return resp
            except BaseException:
                await _settled(ahead)
                raise
            await resp.write_eof()
            return resp
        finally:
            await self.run(done)  # (the layout's leases go with it, now or when it expires)

    async def _export_cut_short(
        self, request: web.Request, detail: dict[str, Any], sent: int, exc: BaseException
    ) -> None:
        """A download the client stopped (or stalled past write_timeout_s): its leases go
        with this request, and the audit log says how much of it left."""
        why = "stalled" if isinstance(exc, TimeoutError) else "went away"
        log.info("%s %s: the client %s after %d bytes", request.method, request.path, why, sent)
        if request.transport is not None:
            request.transport.abort()  # dropped: what is buffered for it is not sent either
        cut = {"camera": detail["camera"], "from": detail["from"], "sent_bytes": sent,
               "reason": f"client {why}"}  # fmt: skip
        await self.run(self.audit, request, "export_incomplete", cut)

    async def _clip_streamed(
        self, request: web.Request, cam: str, start: int, end: int, purpose: str, fmt: str
    ) -> web.StreamResponse:
        planned: list[ClipPlan] = []
        blocks: Iterator[bytes] = clip_bytes(
            self.store, cam, start, end, format=fmt, on_plan=planned.append
        )
        try:
            first = await self.run(next, blocks, None)  # errors before the status is sent
            resp = web.StreamResponse(headers=self._clip_headers(cam, start, fmt, request))
            resp.content_type = STREAMED_TYPES.get(fmt, "video/mp4")
            if request.method == "HEAD":
                await resp.prepare(request)
                return resp
            # What the bytes hold: fMP4 and TS begin at the keyframe before ``from``.
            shown = origin_ns(planned[0], fmt)
            detail = {
                "camera": cam,
                "from": format_time(shown),
                "to": format_time(end),
                "requested_from": format_time(start),
                "format": fmt,
                "purpose": purpose,
            }
            await self.run(self.audit, request, "export_clip", detail)
            await resp.prepare(request)
            block = first
            sent = 0
            try:
                while block is not None:
                    await asyncio.wait_for(resp.write(block), self.write_timeout_s)
                    sent += len(block)
                    block = await self.run(next, blocks, None)
            except (ConnectionError, TimeoutError) as exc:
                await self._export_cut_short(request, detail, sent, exc)
                return resp
            await resp.write_eof()
            return resp
        finally:
            await self.run(blocks.close)

    async def hls_playlist(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)
        live = request.query.get("live") in ("1", "true")
        if live:
            now = time.time_ns()
            given = self.time_arg(request, "from", required=False)
            # A live playlist slides (its last minute) but numbers its GOPs from a fixed
            # start, so each reload continues the one before. Players should give the start
            # (the page does: a minute before they begin watching); without one it is the
            # start of the day before (UTC), which moves on once a day.
            start = given if given is not None else (now // _DAY_NS - 1) * _DAY_NS
            end = now + 60 * NS_PER_S
        else:
            # Playback is watching, not exporting: max_clip_s does not bound it; a week does
            # (a week's playlist of 2 s GOPs is some 13 MB of text).
            start, end = self.range_args(request, limit=False)
            if end - start > MAX_CLIP_NS:
                raise UsageError("a playlist spans at most 7 days; ask for less")

        purpose = self.purpose(request, exporting=False)

        def build() -> str:
            text = self.playlists.playlist(
                self.store, cam, start, end, live, hls.LIVE_WINDOW_NS if live else None
            )
            if text is None:
                raise NotFound(f"camera {cam!r} has no footage in that range")
            detail = {"camera": cam, "from": format_time(start), "live": live}
            if not live:
                detail["to"] = format_time(end)
            if purpose:
                detail["purpose"] = purpose
            # A player reloads a live playlist every few seconds from the same fixed start:
            # one watching session is one record, not one per reload.
            session = (request[PRINCIPAL].name, cam, start, live)
            if not live or self._live_sessions.first(session):
                self.audit(request, "view_playback", detail)
            return text

        text = await self.run(build)
        return web.Response(
            text=text,
            content_type="application/vnd.apple.mpegurl",
            headers={"Cache-Control": "no-cache" if live else "private, max-age=60"},
        )

    def _gop_start(self, request: web.Request) -> int:
        text = request.match_info["start"]
        # ASCII digits only: int() also takes "+1", "1_000" and other scripts' digits,
        # which would name one GOP many ways.
        if not _GOP_START.fullmatch(text) or not -(2**63) <= int(text) < 2**63:
            raise NotFound(f"no segment {text[:40]!r}")
        return int(text)

    async def hls_init(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)
        body = await self.run(hls.init_for, self.store, cam, self._gop_start(request))
        return web.Response(body=body, content_type="video/mp4", headers=_IMMUTABLE)

    async def hls_segment(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)
        bufs = await self.run(hls.media_for, self.store, cam, self._gop_start(request))
        return web.Response(body=b"".join(bufs), content_type="video/iso.segment",
                            headers=_IMMUTABLE)  # fmt: skip

    async def snapshot_jpg(self, request: web.Request) -> web.StreamResponse:
        cam = await self.camera(request)
        if not request[PRINCIPAL].may("export"):
            raise ApiError(403, "forbidden", "snapshots need the investigator role")
        at = self.time_arg(request, "at")
        assert at is not None
        purpose = self.purpose(request)

        def take() -> tuple[bytes, int]:
            buf = io.BytesIO()
            snap = snapshot(self.store, cam, at, buf, "jpg")
            self.audit(
                request,
                "export_snapshot",
                {"camera": cam, "at": format_time(at), "purpose": purpose},
            )
            return buf.getvalue(), snap.frame_at_ns

        data, frame_ns = await self.run(take)
        return web.Response(
            body=data,
            content_type="image/jpeg",
            headers={"X-Vstore-Frame-Time": format_time(frame_ns)},
        )

    async def keys(self, request: web.Request) -> web.StreamResponse:
        # Public halves only (the ring holds no private key): what verifies this node's
        # packages, EFF signatures, recording chains and audit digests, old ones included.
        ring = await self.run(lambda: [k.as_json() for k in self.store.keys.all_keys()])
        return json_response({"keys": ring})

    async def holds(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        released = request.query.get("released") in ("1", "true")

        def visible() -> list[dict[str, Any]]:
            config = self.store.config
            return [
                hold_doc(self.store, h)
                for h in list_holds(self.store, released)
                if p.sees(h.camera, config)
            ]

        return json_response({"holds": await self.run(visible)})

    async def add_hold(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        doc = await json_body(request, request_bodies.HOLD)
        cam = doc["camera"]
        await self.camera(request, cam)
        start, end = parse_time_ns(doc["from"]), parse_time_ns(doc["to"])
        if end <= start:
            raise UsageError("to must be after from")
        reason = doc["reason"].strip()
        if not reason:
            raise UsageError("give a reason (a case number)")
        params = {"action": "add", "camera": cam, "from_ns": start, "to_ns": end,
                  "reason": reason, "by": p.name}  # fmt: skip

        def add() -> dict[str, Any]:
            with as_requester(request):
                return registry.run(self.store, "hold", params)

        return json_response(await self.run(add), 201)

    async def release_hold(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        ref = request.match_info["hold"]  # its number here, or its name NODE:N
        doc = await json_body(request, request_bodies.HOLD_RELEASE)
        reason = doc["reason"]

        def release() -> dict[str, Any]:
            try:
                hold = hold_in_scope(self.store, p, ref)
            except NotFound:  # none, or another's: the same answer, and the asking recorded
                audit(self.store, request, "access_denied", {"hold": ref})
                raise
            if not reason.strip():
                raise UsageError('give "reason": why the hold is released (a case closed, ...)')
            params = {"action": "release", "id": hold.id, "by": p.name, "reason": reason}
            if "camera" in doc:
                params["camera"] = doc["camera"]
            with as_requester(request):
                return registry.run(self.store, "hold", params)

        return json_response(await self.run(release))

    async def audit_log(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        camera = request.query.get("camera")
        since = self.time_arg(request, "since", required=False)
        until = self.time_arg(request, "until", required=False)
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 10_000:
            raise UsageError("limit must be a whole number within 1..10000")
        if since is not None and until is not None and until <= since:
            raise UsageError("until must be after since")

        actions = [a for a in request.query.get("action", "").split(",") if a]
        by = request.query.get("by") or None

        def records() -> list[dict[str, Any]]:
            config = self.store.config
            out = []
            found = audit_log.query(self.store, camera=camera, actions=actions, by=by,
                                    since_ns=since, until_ns=until, newest_first=True)  # fmt: skip
            for r in found:
                # Seen when every camera it names is in scope; one naming none, by * alone.
                cams = audit_log.cameras_of(r)
                if not (p.sees_all() or (cams and all(p.sees(c, config) for c in cams))):
                    continue
                out.append({**r, "at": format_time(r["at_ns"])})
                if len(out) >= limit:
                    break
            return out

        return json_response({"records": await self.run(records)})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if not request[PRINCIPAL].sees_all():
            raise ApiError(403, "forbidden", "metrics cover every camera: use a token scoped to *")
        body = await self.run(self.prometheus.render)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def set_camera(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        if not p.sees_all():
            raise ApiError(403, "forbidden", "cameras are configured with a * token")
        cam = request.match_info["id"]
        doc = await json_body(request, request_bodies.CAMERA)

        def apply() -> dict[str, Any]:
            with as_requester(request):
                return self.node.set_camera(cam, doc, by=p.name)

        result = await self.run(apply)
        return json_response(result, 201 if result["created"] else 200)

    async def remove_camera(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        if not p.sees_all():
            raise ApiError(403, "forbidden", "cameras are configured with a * token")
        cam = request.match_info["id"]

        def apply() -> dict[str, Any]:
            with as_requester(request):
                return self.node.remove_camera(cam, by=p.name)

        return json_response(await self.run(apply))

    async def reload(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        if not p.sees_all():
            raise ApiError(403, "forbidden", "a reload may restart any camera: use a * token")

        def reload() -> dict[str, list[str]]:
            with as_requester(request):
                return self.node.reload(by=p.name)

        return json_response(await self.run(reload))


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match: ``*``, or a list of (weak or strong) validators naming ``etag``."""
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _routes(api: Api | None) -> list[Route]:
    """Every route; with ``api`` None, the handlers are unbound (for the OpenAPI document)."""

    def h(name: str) -> Handler:
        return getattr(api, name) if api is not None else getattr(Api, name)

    cam_range = (_CAMERA, _FROM, _TO)
    return [
        Route("GET", "/livez", h("livez"), "The process is alive", None),
        Route("GET", "/readyz", h("readyz"), "The store is open and recovered, cameras started", None),
        Route("GET", "/openapi.json", h("openapi"), "This document", None),
        Route("GET", "/metrics", h("metrics"), "Prometheus metrics (a token scoped to *)", "view",
              produces="text/plain"),
        Route("GET", f"{API}/cameras", h("cameras"), "Cameras the principal may see", "view"),
        Route("GET", f"{API}/cameras/{{id}}", h("camera_status"), "A camera and its recorder", "view", (_CAMERA,)),
        Route(
            "GET", f"{API}/cameras/{{id}}/timeline", h("timeline"),
            "Covered ranges, gaps, open footage, events and holds", "view",
            (_CAMERA, Param("from", "query", "start (default: first footage)"),
             Param("to", "query", "end (default: last footage)")),
        ),
        Route(
            "GET", f"{API}/cameras/{{id}}/clip.{{format:mp4|fmp4|ts}}", h("clip"),
            "A clip, remuxed, frame-exact; mp4 with Range, If-Range, ETag and HEAD", "export",
            (*cam_range, _PURPOSE, Param("download", "query", "1: as an attachment", schema=_FLAG)),
            produces=("video/mp4", "video/mp2t"), ok=(200, 206, 304),
        ),
        Route(
            "GET", f"{API}/cameras/{{id}}/hls.m3u8", h("hls_playlist"),
            "HLS playlist (fMP4 segments, wall-clock times) of a range, or live=1 for the live "
            "edge", "view", (_CAMERA, Param("from", "query", "start (live: optional)"),
                             Param("to", "query", "end (not with live)"),
                             Param("live", "query", "1: the live edge (its last minute, sliding)",
                                   schema=_FLAG),
                             Param("purpose", "query", "why (a case number): recorded with the "
                                   "playback (never required: watching is no export)")),
            produces="application/vnd.apple.mpegurl",
        ),
        Route("GET", f"{API}/cameras/{{id}}/init/{{start}}.mp4", h("hls_init"),
              "HLS initialization segment", "view",
              (_CAMERA, Param("start", "path", "a GOP's start, ns", schema=_NS)), produces="video/mp4"),
        Route("GET", f"{API}/cameras/{{id}}/seg/{{start}}.m4s", h("hls_segment"),
              "HLS media segment: one GOP as fMP4", "view",
              (_CAMERA, Param("start", "path", "the GOP's start, ns", schema=_NS)), produces="video/iso.segment"),
        Route(
            "GET", f"{API}/cameras/{{id}}/snapshot.jpg", h("snapshot_jpg"),
            "The frame on screen at an instant, as JPEG", "export",
            (_CAMERA, Param("at", "query", "the instant", True), _PURPOSE), produces="image/jpeg",
        ),
        Route("GET", f"{API}/holds", h("holds"), "Legal holds on cameras in scope", "view",
              (Param("released", "query", "1: released holds too", schema=_FLAG),)),
        Route("POST", f"{API}/holds", h("add_hold"),
              "Place a hold: {camera, from, to, reason}", "hold", body=request_bodies.HOLD,
              ok=(201,)),
        Route("POST", f"{API}/holds/{{hold}}/release", h("release_hold"),
              "Release a hold: {reason}", "hold", (Param("hold", "path", "the hold's number on this node, or its name NODE:N on any"),),
              body=request_bodies.HOLD_RELEASE),
        Route("GET", f"{API}/audit", h("audit_log"), "Audit records of cameras in scope, newest first",
              "audit", (Param("camera", "query", "only this camera"),
                        Param("action", "query", "only these actions (comma-separated)"),
                        Param("by", "query", "only records made by this principal"),
                        Param("since", "query", "at or after"), Param("until", "query", "before"),
                        Param("limit", "query", "at most this many (1000)",
                              schema={"type": "integer", "minimum": 1, "maximum": 10_000}))),
        Route("GET", f"{API}/keys", h("keys"),
              "The node's public keys, current and retired (to verify what it signed)", "view"),
        Route("PUT", f"{API}/cameras/{{id}}", h("set_camera"),
              "Set a camera's table in vstore.toml (its source and settings) and apply it: "
              "a new camera starts recording, a changed one restarts (201 when new)",
              "operate", (_CAMERA,), body=request_bodies.CAMERA, ok=(200, 201)),
        Route("DELETE", f"{API}/cameras/{{id}}", h("remove_camera"),
              "Take a camera out of vstore.toml and stop recording it (its footage stays)",
              "operate", (_CAMERA,)),
        Route("POST", f"{API}/config/reload", h("reload"),
              "Read vstore.toml again; start, restart, stop cameras", "operate"),
    ]  # fmt: skip


ROUTES = (
    page_routes(None)
    + _routes(None)
    + job_routes(None)
    + token_routes(None)
    + export_routes(None)
    + footage_routes(None)
)


def make_app(node: Node) -> web.Application:
    api = Api(node)

    def authorized(action: str | None, handler: Handler) -> Handler:
        if action is None:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            p = await api.principal_of(request)
            if p is None:
                if request.headers.get("Authorization"):
                    why = "the token is not valid (unknown, revoked or expired)"
                elif request.cookies.get(SESSION_COOKIE) and request.method in ("GET", "HEAD"):
                    why = (
                        "the session's token is no longer valid (revoked or expired): sign in again"
                    )
                elif request.cookies.get(SESSION_COOKIE) and request.method not in ("GET", "HEAD"):
                    why = "with a session cookie, a request that changes something must be JSON"
                else:
                    why = "give Authorization: Bearer TOKEN (`vstore token create` makes one)"
                raise ApiError(
                    401, "unauthorized", why, {"WWW-Authenticate": 'Bearer realm="vstore"'}
                )
            request[PRINCIPAL] = p
            api.limits.request(p.key)
            if not p.may(action):
                why = (
                    f"the {p.role} role may not do this"
                    if p.role != "none"
                    else "your identity provider grants no vstore role or group (see "
                    "[auth.jwt.roles] and [auth.jwt.groups])"
                )
                raise ApiError(403, "forbidden", why)
            return await handler(request)

        return guarded

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counted and timed by route (the route's pattern, never the raw path)."""
        t = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            api.prometheus.observe(route, request.method, status, time.perf_counter() - t)

    app = web.Application(
        middlewares=[measured, errors_middleware],
        client_max_size=64 * 1024,
        # Long query strings (a purpose, a camera list) reach the handlers and their JSON
        # errors; past these the HTTP parser refuses the request itself (a plain 400).
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    page = PageApi(api.tokens)
    tokens = TokensApi(node.store, api.tokens)
    routes = (
        page_routes(page)
        + _routes(api)
        + job_routes(JobsApi(node.jobs))
        + token_routes(tokens)
        + export_routes(ExportsApi(node.jobs, api.camera, api.run))
        + footage_routes(FootageApi(node.store, api.camera, api.run, api.range_args, api.purpose))
    )
    for r in routes:
        handler = authorized(r.action, r.handler)
        if r.method == "GET":
            app.router.add_get(r.path, handler)  # and HEAD
        else:
            app.router.add_route(r.method, r.path, handler)

    async def expire_clips(_app: web.Application):  # type: ignore[no-untyped-def]
        async def loop() -> None:
            while True:
                await asyncio.sleep(10.0)
                await api.run(api.clips.expire)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    async def on_cleanup(_app: web.Application) -> None:
        await api.run(api.clips.close)
        api.pool.shutdown(wait=True)

    app.cleanup_ctx.append(expire_clips)

    app.on_cleanup.append(on_cleanup)
    return app


async def _settled(fut: asyncio.Future[Any]) -> None:
    """Wait for a read started ahead to end, whatever it gives: the clip file it reads must
    not be closed under it."""
    with contextlib.suppress(Exception):  # (its outcome no longer matters)
        await asyncio.shield(fut)
