"""A node's API as a read-only tier: the footage a node has not tiered yet, read by byte range
over HTTP with the reader's bearer token, as a bucket's objects are read over S3. Keys are
the names the node's segments URL gives (``layout.node_segment_path``); ``url`` is that
segments URL of one camera (``https://node1:8480/api/v1/cameras/gate-3/segments``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from vstore.base.errors import FootageUnreachable, TierError
from vstore.base.ratelimit import RateLimiter
from vstore.tier.base import BlobTier, ByteRange, ObjectInfo

TIMEOUT_S = 10.0  # a node silent this long between two reads is given up
DEADLINE_S = 60.0  # a request not whole in this long is given up, however it trickles
RETRIES_429 = 30  # a node's rate limit is waited out this many times for one request
MAX_WAIT_429_S = 2.0
_pools: dict[str, Any] = {}


def _pool() -> Any:
    # (one connection pool per process: each chunk is a request, and a pooled connection
    # saves a TCP and TLS handshake per request)
    pool = _pools.get("pool")
    if pool is None:
        import urllib3

        pool = _pools["pool"] = urllib3.PoolManager(
            num_pools=64, maxsize=8, timeout=urllib3.Timeout(connect=TIMEOUT_S, read=TIMEOUT_S),
            retries=False,
        )  # fmt: skip
    return pool


def node_request(
    url: str,
    token: str,
    headers: dict[str, str] | None = None,
    max_bytes: int = 256 << 20,
) -> tuple[int, bytes]:
    """GET ``url`` with the bearer token: (status, body). The node's rate limit (429) is
    waited out as its Retry-After says; a body over ``max_bytes``, or one not whole within
    DEADLINE_S, is given up. TierError when the node does not answer."""
    import urllib3

    deadline = time.monotonic() + DEADLINE_S
    for _ in range(RETRIES_429):
        try:
            resp = _pool().request(
                "GET", url, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                preload_content=False, redirect=False,
            )  # fmt: skip
            try:
                body = bytearray()
                for block in resp.stream(1 << 16):
                    body += block
                    if len(body) > max_bytes:
                        raise TierError(f"{url}: the node sent more than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise TierError(f"{url}: the node took over {DEADLINE_S:g} s to answer")
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TierError(f"{url}: the node did not answer ({_reason(exc)})") from None
        if resp.status != 429:
            return resp.status, bytes(body)
        try:
            wait = min(float(resp.headers.get("Retry-After", "1")), MAX_WAIT_429_S)
        except ValueError:
            wait = 1.0
        if time.monotonic() + wait > deadline:
            break
        time.sleep(max(wait, 0.05))
    return 429, bytes(body)


def _reason(exc: Exception) -> str:
    """The innermost reason urllib3 gives (its messages nest the URL inside the URL)."""
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)


def error_text(body: bytes) -> str:
    """The message of a node's JSON error body (or the start of whatever it sent)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


def camera_segments_url(api: str, camera: str) -> str:
    return f"{api.rstrip('/')}/api/v1/cameras/{quote(camera, safe='')}/segments"


class NodeTier(BlobTier):
    """One camera's local segments on one node, read through its API. A read that fails
    (the node went away after listing them, or no longer has a segment) is
    FootageUnreachable, which a clip shows as a gap; once the node does not answer, every
    later read of it fails at once, so a node that is gone costs one timeout, not one per
    GOP. ``on_failure`` hears of each (the reader's notes name the node)."""

    def __init__(
        self, url: str, token: str, on_failure: Callable[[str], None] | None = None
    ) -> None:
        self.url = url
        self._token = token
        self._on_failure = on_failure
        self._failed = ""

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        if self._failed:
            raise FootageUnreachable(self._failed)
        headers = {}
        if rng is not None:
            last = "" if rng.length is None else str(rng.start + rng.length - 1)
            headers["Range"] = f"bytes={rng.start}-{last}"
        try:
            status, body = node_request(f"{self.url}/{key}", self._token, headers)
        except TierError as exc:
            self._fail(str(exc), gone=True)
        if status not in (200, 206):
            self._fail(f"{self.url}/{key}: the node answered {status}: {error_text(body)}")
        if rng is not None and rng.length is not None and len(body) != rng.length:
            self._fail(
                f"{self.url}/{key}: asked for {rng.length} bytes at {rng.start}, got {len(body)}"
            )
        return body

    def _fail(self, why: str, gone: bool = False) -> NoReturn:
        """The read fails; ``gone`` (the node does not answer): every later one at once."""
        if gone:
            self._failed = why
        if self._on_failure is not None:
            self._on_failure(why)
        raise FootageUnreachable(why)

    def head(self, key: str) -> ObjectInfo | None:
        return None  # (the segment entries carry each segment's size)

    def _read_only(self, what: str) -> TierError:
        return TierError(f"{self.url}: a node's footage is read through its API, never {what}")

    def put_file(
        self,
        key: str,
        path: Path,
        sha256_b64: str,
        rate: RateLimiter | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        raise self._read_only("written")

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        raise self._read_only("written")

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        raise self._read_only("read as an object")

    def delete(self, key: str) -> None:
        raise self._read_only("deleted")

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        raise self._read_only("listed")

    def list_dirs(self, prefix: str) -> Iterator[str]:
        raise self._read_only("listed")
