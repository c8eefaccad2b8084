"""Builds a tier from its URL (``s3://BUCKET/PREFIX``, ``file:///dir`` or a plain path): the
one place that knows every backend, so the backends need not know each other."""

from __future__ import annotations

import re
from pathlib import Path

from vstore.base.errors import UsageError
from vstore.tier.base import BlobTier
from vstore.tier.local import LocalTier

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def open_tier(url: str) -> BlobTier:
    """A tier from its URL: ``s3://BUCKET/PREFIX`` or ``file:///dir`` (or a plain path).
    Anything else with a scheme is refused: taken as a path, ``ftp://host/x`` would move
    footage into a local directory named ``ftp:``."""
    if not url.strip():
        raise UsageError("the tier URL is empty")
    if url.startswith("s3://"):
        from vstore.tier.s3 import S3Tier  # boto3: heavy, loaded for s3:// only

        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise UsageError(f"tier URL {url!r} names no bucket: use s3://BUCKET/PREFIX")
        # (legacy buckets allow capitals and "_", and no store allows anything else)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", bucket):
            raise UsageError(
                f"tier URL {url!r}: {bucket!r} is not a bucket name (letters, digits, "
                "'.', '-' and '_' only)"
            )
        return S3Tier(bucket, prefix)
    scheme = _SCHEME_RE.match(url)
    if scheme and not url.startswith("file://"):
        raise UsageError(
            f"tier URL {url!r}: unsupported scheme {scheme.group(1)!r} "
            "(use s3://BUCKET/PREFIX, file:///DIR or a plain directory path)"
        )

    path = url.removeprefix("file://")
    return LocalTier(Path(path))
