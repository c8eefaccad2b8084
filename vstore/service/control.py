"""Operators' jobs on a store that another process holds open for writing.

RocksDB lets one process write a store, and on a recording server that process is `vstore
record`, all day. Legal holds and retention must still run beside it, so the lock holder
serves them: a command that finds the store locked writes a request file into
``STORE/control/``; the lock holder's ``ControlServer`` runs the same job function the command
would have run itself and writes the response, which the command prints as if it had run the
job. Files, not a socket: the store directory's permissions already say who may change the
store, and a request is durable before anyone waits on it.

A request is ``ID.request.json``; the server renames it to ``ID.running.json`` before it runs
it (so a client that gives up can tell a request nobody took, which it withdraws, from one
that is running), then writes ``ID.response.json`` and removes the running file. A server that
dies mid-job leaves the running file: the next server answers it with an error that says the
outcome is unknown (rerunning a hold could place it twice), and the client stops waiting
when the server is gone. ``server.json`` (pid, heartbeat) says a server is alive. Invariants:
docs/design/lifecycle.md J1-J3.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from vstore.api import open_store
from vstore.base import actor
from vstore.base.actor import acting_as
from vstore.base.errors import StoreLocked, StoreReadOnly, VstoreError, error_class
from vstore.base.fsutil import translate_oserror
from vstore.base.layout import StoreLayout
from vstore.jobs import registry
from vstore.store.store import pid_alive, resolve_store_path

log = logging.getLogger(__name__)


class ControlError(VstoreError):
    """The process holding the store did not answer a request (gone, stopping, or busy past
    the deadline)."""


# An idle recorder pays for these wake-ups all day (~0.1 ms each here): a second or two
# of latency is nothing to an operator's job.
HEARTBEAT_S = 2.0  # the server touches server.json this often
STALE_S = 10.0  # a heartbeat older than this: no server
SERVER_POLL_S = 1.0  # how often the server looks for requests (one listdir)
CLIENT_POLL_S = 0.05
CALL_TIMEOUT_S = 600.0  # a retention run on a large store takes a while


def run_job(
    store_path: str | None,
    name: str,
    params: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a registered job on the store at ``store_path`` (which must exist): opened here
    when no other process holds it, else through the process that does, if it serves
    requests (a running `vstore record` does); otherwise StoreLocked."""
    try:
        with open_store(store_path, create=False) as store:
            return registry.run(store, name, params, progress)
    except StoreReadOnly:
        if not params.get("dry_run"):
            raise
        # A dry run only reads: a store this process may not write is planned read-only.
        with open_store(store_path, read_only=True) as store:
            return registry.run(store, name, params, progress)
    except StoreLocked:
        layout = StoreLayout(resolve_store_path(store_path))
        if not serving(layout):
            raise
        return call(layout, name, params)


def serving(layout: StoreLayout) -> bool:
    """Whether a live process serves requests for this store."""
    path = layout.control_server_path
    try:
        pid = int(json.loads(path.read_text())["pid"])
        beat_s = path.stat().st_mtime  # the heartbeat touches the file
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if time.time() - beat_s > STALE_S:
        return False

    return pid_alive(pid)


def call(
    layout: StoreLayout, name: str, params: dict[str, Any], timeout_s: float = CALL_TIMEOUT_S
) -> dict[str, Any]:
    """Have the serving process run job ``name``; its result, or its error raised here with
    the exit code it had there."""
    request_id = uuid.uuid4().hex
    request = layout.control_request_path(request_id)
    response = layout.control_response_path(request_id)

    _write_durably(
        request, {"job": name, "params": params, "pid": os.getpid(), "actor": actor.current()}
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not response.exists():
            if time.monotonic() > deadline or not serving(layout):
                taken = not _withdraw(request)
                raise ControlError(
                    f"the process holding {layout.root} did not answer"
                    + (": whether the job ran is unknown, check the store" if taken else "")
                )
            time.sleep(CLIENT_POLL_S)
    except BaseException:
        _withdraw(request)  # interrupted (Ctrl-C): a job nobody took yet never runs
        raise
    try:
        doc = json.loads(response.read_text())
    finally:
        response.unlink(missing_ok=True)
    if "error" in doc:
        raise _error(doc["error"])
    return dict(doc["result"])


class ControlServer:
    """Serves job requests for a store this process holds open for writing, on one thread,
    one request at a time. ``start()`` then ``close()``; or use as a context manager."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.layout: StoreLayout = store.layout
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.served = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.layout.control_dir.mkdir(parents=True, exist_ok=True)
        for running in sorted(self.layout.control_dir.glob("*.running.json")):
            # A client still waiting (this server came up within STALE_S) learns the truth.
            self._answer(
                running.name.split(".", 1)[0],
                _error_reply(
                    VstoreError(
                        "the process serving this request stopped while it ran; check the "
                        "store before running it again"
                    )
                ),
            )
            running.unlink(missing_ok=True)
        _write_durably(self.layout.control_server_path, {"pid": os.getpid()}, sync=False)
        # The heartbeat has its own thread: a job may run for minutes, and a client takes a
        # silent server for a dead one after STALE_S.
        self._threads = [
            threading.Thread(target=self._beat_loop, name="vstore-control-beat", daemon=True),
            threading.Thread(target=self._loop, name="vstore-control", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop serving. A job under way stops at its next safe point (retention: after the
        segment it is deleting), and its client is told to run it again."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
            if t.is_alive():
                log.warning("control job still running after %.0f s at shutdown", timeout_s)
        self._threads = []
        try:
            doc = json.loads(self.layout.control_server_path.read_text())
            if doc.get("pid") == os.getpid():
                self.layout.control_server_path.unlink()
        except (OSError, ValueError):
            pass

    def _beat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._heartbeat()

    def _loop(self) -> None:
        swept = 0.0
        while not self._stop.wait(SERVER_POLL_S):
            try:  # this thread must outlive any one bad request or listing
                # One listdir per poll (a glob costs ten times more; an idle recorder pays
                # this all day), the sweep once a minute.
                names = os.listdir(self.layout.control_dir)
                if time.monotonic() - swept >= 60:
                    self._sweep_responses(names)
                    swept = time.monotonic()
                requests = []
                for name in names:
                    if name.endswith(".request.json"):
                        path = self.layout.control_dir / name
                        try:
                            requests.append((path.stat().st_mtime_ns, path))
                        except FileNotFoundError:
                            pass  # withdrawn while listing
                for _, path in sorted(requests):
                    if self._stop.is_set():
                        break
                    self._serve(path)
            except Exception:
                log.exception("serving control requests")

    def _progress(self, done: int, total: int) -> None:
        """Jobs call this at safe points: where they stop when this process shuts down."""
        if self._stop.is_set():
            raise VstoreError(
                f"the recorder is stopping: the job stopped after {done} of {total} steps; "
                "run it again"
            )

    def _serve(self, path: Path) -> None:
        request_id = path.name.split(".", 1)[0]
        running = self.layout.control_running_path(request_id)
        try:
            os.rename(path, running)  # taken: the client can no longer withdraw it
        except FileNotFoundError:
            return  # withdrawn by its client
        try:
            doc = json.loads(running.read_text())
            client = doc.get("pid")

            if isinstance(client, int) and not pid_alive(client):
                # Its client was killed before it could withdraw: nobody asks for it now.
                log.warning("control request %s: its client is gone; not run", request_id)
                running.unlink(missing_ok=True)
                return
            fn = registry.JOBS.get(doc.get("job"))
            if fn is None:
                raise VstoreError(f"unknown job {doc.get('job')!r}")
            params = dict(doc.get("params") or {})

            with acting_as(doc.get("actor")):  # the audit names the client, not this server
                reply: dict[str, Any] = {"result": fn(self.store, params, self._progress)}
        except VstoreError as exc:
            reply = _error_reply(exc)
        except OSError as exc:  # as the command's own last resort would report it
            reply = _error_reply(translate_oserror(exc, "the job failed"))
        except Exception as exc:  # the client must get an answer, not a hang
            log.exception("control request %s failed", request_id)
            reply = _error_reply(VstoreError(f"the job failed: {exc!r}"))
        self.served += 1
        self._answer(request_id, reply)
        running.unlink(missing_ok=True)

    def _sweep_responses(self, names: list[str]) -> None:
        """Responses nobody collected (their client was killed) go after CALL_TIMEOUT_S."""
        cutoff = time.time() - 2 * CALL_TIMEOUT_S
        for name in names:
            if not name.endswith(".response.json"):
                continue
            p = self.layout.control_dir / name
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                pass

    def _answer(self, request_id: str, reply: dict[str, Any]) -> None:
        try:
            _write_durably(self.layout.control_response_path(request_id), reply)
        except (OSError, TypeError, ValueError) as exc:  # TypeError: a result not JSON
            log.error("cannot answer control request %s: %s", request_id, exc)
            try:
                _write_durably(
                    self.layout.control_response_path(request_id),
                    _error_reply(VstoreError(f"the job's answer could not be written: {exc!r}")),
                )
            except OSError as again:  # the client times out and says the outcome is unknown
                log.error("cannot answer control request %s: %s", request_id, again)

    def _heartbeat(self) -> None:
        """Touch server.json (one syscall: an idle recorder does this all day)."""
        try:
            os.utime(self.layout.control_server_path)
        except OSError as exc:
            log.warning("cannot touch %s: %s", self.layout.control_server_path, exc)


def _error_reply(exc: VstoreError) -> dict[str, Any]:
    """An error as the client rebuilds it: its class by name, and its message."""
    return {"error": {"type": type(exc).__name__, "message": str(exc)}}


def _withdraw(request: Path) -> bool:
    """Take back a request nobody took: True if it was still waiting (its job never runs)."""
    try:
        request.unlink()
        return True
    except FileNotFoundError:
        return False


def _write_durably(path: Path, doc: dict[str, Any], sync: bool = True) -> None:
    """Write a JSON file whole: temporary file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _error(doc: dict[str, Any]) -> VstoreError:
    """The error a server reported, as the VstoreError class it raised."""
    return error_class(str(doc.get("type", "")))(str(doc.get("message", "the job failed")))
