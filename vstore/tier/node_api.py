"""A node's API as a read-only tier: the footage a node has not tiered yet, read by byte range
over HTTP with the reader's bearer token, as a bucket's objects are read over S3. Keys are
the names the node's segments URL gives (``layout.node_segment_path``); ``url`` is that
segments URL of one camera (``https://node1:8480/api/v1/cameras/gate-3/segments``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vstore.base.errors import NotFound, TierError
from vstore.base.ratelimit import RateLimiter
from vstore.tier.base import BlobTier, ByteRange, ObjectInfo

TIMEOUT_S = 10.0
_pools: dict[str, Any] = {}


def _pool() -> Any:
    # (one connection pool per process: each chunk is a request, and a pooled connection
    # saves a TCP and TLS handshake per request)
    pool = _pools.get("pool")
    if pool is None:
        import urllib3

        pool = _pools["pool"] = urllib3.PoolManager(
            num_pools=64, maxsize=8, timeout=urllib3.Timeout(TIMEOUT_S), retries=False
        )
    return pool


def node_request(url: str, token: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``url`` with the bearer token: (status, body). TierError when the node does not
    answer."""
    import urllib3

    try:
        resp = _pool().request(
            "GET", url, headers={"Authorization": f"Bearer {token}", **(headers or {})}
        )
    except urllib3.exceptions.HTTPError as exc:
        raise TierError(f"{url}: the node did not answer ({exc})") from None
    return resp.status, resp.data


def error_text(body: bytes) -> str:
    """The message of a node's JSON error body (or the start of whatever it sent)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


def camera_segments_url(api: str, camera: str) -> str:
    return f"{api.rstrip('/')}/api/v1/cameras/{quote(camera, safe='')}/segments"


class NodeTier(BlobTier):
    """One camera's local segments on one node, read through its API."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self._token = token

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        headers = {}
        if rng is not None:
            last = "" if rng.length is None else str(rng.start + rng.length - 1)
            headers["Range"] = f"bytes={rng.start}-{last}"
        status, body = node_request(f"{self.url}/{key}", self._token, headers)
        if status == 404:
            raise NotFound(f"{self.url}/{key}: {error_text(body)}")
        if status not in (200, 206):
            raise TierError(f"{self.url}/{key}: the node answered {status}: {error_text(body)}")
        if rng is not None and rng.length is not None and len(body) != rng.length:
            raise TierError(
                f"{self.url}/{key}: asked for {rng.length} bytes at {rng.start}, got {len(body)}"
            )
        return body

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
