"""Object stores that hold tiered segments: the interface and its two implementations."""

from vstore.tier.base import BlobTier, ByteRange, ObjectInfo
from vstore.tier.factory import open_tier
from vstore.tier.local import LocalTier

__all__ = ["BlobTier", "ByteRange", "LocalTier", "ObjectInfo", "open_tier"]
