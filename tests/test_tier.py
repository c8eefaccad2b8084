"""Object-store tiers: the shared contract for the local directory and for S3 over real HTTP
(moto's ThreadedMotoServer on 127.0.0.1), plus S3 failure modes: a missing bucket, an
unreachable endpoint, and a server that fails a fraction of requests."""

from __future__ import annotations

import socket

import pytest

from vstore.base.errors import TierError, UsageError
from vstore.testing.tier import TierTests, _b64
from vstore.tier import LocalTier, open_tier

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

from tests.conftest import CREDS
from tests.s3proxy import flaky_s3


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
    for bad in ("s3://bad bucket/p", "s3://b\u00e4ck/p", "s3://a:b/p"):
        with pytest.raises(UsageError, match="is not a bucket name"):
            open_tier(bad)


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


@pytest.mark.s3
def test_server_failing_a_fraction_of_requests_is_retried(moto_endpoint, bucket, tmp_path):
    from vstore.tier.s3 import S3Tier

    with flaky_s3(moto_endpoint, fail_every=3) as endpoint:
        t = S3Tier(bucket, endpoint_url=endpoint, **CREDS)
        data = b"segment bytes " * 5000
        p = tmp_path / "s.vseg"
        p.write_bytes(data)
        for i in range(6):
            t.put_file(f"k{i}", p, _b64(data))
            assert t.get(f"k{i}", None) == data


@pytest.mark.s3
def test_delete_many_in_an_object_lock_bucket_removes_every_version_and_keeps_the_held(
    moto_endpoint, lock_bucket, tmp_path
):
    """In a versioned (Object Lock) bucket, deleting a key alone only adds a delete marker:
    the batch removes the versions themselves, and one under a legal hold is refused, named."""
    from tests.conftest import _admin
    from vstore.tier.s3 import S3Tier

    tier = S3Tier(lock_bucket, "p", endpoint_url=moto_endpoint, **CREDS)
    src = tmp_path / "x"
    src.write_bytes(b"footage" * 100)
    keys = [f"cam/2025-01-17/{i}.vseg" for i in range(4)]
    for k in keys:
        tier.put_file(k, src, _b64(src.read_bytes()))
    assert tier.set_legal_hold(keys[1], True)
    failed = tier.delete_many(keys)
    assert list(failed) == [keys[1]] and "legal hold" in str(failed[keys[1]])
    versions = _admin(moto_endpoint).list_object_versions(Bucket=lock_bucket, Prefix="p/")
    assert [v["Key"] for v in versions.get("Versions", [])] == [f"p/{keys[1]}"]
    assert not versions.get("DeleteMarkers")
