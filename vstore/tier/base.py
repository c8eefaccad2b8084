"""The object-store interface: put a file, ranged get, head, delete, list by prefix.

Implementations: ``LocalTier`` (a directory: the embedded default) and ``S3Tier`` (boto3;
AWS S3, MinIO, Ceph). ``vstore.tier.factory.open_tier`` builds one from a URL: ``file:///path``,
a plain path, or ``s3://BUCKET/PREFIX``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vstore.base.errors import PreconditionFailed, TierError, VstoreError

if TYPE_CHECKING:
    from vstore.base.ratelimit import RateLimiter


# put_bytes(if_match=ABSENT): create the object only where there is none.
ABSENT = "*"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """[start, start + length) of an object; ``length`` None means to the end."""

    start: int
    length: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.length is not None and self.length <= 0):
            raise ValueError(f"bad byte range {self.start}+{self.length}")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size_bytes: int
    sha256_b64: str | None = None  # full-object SHA-256 when the store reports one
    # User metadata written with the object (head() only; listings leave it empty).
    metadata: dict[str, str] | None = None
    # The object's version tag (S3's ETag) where a listing gives one: equal tags, same bytes.
    etag: str | None = None


class BlobTier(abc.ABC):
    """A flat key -> bytes store. Keys are built by vstore.base.layout.object_key only."""

    url: str

    @abc.abstractmethod
    def put_file(
        self,
        key: str,
        path: Path,
        sha256_b64: str,
        rate: RateLimiter | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a whole file (at most as fast as ``rate`` allows); the store verifies the
        SHA-256 the caller computed from the same bytes (or the call fails). ``metadata``
        (ASCII names and values) is kept with the object and returned by ``head``."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        """Write a small object whole, only if nobody else wrote it since the caller read it:
        ``if_match`` is the ETag read with it (``get_versioned``), or ``ABSENT`` to create it
        only where no object is. PreconditionFailed otherwise. Returns the new ETag."""

    @abc.abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and ETag (to write it back with ``put_bytes``), or None."""

    def update(
        self, key: str, change: Callable[[bytes | None], bytes | None], attempts: int = 8
    ) -> bool:
        """Read, change and write back a small object so that no other writer's write is
        lost: ``change(its bytes, or None when there is none)`` gives the new bytes (None:
        leave it); when another writer came first, it is asked again of the newer version.
        True when written."""
        for _ in range(attempts):
            got = self.get_versioned(key)
            new = change(got[0] if got is not None else None)
            if new is None:
                return False
            try:
                self.put_bytes(key, new, if_match=got[1] if got is not None else ABSENT)
                return True
            except PreconditionFailed:
                continue
        raise TierError(f"{self.url}/{key}: kept changing under {attempts} writes; try again")

    @abc.abstractmethod
    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        """The object's bytes, or a range of them (TierError/NotFound when missing)."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size, checksum and metadata, or None when there is no such object."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    def delete_many(self, keys: list[str]) -> dict[str, TierError]:
        """Remove objects (missing ones are not an error); the keys that could not be
        removed, each with why. A store that deletes in batches says so by overriding."""
        failed: dict[str, TierError] = {}
        for key in keys:
            try:
                self.delete(key)
            except TierError as exc:
                failed[key] = exc
        return failed

    @abc.abstractmethod
    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix, in key order."""

    def json_objects(self, prefix: str, max_bytes: int) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` of at most ``max_bytes`` that reads as a JSON
        object (others, the bucket's word alone, are skipped), in key order."""
        for info in self.list_prefix(prefix):
            doc = self.json_object(info.key, max_bytes, info.size_bytes)
            if doc is not None:
                yield doc

    def json_object(
        self, key: str, max_bytes: int, size_bytes: int | None = None
    ) -> dict[str, Any] | None:
        """The object at ``key`` as a JSON object; None when it is missing, over
        ``max_bytes`` (its ``size_bytes`` when known, else asked), or reads as none."""
        import json

        if size_bytes is None:
            info = self.head(key)
            if info is None:
                return None
            size_bytes = info.size_bytes
        if size_bytes > max_bytes:
            return None
        try:
            doc = json.loads(self.get(key))
        except (VstoreError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @abc.abstractmethod
    def list_dirs(self, prefix: str) -> Iterator[str]:
        """The names one level under ``prefix`` (which ends in "/") that have objects below
        them, in order, without listing those objects (S3's delimiter listing)."""

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """Put (or lift) an object-level legal hold; False when the store has none."""
        return False

    def legal_hold(self, key: str) -> bool | None:
        """Whether the object is under a legal hold; None when the store has no such thing."""
        return None
