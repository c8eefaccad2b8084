"""Running a job on a store from a command: here when the store is free, through the process
that holds it (its Unix socket) when one does. Either way the result, the output and the exit
code are those of a local run (lifecycle J1-J3).

The client speaks HTTP over the socket with the standard library only (a command's start-up
stays short); it polls the job's progress for the command's progress bar, cancels the job
when interrupted, and says so plainly when the holder goes away mid-job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vstore.api import open_store
from vstore.base import actor
from vstore.base.errors import StoreLocked, StoreReadOnly, VstoreError, error_class
from vstore.base.layout import StoreLayout
from vstore.jobs import registry
from vstore.service.http_status import error_for_code
from vstore.store.store import resolve_store_path

POLL_S = 0.1


def _pause(seconds: float) -> None:
    """Between two polls of a job (one name, for tests to interrupt)."""
    time.sleep(seconds)


Progress = Callable[[Any, Any], None]


class JobChannelError(VstoreError):
    """The process holding the store did not answer, or went away mid-job."""


def run_job(
    store_path: str | None,
    name: str,
    params: dict[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run job ``name`` on the store at ``store_path`` (which must exist): opened here when
    no other process holds it, else through the process that does (its socket); with no
    such process, StoreLocked. A dry run (``params["dry_run"]``) only reads: on a store
    this process may not write, it runs read-only."""
    try:
        with open_store(store_path, create=False) as store:
            return registry.run(store, name, params, progress)
    except StoreReadOnly:
        if not params.get("dry_run"):
            raise
        with open_store(store_path, read_only=True) as store:
            return registry.run(store, name, params, progress)
    except StoreLocked:
        sock = holder_socket(store_path)
        if sock is None:
            raise
        return call(sock, name, params, progress)


def holder_socket(store_path: str | os.PathLike[str] | None) -> Path | None:
    """The socket of the process that holds the store open for writing, when one answers
    there (a store locked by a process that serves no socket has none)."""
    sock = StoreLayout(resolve_store_path(str(store_path) if store_path else None)).socket_path
    return sock if answers(sock) else None


def answers(sock: Path) -> bool:
    """Whether a process serves the store's socket."""
    if not sock.is_socket():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


_conn_class: Any = None


def _connection(path: Path, timeout_s: float) -> Any:
    """An HTTP connection over the Unix socket at ``path``. http.client is imported here,
    on the first job that goes through a socket: it costs a command ~30 ms of start-up."""
    global _conn_class
    if _conn_class is None:
        import http.client

        class _Conn(http.client.HTTPConnection):
            def __init__(self, path: Path, timeout_s: float) -> None:
                super().__init__("localhost", timeout=timeout_s)
                self._path = path

            def connect(self) -> None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.settimeout(self.timeout)
                    s.connect(str(self._path))
                except OSError:
                    s.close()
                    raise
                self.sock = s

        _conn_class = _Conn
    return _conn_class(path, timeout_s)


def request(sock: Path, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One API call to the process holding the store, over its socket (as its LOCAL
    principal); an error answer is raised as the engine error its code names."""
    import http.client  # (loaded by _connection already)

    conn = _connection(sock, 30.0)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        doc = json.loads(r.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise JobChannelError(f"the process holding the store did not answer: {exc}") from exc
    finally:
        conn.close()
    if r.status >= 400:
        err = doc.get("error", {})
        raise error_for_code(err.get("code", ""))(err.get("message") or str(doc))
    return doc


def _rebuilt(class_name: str, message: str) -> VstoreError:
    return error_class(class_name)(message)


def call(
    sock: Path, name: str, params: dict[str, Any], progress: Progress | None
) -> dict[str, Any]:
    """Run a job through the holder's socket, following its progress; its result, or its
    error raised here as the class it had there."""
    job = request(sock, "POST", "/api/v1/jobs", {"job": name, "params": params,
                                                  "actor": actor.current()})  # fmt: skip
    path = f"/api/v1/jobs/{job['id']}"
    seen = None
    try:
        while job["state"] in ("queued", "running"):
            _pause(POLL_S)
            try:
                job = request(sock, "GET", path)
            except JobChannelError:
                raise JobChannelError(
                    f"the process holding the store stopped while job {job['id']} ({name}) "
                    "ran: whether it finished is unknown, check the store"
                ) from None
            p = job["progress"]
            if progress is not None and p["total"] is not None and (p["done"], p["total"]) != seen:
                seen = (p["done"], p["total"])
                progress(p["done"], p["total"])
    except BaseException:
        if job["state"] in ("queued", "running"):
            _cancel(sock, path)  # interrupted (Ctrl-C): the job stops at its safe point
        raise
    if job["state"] == "done":
        return dict(job["result"])
    err = job["error"] or {}
    exc = _rebuilt(err.get("class", "VstoreError"), err.get("message", "the job failed"))
    if "partial" in err:
        exc.partial = err["partial"]  # type: ignore[attr-defined]
    raise exc


def _cancel(sock: Path, path: str) -> None:
    try:
        request(sock, "DELETE", path)
    except VstoreError:
        pass  # gone already: nothing left to cancel
