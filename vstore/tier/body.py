"""Upload bodies: file wrappers that an SDK reads an upload from, throttled by the shared
bandwidth cap or hashed on the way out. Both stay seekable, so the SDK can size a body and
rewind it for a retry."""

from __future__ import annotations

import base64
import hashlib
from typing import IO, Any

from vstore.base.ratelimit import RateLimiter


class _Body:
    def __init__(self, f: IO[bytes] | Any) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class ThrottledReader(_Body):
    """Reads pass through a RateLimiter."""

    def __init__(self, f: IO[bytes], rate: RateLimiter) -> None:
        super().__init__(f)
        self._rate = rate

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self._rate.consume(len(data))
        return data


class HashingReader(_Body):
    """Hashes what the SDK reads (starting over when it rewinds for a retry), so the bytes
    that went over the wire are checked without reading them twice."""

    def __init__(self, f: IO[bytes] | Any) -> None:
        super().__init__(f)
        self._h = hashlib.sha256()
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._pos >= 0:
            self._h.update(data)
            self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._f.seek(offset, whence)
        if pos == 0:
            self._h, self._pos = hashlib.sha256(), 0  # a retry (or sizing) starts over
        elif pos != self._pos:
            self._pos = -1  # a jump: the hash no longer describes the body
        return pos

    def sha256_b64(self) -> str | None:
        """The hash of the bytes read, or None when reads skipped around."""
        return base64.b64encode(self._h.digest()).decode() if self._pos >= 0 else None
