"""An HTTP proxy in front of the test S3 server that fails a share of the requests with
503 SlowDown, as an overloaded S3, MinIO or Ceph does."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _FlakyProxy(BaseHTTPRequestHandler):
    """Forwards to moto, but fails every ``fail_every``-th request: 503 SlowDown, or (with
    ``reset``) by closing the connection with no answer at all, as a dropped link does."""

    protocol_version = "HTTP/1.1"  # so that botocore's "Expect: 100-continue" is answered
    upstream = ""
    fail_every = 3
    reset = False
    counter = iter(range(10**9))

    def _handle(self) -> None:
        n = next(self.counter)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if n % self.fail_every == self.fail_every - 1 and self.reset:
            import socket

            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if n % self.fail_every == self.fail_every - 1:
            msg = b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "expect")}
        if not any(k.lower() == "content-type" for k in fwd):
            # urllib would send a form content type, and the server would parse the body away.
            fwd["Content-Type"] = "application/octet-stream"
        # A HEAD is forwarded as a GET (moto checks no signatures) so that its length is known.
        method = "GET" if self.command == "HEAD" else self.command
        req = urllib.request.Request(
            self.upstream + self.path, data=body, method=method, headers=fwd
        )
        try:
            with urllib.request.urlopen(req) as r:
                status, headers, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, data = e.code, e.headers, e.read()
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def flaky_s3(upstream: str, fail_every: int, reset: bool = False) -> Iterator[str]:
    """An endpoint URL whose every ``fail_every``-th request fails (1: all of them)."""
    handler = type(
        "Flaky", (_FlakyProxy,), {"upstream": upstream, "fail_every": fail_every,
                                  "reset": reset, "counter": iter(range(10**9))}
    )  # fmt: skip
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()
