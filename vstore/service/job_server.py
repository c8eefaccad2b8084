"""The job API on the store's Unix socket, for a process that holds a store open for writing
without serving HTTP: `vstore record`, or a recording server that embeds vstore. RocksDB
lets one process write a store; with this, `vstore token`, `vstore hold`, `retention run`, `tier run`,
`import` and `check --repair` run beside it, through it (lifecycle J1-J3).

    with JobServer(store):
        ... record ...

The socket is created mode 0600 (the store's own user), on an event loop of its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web

from vstore.service.http_common import (
    LOCAL,
    PRINCIPAL,
    Handler,
    errors_middleware,
    serve_store_socket,
)
from vstore.service.job_runner import JobRunner
from vstore.service.jobs_api import JobsApi, job_routes
from vstore.service.tokens import TokenFile
from vstore.service.tokens_api import TokensApi, token_routes
from vstore.store.store import Store


def _local(handler: Handler) -> Handler:
    async def as_local(request: web.Request) -> web.StreamResponse:
        request[PRINCIPAL] = LOCAL
        return await handler(request)

    return as_local


def job_app(runner: JobRunner) -> web.Application:
    """Jobs, and the token routes: `vstore token` beside a recorder goes through them, so
    that tokens issued and revoked are audited by the process that writes the log."""
    app = web.Application(middlewares=[errors_middleware])
    tokens = TokensApi(runner.store, TokenFile(runner.store.layout))
    for r in job_routes(JobsApi(runner)) + token_routes(tokens):
        app.router.add_route(r.method, r.path, _local(r.handler))
    return app


class JobServer:
    """Runs clients' jobs on ``store`` through its Unix socket until closed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runner = JobRunner(store)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="vstore-jobs", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(job_app(self.runner), access_log=None)
        await runner.setup()
        sock = self.store.layout.socket_path
        try:
            await serve_store_socket(runner, sock)
            self._started.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            sock.unlink(missing_ok=True)

    def close(self) -> None:
        """Cancel running jobs (each stops at its safe point), then stop serving."""
        self.runner.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
