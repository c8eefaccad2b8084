"""S3-compatible object storage through boto3 (AWS S3, MinIO, Ceph): the only module that
imports boto3.

Credentials, region and endpoint come from the usual boto3 chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]``) unless given.
Retries use boto3's ``standard`` mode; request checksums are only sent when required (several
S3-compatible stores reject the new defaults), and uploads ask for an explicit SHA-256 that
the store verifies and that vstore compares after the upload.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vstore.errors import NotFound, TierError
from vstore.tier.base import BlobTier, ByteRange, ObjectInfo

MULTIPART_THRESHOLD = 64 * 1024 * 1024  # one-minute segments upload in a single PUT
MULTIPART_CHUNK = 16 * 1024 * 1024


class S3Tier(BlobTier):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        storage_class: str | None = None,
        max_attempts: int = 5,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise TierError("s3:// URL without a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.storage_class = storage_class
        cfg = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        )
        kwargs: dict[str, Any] = {"config": cfg}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        if region:
            kwargs["region_name"] = region
        if access_key and secret_key:
            kwargs["aws_access_key_id"] = access_key
            kwargs["aws_secret_access_key"] = secret_key
        self._s3 = boto3.client("s3", **kwargs)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, what: str) -> TierError:
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket",):
                return TierError(f"{self.url}: bucket {self.bucket!r} does not exist")
            if code in (
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403",
                "Forbidden",
            ):
                return TierError(f"{self.url}: access refused ({code}): check the credentials")
            return TierError(f"{self.url}: {what} failed: {code or exc}")
        if isinstance(exc, NoCredentialsError):
            return TierError(
                f"{self.url}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            return TierError(f"{self.url}: endpoint unreachable ({exc})")
        if isinstance(exc, ReadTimeoutError):
            return TierError(f"{self.url}: {what} timed out")
        return TierError(f"{self.url}: {what} failed: {exc}")

    def put_file(self, key: str, path: Path, sha256_b64: str) -> ObjectInfo:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        from vstore.tier.local import file_sha256_b64

        size = Path(path).stat().st_size
        # The file must be the segment the caller means: check before anything is sent.
        actual = file_sha256_b64(Path(path))
        if actual != sha256_b64:
            raise TierError(f"{key}: file does not match its SHA-256 ({actual} != {sha256_b64})")
        try:
            if size < MULTIPART_THRESHOLD:
                # The checksum travels as a header (not an aws-chunked trailer, which several
                # S3-compatible stores reject); a store that checks it refuses damaged bytes.
                with open(path, "rb") as f:
                    self._s3.put_object(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        Body=f,
                        ChecksumSHA256=sha256_b64,
                        **({"StorageClass": self.storage_class} if self.storage_class else {}),
                    )
            else:
                extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
                if self.storage_class:
                    extra["StorageClass"] = self.storage_class
                cfg = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=MULTIPART_CHUNK,
                    max_concurrency=4,
                )
                self._s3.upload_file(
                    str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=cfg
                )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"upload of {key}") from exc
        info = self.head(key)
        if info is None or info.size_bytes != size:
            raise TierError(f"{self.url}/{key}: uploaded object missing or wrong size")
        if info.sha256_b64 and "-" not in info.sha256_b64 and info.sha256_b64 != sha256_b64:
            self.delete(key)  # never leave an object that does not match its segment
            raise TierError(f"{self.url}/{key}: checksum mismatch after upload")
        return ObjectInfo(key, size, sha256_b64)

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if rng is not None:
            end = "" if rng.length is None else str(rng.start + rng.length - 1)
            kwargs["Range"] = f"bytes={rng.start}-{end}"
        try:
            resp = self._s3.get_object(**kwargs)
            data = resp["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no object {key} in {self.url}") from None
            raise self._fail(exc, f"read of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"read of {key}") from exc
        if rng is not None and rng.length is not None and len(data) != rng.length:
            raise TierError(f"{self.url}/{key}: short ranged read ({len(data)} bytes)")
        return data

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            h = self._s3.head_object(Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc, f"head of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"head of {key}") from exc
        return ObjectInfo(key, int(h["ContentLength"]), h.get("ChecksumSHA256"))

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"delete of {key}") from exc

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"listing {prefix!r}") from exc


def sha256_b64(hex_digest: str) -> str:
    """The base64 form S3 uses for a SHA-256 given in hex (as the index stores it)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
