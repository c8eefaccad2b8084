"""A camera's own segments over HTTP (``/api/v1/cameras/{id}/segments``), for a reader that
has the bucket: the list of what this node holds of a range (as catalog entries, the
segment being written included up to its last durable chunk), and each segment's bytes by
range. Both need the export role and a camera in the principal's scope (another's is the
same 404 as a camera that does not exist). A listing is an export: audited (with its
purpose), held to the node's [service] max_clip_s and require_purpose; a segment's bytes are
served only to a principal a listing named it to, within 15 minutes, so every byte served
is covered by an audited listing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound, SegmentMissing
from vstore.base.layout import node_segment_path
from vstore.base.timebase import format_time
from vstore.lifecycle.hot_footage import local_entries, local_segment
from vstore.service.access import Principal
from vstore.service.byte_ranges import Unsatisfiable, requested_range
from vstore.service.http_common import (
    API,
    PRINCIPAL,
    ApiError,
    Param,
    Route,
    audit,
    json_response,
)
from vstore.store.store import Store

CameraCheck = Callable[[web.Request], Awaitable[str]]
Runner = Callable[..., Awaitable[Any]]
BLOCK_BYTES = 1 << 20  # read and sent a block at a time


GRANT_S = 900.0  # how long a listing lets its principal read the segments it listed
MAX_GRANTS = 200_000


class FootageApi:
    def __init__(
        self,
        store: Store,
        camera: CameraCheck,
        run: Runner,
        range_args: Callable[[web.Request], tuple[int, int]],
        purpose: Callable[[web.Request], str],
    ) -> None:
        self.store = store
        self._camera = camera  # the scope check: out of scope is "no camera", audited
        self._run = run  # off the event loop
        # from= and to= held to [service] max_clip_s, and purpose= to require_purpose: as
        # for a clip (the listing is what lets its segments be read)
        self._range_args = range_args
        self._purpose = purpose
        # (principal, camera, segment name) -> until when (monotonic) it may be read: bytes
        # are served only of segments an audited listing gave that principal.
        self._grants: dict[tuple[str, str, str], float] = {}

    def _may_export(self, request: web.Request) -> None:
        p: Principal = request[PRINCIPAL]
        if not p.may("export"):
            raise ApiError(403, "forbidden", "reading footage needs the investigator role")

    async def segments(self, request: web.Request) -> web.StreamResponse:
        cam = await self._camera(request)
        self._may_export(request)
        start, end = self._range_args(request)
        purpose = self._purpose(request)
        who = request[PRINCIPAL].name

        def listing() -> dict[str, Any]:
            entries = local_entries(self.store, cam, start, end)
            audit(self.store, request, "export_segments",
                  {"camera": cam, "from": format_time(start), "to": format_time(end),
                   "purpose": purpose, "segments": len(entries)})  # fmt: skip
            return {"store": self.store.uuid, "camera": cam, "segments": entries}

        doc = await self._run(listing)
        until = time.monotonic() + GRANT_S
        self._forget_expired()
        for e in doc["segments"]:
            name = node_segment_path(e["row"]["start_ns"], e["row"]["segment_id"])
            self._grants[(who, cam, name)] = until
        return json_response(doc)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        if len(self._grants) > MAX_GRANTS // 2:
            self._grants = {k: t for k, t in self._grants.items() if t > now}
            while len(self._grants) > MAX_GRANTS // 2:  # (the oldest go first)
                self._grants.pop(next(iter(self._grants)))

    async def segment(self, request: web.Request) -> web.StreamResponse:
        cam = await self._camera(request)
        self._may_export(request)
        name = request.match_info["segment"]
        row, size = await self._run(local_segment, self.store, cam, name)
        key = (request[PRINCIPAL].name, cam, name)
        if self._grants.get(key, 0.0) < time.monotonic():
            raise ApiError(
                403,
                "forbidden",
                "list the camera's segments first (GET .../segments?from=&to=, audited): a "
                "segment is served to whom a listing named it, for 15 minutes",
            )
        try:
            want = requested_range(request.headers.get("Range"), size)
        except Unsatisfiable:
            raise ApiError(
                416,
                "range_not_satisfiable",
                f"the segment has {size} bytes to read",
                {"Content-Range": f"bytes */{size}"},
            ) from None
        a, b = want if want is not None else (0, size)
        # (opened before the answer starts: a file gone from the disk is a 404, not a
        # connection cut after the headers)
        try:
            reader = await self._run(self.store.segment_reader, row)
        except (NotFound, SegmentMissing):  # (its path is the node's business, not the reader's)
            raise NotFound(f"camera {cam}'s segment {name} is no longer on this node") from None
        resp = web.StreamResponse(status=206 if want is not None else 200)
        resp.content_type = "application/octet-stream"
        resp.content_length = b - a
        resp.headers["Accept-Ranges"] = "bytes"
        if want is not None:
            resp.headers["Content-Range"] = f"bytes {a}-{b - 1}/{size}"
        try:
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            at = a
            while at < b:
                n = min(BLOCK_BYTES, b - at)
                await resp.write(await self._run(reader.src.read, at, n))
                at += n
        finally:
            await self._run(reader.close)
        await resp.write_eof()
        return resp


def footage_routes(api: FootageApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(FootageApi, name)

    cam = Param("id", "path", "camera id")
    return [
        Route("GET", f"{API}/cameras/{{id}}/segments", h("segments"),
              "This node's own segments of a range (tiered or not), as shared-catalog entries: "
              "what a reader with the bucket fetches the footage not tiered yet by", "export",
              (cam, Param("from", "query", "start", True), Param("to", "query", "end", True),
               Param("purpose", "query", "why (a case number); required when the node says so"))),
        Route("GET", f"{API}/cameras/{{id}}/segments/{{segment}}", h("segment"),
              "A segment's bytes (those durable so far while it is written), with Range",
              "export", (cam, Param("segment", "path", "START_NS.SEGMENT_ID, as listed")),
              produces="application/octet-stream", ok=(200, 206)),
    ]  # fmt: skip
