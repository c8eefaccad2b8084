"""A real `vstore serve` process for tests: started on 127.0.0.1 with a free port, stopped by
its PID; and a small HTTP client (TCP or the store's Unix socket) that returns status,
headers and body as they came."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self._path)
        self.sock = s


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


class Node:
    """A running `vstore serve` on a store directory."""

    def __init__(self, store: Path, proc: subprocess.Popen, url: str) -> None:
        self.store, self.proc, self.url = store, proc, url
        host_port = url.split("//", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        unix: bool = False,
    ) -> Response:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if unix:
            conn: http.client.HTTPConnection = UnixHTTPConnection(str(self.store / "vstore.sock"))
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return self.request("GET", path, token, **kw)

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def vstore(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vstore.cli.main", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def make_token(store: Path, role: str, groups: str, name: str | None = None) -> str:
    out = vstore("token", "create", "--store", str(store), "--name", name or f"{role}-{groups}",
                 "--role", role, "--groups", groups, "--json")  # fmt: skip
    return json.loads(out.stdout)["token"]


def start_node(store: Path, *extra: str, new_session: bool = False) -> Node:
    """A `vstore serve` of ``store`` on a free port, once ready; ``new_session``: in a
    process group of its own (to be signalled as systemd signals a service's group)."""
    cmd = [sys.executable, "-m", "vstore.cli.main", "serve", "--store", str(store)]
    cmd += ["--listen", "127.0.0.1:0", "--json", *extra]
    # The log goes to a file: a pipe nobody reads would stall the node once full.
    log = store.parent / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=new_session)  # fmt: skip
    deadline = time.monotonic() + 60
    text = ""
    doc = None
    while doc is None:  # the --json document, once whole
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            proc.kill()
            raise RuntimeError(f"vstore serve did not start: {log.read_text()}")
        text += line
        try:
            doc = json.loads(text)
        except ValueError:
            continue
    node = Node(store, proc, doc["url"])
    while time.monotonic() < deadline:
        if node.get("/readyz").status == 200:
            return node
        time.sleep(0.05)
    node.stop()
    raise RuntimeError("vstore serve never became ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Until a server process listens on 127.0.0.1:port (RuntimeError if it exits first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def store_with_cameras(store: Path, src: Path, cameras: tuple[str, ...], start: str) -> Path:
    """A new store at ``store`` with ``src`` imported under each camera id at ``start``."""
    vstore("init", "--store", str(store))
    for cam in cameras:
        vstore("import", str(src), "--camera", cam, "--start", start, "--store", str(store))
    return store


def wait_for(cond: Any, timeout_s: float = 30.0, what: str = "condition") -> Any:
    """What ``cond()`` returns once it is true, polled every 0.1 s; fails after timeout_s."""
    import pytest

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def cluster_node_store(
    root: Path,
    name: str,
    endpoints: list[str],
    prefix: str,
    cameras: dict[str, Any],
    ttl_s: int,
    recorders: int = 1,
    tier: str | None = None,
) -> Path:
    """A node's store at root/name/store for a cluster on etcd ``endpoints``: member
    ``name`` under ``prefix`` with a ``ttl_s`` lease, every camera (id -> a source with a
    ``url``) configured, 2 s segments, ``recorders`` recorder processes, and a ``tier``
    URL (tiered by hand or by a drain only)."""
    store = root / name / "store"
    vstore("init", "--store", str(store))
    lines = [
        "[store]", "segment_duration_s = 2",
        "[service]", f"recorders = {recorders}",
        "[cluster]", f"etcd = {json.dumps(endpoints)}", f'name = "{name}"',
        f'prefix = "{prefix}"', f"lease_ttl_s = {ttl_s}",
    ]  # fmt: skip
    if tier is not None:
        lines += ["[tier]", f'url = "{tier}"', 'every = "off"']
    for cam, c in cameras.items():
        lines += [f"[cameras.{cam}]", f'url = "{c.url}"']
    (store / "vstore.toml").write_text("\n".join(lines) + "\n")
    return store


def covered_spans(store: Path, cam: str) -> list[tuple[int, int]]:
    """(from_ns, to_ns) of what a store holds of a camera, sealed and open alike (read
    while its node runs)."""
    r = vstore("timeline", "--camera", cam, "--store", str(store), "--json", check=False)
    if r.returncode == 3:
        return []
    doc = json.loads(r.stdout)
    return [(s["from_ns"], s["to_ns"]) for s in doc["covered"] + doc["open"]]
