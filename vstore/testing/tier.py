"""Contract tests every BlobTier must pass: subclass ``TierTests`` and provide a ``tier``
fixture (see tests/test_tier.py for the local directory and S3-over-HTTP subclasses)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from vstore.base.errors import NotFound, PreconditionFailed, TierError
from vstore.tier.base import ABSENT, BlobTier, ByteRange


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class TierTests:
    """Put, ranged get, head, delete and list through the public interface only."""

    @pytest.fixture
    def blob(self, tmp_path: Path) -> tuple[Path, bytes]:
        data = bytes(range(256)) * 4000  # 1 MB, every offset distinguishable
        p = tmp_path / "blob.vseg"
        p.write_bytes(data)
        return p, data

    def test_put_then_get_whole_and_ranges(self, tier: BlobTier, blob):
        path, data = blob
        info = tier.put_file("cam/2025-01-17/x.vseg", path, _b64(data))
        assert info.size_bytes == len(data)
        assert tier.get("cam/2025-01-17/x.vseg") == data
        assert tier.get("cam/2025-01-17/x.vseg", ByteRange(1000, 77)) == data[1000:1077]
        assert tier.get("cam/2025-01-17/x.vseg", ByteRange(len(data) - 56)) == data[-56:]

    def test_head_and_missing_objects(self, tier: BlobTier, blob):
        path, data = blob
        assert tier.head("nope") is None
        with pytest.raises(NotFound):
            tier.get("nope")
        tier.put_file("a/b.vseg", path, _b64(data))
        assert tier.head("a/b.vseg").size_bytes == len(data)

    def test_metadata_is_kept_with_the_object(self, tier: BlobTier, blob):
        path, data = blob
        meta = {"vstore-chain": '{"seq":3,"prev":"00ff","sig":"ab+/="}'}
        tier.put_file("m/a.vseg", path, _b64(data), metadata=meta)
        tier.put_file("m/b.vseg", path, _b64(data))
        assert tier.head("m/a.vseg").metadata == meta
        assert not tier.head("m/b.vseg").metadata
        assert [o.key for o in tier.list_prefix("m/")] == ["m/a.vseg", "m/b.vseg"]
        tier.delete("m/a.vseg")
        assert tier.head("m/a.vseg") is None and len(list(tier.list_prefix("m/"))) == 1

    def test_checksum_mismatch_is_refused(self, tier: BlobTier, blob):
        path, _data = blob
        with pytest.raises(TierError):
            tier.put_file("bad.vseg", path, _b64(b"other bytes"))
        assert tier.head("bad.vseg") is None

    def test_delete_is_idempotent(self, tier: BlobTier, blob):
        path, data = blob
        tier.put_file("d.vseg", path, _b64(data))
        tier.delete("d.vseg")
        tier.delete("d.vseg")
        assert tier.head("d.vseg") is None

    def test_delete_many_removes_every_one_and_missing_ones_are_no_error(
        self, tier: BlobTier, blob
    ):
        path, data = blob
        keys = [f"cam/2025-01-17/{i:04d}.vseg" for i in range(5)]
        for k in keys:
            tier.put_file(k, path, _b64(data))
        tier.put_file("cam/2025-01-18/keep.vseg", path, _b64(data))
        assert tier.delete_many([*keys[:4], "cam/2025-01-17/never.vseg"]) == {}
        assert [o.key for o in tier.list_prefix("cam/")] == [keys[4], "cam/2025-01-18/keep.vseg"]
        assert tier.delete_many([]) == {}

    def test_list_prefix_in_key_order(self, tier: BlobTier, blob):
        path, data = blob
        for k in ("cam2/x.vseg", "cam1/b.vseg", "cam1/a.vseg"):
            tier.put_file(k, path, _b64(data))
        assert [o.key for o in tier.list_prefix("cam1/")] == ["cam1/a.vseg", "cam1/b.vseg"]
        assert len(list(tier.list_prefix(""))) == 3
        # One level down, without the objects: what a bucket's cameras are.
        tier.put_file("_c/cam3/2025-01-17/01.json", path, _b64(data))
        assert list(tier.list_dirs("_c/")) == ["cam3"]
        assert list(tier.list_dirs("nothing/")) == []

    def test_conditional_writes_never_overwrite_another_writers(self, tier: BlobTier):
        assert tier.get_versioned("_c/h.json") is None
        first = tier.put_bytes("_c/h.json", b"one", if_match=ABSENT)
        with pytest.raises(PreconditionFailed):  # created already
            tier.put_bytes("_c/h.json", b"two", if_match=ABSENT)
        data, etag = tier.get_versioned("_c/h.json")
        assert (data, etag) == (b"one", first)
        second = tier.put_bytes("_c/h.json", b"two", if_match=etag)
        assert second != first
        with pytest.raises(PreconditionFailed):  # a writer holding the old ETag is stale
            tier.put_bytes("_c/h.json", b"stale", if_match=first)
        assert tier.get_versioned("_c/h.json") == (b"two", second)
        assert tier.get("_c/h.json") == b"two"
        tier.put_bytes("_c/u.json", b"plain")  # unconditional
        assert [o.key for o in tier.list_prefix("_c/")] == ["_c/h.json", "_c/u.json"]
