"""The clip download path of `vstore serve` rebuilt on Starlette and uvicorn, for the framework
comparison in bench_http (not shipped): the same token check, audit record, kept layouts and
ClipFile reads on a thread, the bytes streamed by Starlette. Serves VSTORE_BENCH_STORE."""

from __future__ import annotations

import os
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vstore.api import open_store
from vstore.base.timebase import parse_time_ns
from vstore.export.clip_file import open_clip_file
from vstore.service.clip_cache import ClipCache
from vstore.service.tokens import TokenFile

store = open_store(os.environ["VSTORE_BENCH_STORE"])
tokens = TokenFile(store.layout)
clips = ClipCache()


async def clip(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    p = tokens.authenticate(auth.partition(" ")[2].strip())
    if p is None:
        return JSONResponse({"error": {"code": "unauthorized", "message": "token"}}, 401)
    cam = request.path_params["id"]
    start = parse_time_ns(request.query_params["from"])
    end = parse_time_ns(request.query_params["to"])
    key = (cam, start, end)
    cf, done = await run_in_threadpool(
        clips.acquire, key, lambda: open_clip_file(store, cam, start, end)
    )
    await run_in_threadpool(
        store.index.audit, "export_clip", p.name, {"camera": cam}, time.time_ns()
    )
    blocks = cf.read()

    async def body():
        try:
            while True:
                block = await run_in_threadpool(next, blocks, None)
                if block is None:
                    return
                yield b"".join(block)  # one send per chunk, as vstore serve does
        finally:
            await run_in_threadpool(done)

    headers = {"ETag": cf.etag, "Accept-Ranges": "bytes", "Content-Length": str(cf.size)}
    return StreamingResponse(body(), media_type="video/mp4", headers=headers)


app = Starlette(routes=[Route("/api/v1/cameras/{id}/clip.mp4", clip)])
