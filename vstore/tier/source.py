"""A segment object in a tier read as a byte source: the segment reader's view of a tier."""

from __future__ import annotations

from vstore.tier.base import BlobTier, ByteRange


class TierSource:
    """Ranged reads of a segment stored as an object (one ranged GET per read); the header
    probe and the trailer/footer are small, and each chunk costs one GET."""

    # Headers are a few hundred bytes: a small first GET, a second only for a big one.
    head_probe = 4096

    def __init__(self, tier: BlobTier, key: str, size_bytes: int) -> None:
        self.tier, self.key, self._size = tier, key, size_bytes

    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self.tier.get(self.key, ByteRange(offset, length))
