"""Object-store tiers: the shared contract for the local directory and for S3 over real HTTP
(moto's ThreadedMotoServer on 127.0.0.1), plus S3 failure modes: a missing bucket, an
unreachable endpoint, and a server that fails a fraction of requests."""

from __future__ import annotations

import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vstore.errors import TierError
from vstore.testing.tier import TierTests, _b64
from vstore.tier import LocalTier, open_tier

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

from tests.conftest import CREDS


class TestLocalTier(TierTests):
    @pytest.fixture
    def tier(self, tmp_path):
        return LocalTier(tmp_path / "tier")


@pytest.mark.s3
class TestS3Tier(TierTests):
    @pytest.fixture
    def tier(self, moto_endpoint, bucket):
        from vstore.tier.s3 import S3Tier

        return S3Tier(bucket, "site-a", endpoint_url=moto_endpoint, **CREDS)


def test_open_tier_urls(tmp_path):
    t = open_tier(str(tmp_path / "x"))
    assert isinstance(t, LocalTier)
    assert open_tier(f"file://{tmp_path}/y").root == tmp_path / "y"


@pytest.mark.s3
def test_missing_bucket_is_a_clear_error(moto_endpoint, tmp_path):
    from vstore.tier.s3 import S3Tier

    t = S3Tier("no-such-bucket", endpoint_url=moto_endpoint, **CREDS)
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    with pytest.raises(TierError, match="does not exist"):
        t.put_file("k", p, _b64(b"x" * 100))


@pytest.mark.s3
def test_unreachable_endpoint_fails_fast_and_clearly(tmp_path):
    from vstore.tier.s3 import S3Tier

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    t = S3Tier(
        "b", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout_s=1, **CREDS
    )
    with pytest.raises(TierError, match="unreachable"):
        t.head("k")


class _FlakyProxy(BaseHTTPRequestHandler):
    """Forwards to moto, but answers 503 SlowDown to every third request."""

    protocol_version = "HTTP/1.1"  # so that botocore's "Expect: 100-continue" is answered
    upstream = ""
    counter = iter(range(10**9))

    def _handle(self) -> None:
        n = next(self.counter)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if n % 3 == 2:
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


@pytest.mark.s3
def test_server_failing_a_fraction_of_requests_is_retried(moto_endpoint, bucket, tmp_path):
    from vstore.tier.s3 import S3Tier

    _FlakyProxy.upstream = moto_endpoint
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyProxy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        t = S3Tier(bucket, endpoint_url=f"http://127.0.0.1:{srv.server_port}", **CREDS)
        data = b"segment bytes " * 5000
        p = tmp_path / "s.vseg"
        p.write_bytes(data)
        for i in range(6):
            t.put_file(f"k{i}", p, _b64(data))
            assert t.get(f"k{i}", None) == data
    finally:
        srv.shutdown()
        srv.server_close()
