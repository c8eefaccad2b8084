"""A bounded local cache of ranged reads from a tier, so repeated clips of cold footage do not
pay for the same GETs twice.

Segment objects never change once written (a trimmed segment is a new object with a new key),
so a cached range is valid until its object is deleted, and chunk CRCs are still checked on
every read. Each cached range is one file named by a hash of its key and the range; the
least recently used files are evicted past ``max_bytes``. Each file ends in a CRC-32 of the
range, so a torn or damaged entry reads through to the tier instead of failing the clip. The
cache is disposable: a crash leaves at worst a ``.tmp`` file that the next open removes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from vstore.base.errors import TierError
from vstore.base.ratelimit import RateLimiter
from vstore.segment import format as fmt
from vstore.tier.base import BlobTier, ByteRange, ObjectInfo

# Whole-object reads are not cached (they are uploads' verifications and rebuilds), nor are
# ranges larger than this (a clip streams them once).
MAX_CACHED_RANGE_BYTES = 64 * 1024 * 1024


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class CachedTier(BlobTier):
    """A tier whose ranged reads go through a bounded on-disk LRU cache."""

    def __init__(self, inner: BlobTier, cache_dir: Path, max_bytes: int) -> None:
        self.inner = inner
        self.url = inner.url
        self.dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()  # file name -> size
        self._bytes = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        entries = []
        for p in self.dir.iterdir():
            if p.suffix == ".tmp":
                p.unlink(missing_ok=True)
                continue
            st = p.stat()
            entries.append((st.st_atime_ns, p.name, st.st_size))
        for _t, name, size in sorted(entries):
            self._lru[name] = size
            self._bytes += size
        self._evict()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _evict(self) -> None:
        with self._lock:
            while self._bytes > self.max_bytes and self._lru:
                name, size = self._lru.popitem(last=False)
                self._bytes -= size
                (self.dir / name).unlink(missing_ok=True)

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        if rng is None or rng.length is None or rng.length > MAX_CACHED_RANGE_BYTES:
            return self.inner.get(key, rng)
        name = f"{_key_hash(key)}-{rng.start}-{rng.length}"
        path = self.dir / name
        with self._lock:
            known = name in self._lru
            if known:
                self._lru.move_to_end(name)
        if known:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raw = b""
            data = raw[:-4]
            if len(data) == rng.length and fmt.crc32(data).to_bytes(4, "little") == raw[-4:]:
                self.hits += 1
                return data
            with self._lock:  # vanished or torn: forget it and read through
                self._bytes -= self._lru.pop(name, 0)
        self.misses += 1
        data = self.inner.get(key, rng)
        if rng.length <= self.max_bytes:
            tmp = path.with_name(f"{name}.{threading.get_ident()}.tmp")
            try:
                tmp.write_bytes(data + fmt.crc32(data).to_bytes(4, "little"))
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)  # a full cache disk only costs speed
                return data
            with self._lock:
                if name not in self._lru:
                    self._lru[name] = len(data) + 4
                    self._bytes += len(data) + 4
            self._evict()
        return data

    def forget(self, key: str) -> None:
        prefix = _key_hash(key) + "-"
        with self._lock:
            gone = [n for n in self._lru if n.startswith(prefix)]
            for n in gone:
                self._bytes -= self._lru.pop(n)
                (self.dir / n).unlink(missing_ok=True)

    def put_file(
        self,
        key: str,
        path: Path,
        sha256_b64: str,
        rate: RateLimiter | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        self.forget(key)
        return self.inner.put_file(key, path, sha256_b64, rate, metadata)

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        self.forget(key)
        return self.inner.put_bytes(key, data, if_match=if_match)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self.inner.get_versioned(key)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.forget(key)
        self.inner.delete(key)

    def delete_many(self, keys: list[str]) -> dict[str, TierError]:
        for key in keys:
            self.forget(key)
        return self.inner.delete_many(keys)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_prefix(prefix)

    def list_dirs(self, prefix: str) -> Iterator[str]:
        return self.inner.list_dirs(prefix)

    def set_legal_hold(self, key: str, on: bool) -> bool:
        return self.inner.set_legal_hold(key, on)

    def legal_hold(self, key: str) -> bool | None:
        return self.inner.legal_hold(key)
