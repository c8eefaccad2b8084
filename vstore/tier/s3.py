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
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from vstore.base.errors import NotFound, PreconditionFailed, TierError, UsageError
from vstore.base.ratelimit import RateLimiter
from vstore.tier.base import ABSENT, BlobTier, ByteRange, ObjectInfo
from vstore.tier.body import HashingReader, ThrottledReader
from vstore.tier.local import file_sha256_b64

# boto3 clients made in this process, by everything that decides what a client is (its
# arguments and the AWS_* environment boto3 reads): making one costs 10-20 ms, more than a
# catalog read, and a client is safe to share between threads.
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_MAX = 32
_CLIENTS_LOCK = threading.Lock()


def _client(kwargs: dict[str, Any], cfg_key: tuple[Any, ...]) -> Any:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (tuple(sorted((k, v) for k, v in kwargs.items() if k != "config")), cfg_key, env)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = boto3.client("s3", **kwargs)
            if len(_CLIENTS) >= _CLIENTS_MAX:
                _CLIENTS.pop(next(iter(_CLIENTS)))
            _CLIENTS[key] = client
        return client


MULTIPART_THRESHOLD = 64 * 1024 * 1024  # one-minute segments upload in a single PUT
MULTIPART_CHUNK = 16 * 1024 * 1024


DELETE_BATCH = 1000  # keys S3 takes in one DeleteObjects
# What a server without ListObjectVersions answers: its objects are deleted one by one.
_NO_VERSION_LISTING = ("NotImplemented", "501", "MethodNotAllowed", "InvalidRequest")


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
        max_attempts: int | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:

        if not bucket:
            raise TierError("s3:// URL without a bucket")
        if max_attempts is None:
            # The standard AWS variable, as the other AWS_* settings are honoured.
            try:
                max_attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "5")))
            except ValueError:
                raise TierError("AWS_MAX_ATTEMPTS must be a whole number") from None
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
            # Readers of a bucket's catalog and the deleter use up to 16 threads; botocore's
            # default of 10 connections made the rest wait for one.
            max_pool_connections=32,
        )
        kwargs: dict[str, Any] = {"config": cfg}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        if region:
            kwargs["region_name"] = region
        if access_key and secret_key:
            kwargs["aws_access_key_id"] = access_key
            kwargs["aws_secret_access_key"] = secret_key
        try:
            self._s3 = _client(kwargs, (max_attempts, connect_timeout_s, read_timeout_s))
        except ValueError as exc:  # botocore's word for an endpoint that is not a URL
            raise UsageError(
                f"{exc}: AWS_ENDPOINT_URL (or the endpoint given) must be a URL such as "
                "http://127.0.0.1:9000"
            ) from None
        self._lock_enabled: bool | None = None  # the bucket's Object Lock, once asked

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, what: str) -> TierError:

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
                if what.startswith("delete") and code == "AccessDenied":
                    return TierError(
                        f"{self.url}: {what} refused (AccessDenied): the object is under a "
                        "legal hold or retention, or the credentials may not delete"
                    )
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

    def put_file(
        self,
        key: str,
        path: Path,
        sha256_b64: str,
        rate: RateLimiter | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:

        # The caller hashed these bytes while verifying them; the bytes actually sent are
        # hashed on their way out (no extra read), the store checks the header checksum, and
        # the HEAD below compares what it recorded.
        size = Path(path).stat().st_size
        composite = ""  # the parts' composite checksum (multipart uploads only)
        try:
            if size < MULTIPART_THRESHOLD:
                # The checksum travels as a header (not an aws-chunked trailer, which several
                # S3-compatible stores reject); a store that checks it refuses damaged bytes.
                with open(path, "rb") as f:
                    body = HashingReader(ThrottledReader(f, rate) if rate is not None else f)
                    self._s3.put_object(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        Body=body,
                        ContentLength=size,
                        ChecksumSHA256=sha256_b64,
                        **({"StorageClass": self.storage_class} if self.storage_class else {}),
                        **({"Metadata": metadata} if metadata else {}),
                    )
                sent = body.sha256_b64()
                if sent is None:
                    sent = file_sha256_b64(Path(path))
                if sent != sha256_b64:
                    self.delete(key)  # a store that does not check: never keep such an object
                    raise TierError(
                        f"{self.url}/{key}: the bytes sent do not match the segment's SHA-256"
                    )
            else:
                # Parts are uploaded concurrently: hash the file first (big segments only),
                # whole and part by part (S3 checks each part and keeps a composite of them).
                whole, composite = _multipart_sha256_b64(Path(path), MULTIPART_CHUNK)
                if whole != sha256_b64:
                    raise TierError(f"{key}: file does not match its SHA-256; not uploaded")
                extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
                if self.storage_class:
                    extra["StorageClass"] = self.storage_class
                if metadata:
                    extra["Metadata"] = metadata
                cfg = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=MULTIPART_CHUNK,
                    max_concurrency=4,
                )
                # Parts are read from one file object in order, through the job's shared
                # cap (a per-transfer max_bandwidth would let each upload take the whole cap).
                with open(path, "rb") as f:
                    body = ThrottledReader(f, rate) if rate is not None else f
                    self._s3.upload_fileobj(
                        body, self.bucket, self._key(key), ExtraArgs=extra, Config=cfg
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"upload of {key}") from exc
        info = self.head(key)
        if info is None or info.size_bytes != size:
            raise TierError(f"{self.url}/{key}: uploaded object missing or wrong size")
        # A multipart object's checksum is the composite of its parts' ("C-3" from AWS; some
        # stores, moto among them, leave off the part count).
        expect = sha256_b64 if size < MULTIPART_THRESHOLD else composite
        if info.sha256_b64 and info.sha256_b64.split("-")[0] != expect:
            self.delete(key)  # never leave an object that does not match its segment
            raise TierError(f"{self.url}/{key}: checksum mismatch after upload")
        return ObjectInfo(key, size, sha256_b64)

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        cond: dict[str, str] = {}
        if if_match == ABSENT:
            cond["IfNoneMatch"] = "*"
        elif if_match is not None:
            cond["IfMatch"] = if_match
        try:
            resp = self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                **cond,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise PreconditionFailed(f"{self.url}/{key}: written by another since") from None
            raise self._fail(exc, f"write of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"write of {key}") from exc
        return str(resp["ETag"])

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            return resp["Body"].read(), str(resp["ETag"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"read of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"read of {key}") from exc

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:

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

        try:
            h = self._s3.head_object(Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc, f"head of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"head of {key}") from exc
        return ObjectInfo(
            key, int(h["ContentLength"]), h.get("ChecksumSHA256"), dict(h.get("Metadata") or {})
        )

    def delete(self, key: str) -> None:

        try:
            # In a versioned (object-lock) bucket a plain DELETE only adds a delete marker and
            # the footage stays billed; deleting the version removes it, and S3 itself refuses
            # when the version is under a legal hold.
            try:
                h = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return
                raise
            version = h.get("VersionId")
            extra = {"VersionId": version} if version and version != "null" else {}
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"delete of {key}") from exc

    def delete_many(self, keys: list[str]) -> dict[str, TierError]:
        """Up to 1,000 objects a request (DeleteObjects), every version of each (in an
        object-lock bucket a key alone would only add a delete marker), the versions found
        by one listing of the batch's common prefix. A server without version listings has
        its objects deleted one by one."""
        failed: dict[str, TierError] = {}
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            full = {self._key(k): k for k in batch}
            try:
                versions: dict[str, list[str]] = {}
                pages = self._s3.get_paginator("list_object_versions").paginate(
                    Bucket=self.bucket,
                    Prefix=os.path.commonprefix(list(full)),  # noqa: RUF071 - a key, by character
                )
                for page in pages:
                    for v in page.get("Versions", []):
                        if v["Key"] in full:
                            versions.setdefault(v["Key"], []).append(str(v.get("VersionId")))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NO_VERSION_LISTING:
                    err = self._fail(exc, "listing of versions to delete")
                    failed.update(dict.fromkeys(batch, err))
                    continue
                failed.update(super().delete_many(batch))
                continue
            except BotoCoreError as exc:
                err = self._fail(exc, "listing of versions to delete")
                failed.update(dict.fromkeys(batch, err))
                continue
            objects = [
                {"Key": key} if vid in ("null", "None") else {"Key": key, "VersionId": vid}
                for key, vids in versions.items()
                for vid in vids
            ]
            for j in range(0, len(objects), DELETE_BATCH):
                try:
                    r = self._s3.delete_objects(
                        Bucket=self.bucket,
                        Delete={"Objects": objects[j : j + DELETE_BATCH], "Quiet": True},
                    )
                except (ClientError, BotoCoreError) as exc:
                    err = self._fail(exc, "delete")
                    failed.update({full[o["Key"]]: err for o in objects[j : j + DELETE_BATCH]})
                    continue
                for e in r.get("Errors", []):
                    code = e.get("Code", "")
                    failed[full.get(e.get("Key", ""), e.get("Key", ""))] = TierError(
                        f"{self.url}: delete of {full.get(e.get('Key', ''))} refused ({code}: "
                        f"{e.get('Message', '')}): under a legal hold or retention, or the "
                        "credentials may not delete"
                    )
        return failed

    def set_legal_hold(self, key: str, on: bool) -> bool:

        try:
            self._s3.put_object_legal_hold(
                Bucket=self.bucket,
                Key=self._key(key),
                LegalHold={"Status": "ON" if on else "OFF"},
            )
        except ClientError as exc:
            if _no_object_lock(exc) or self._unlocked_bucket(exc):
                return False
            raise self._fail(exc, f"legal hold on {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"legal hold on {key}") from exc
        return True

    def legal_hold(self, key: str) -> bool | None:

        try:
            r = self._s3.get_object_legal_hold(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _no_object_lock(exc) or self._unlocked_bucket(exc):
                return None
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchObjectLockConfiguration", "NoSuchObjectLegalHold"):
                # An object-lock bucket, but this object never had a hold (SeaweedFS says
                # the latter)
                return False
            raise self._fail(exc, f"legal hold of {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"legal hold of {key}") from exc
        if not r.get("LegalHold") and self._bucket_has_no_lock():
            return None  # (a server that answers for a bucket without Object Lock: moto)
        return bool(r.get("LegalHold", {}).get("Status") == "ON")

    def _unlocked_bucket(self, exc: ClientError) -> bool:
        """Whether a legal-hold request was refused as an InvalidRequest because the bucket
        has no Object Lock: SeaweedFS says only "Invalid Request", so the bucket is asked
        (once per client)."""
        if exc.response.get("Error", {}).get("Code") != "InvalidRequest":
            return False
        return self._bucket_has_no_lock()

    def _bucket_has_no_lock(self) -> bool:
        """Whether the bucket says it has no Object Lock (asked once per client); False
        when it could not say."""
        if self._lock_enabled is None:
            try:
                cfg = self._s3.get_object_lock_configuration(Bucket=self.bucket)
                enabled = cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._lock_enabled = enabled == "Enabled"
            except ClientError as e:
                if (
                    e.response.get("Error", {}).get("Code")
                    != "ObjectLockConfigurationNotFoundError"
                ):
                    return False  # (the bucket could not say: the refusal stands)
                self._lock_enabled = False
            except BotoCoreError:
                return False
        return not self._lock_enabled

    def list_dirs(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            ):
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"][len(full) :].rstrip("/")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"listing {prefix!r}") from exc

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:

        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                for obj in page.get("Contents", []):
                    etag = str(obj["ETag"]) if obj.get("ETag") else None
                    yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]), etag=etag)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"listing {prefix!r}") from exc


def _no_object_lock(exc: Exception) -> bool:
    """The bucket was created without S3 Object Lock, so it cannot hold objects."""
    err = getattr(exc, "response", {}).get("Error", {})
    msg = str(err.get("Message", "")).lower().replace(" ", "")
    return err.get("Code") in ("InvalidRequest", "ObjectLockConfigurationNotFoundError") and (
        "objectlock" in msg or not msg
    )


def _multipart_sha256_b64(path: Path, part_bytes: int) -> tuple[str, str]:
    """The file's SHA-256 and the composite checksum S3 keeps for it uploaded in parts of
    part_bytes (the SHA-256 of its parts' SHA-256 digests), both base64, from one read."""
    whole, digests = hashlib.sha256(), []
    with open(path, "rb") as f:
        while part := f.read(part_bytes):
            whole.update(part)
            digests.append(hashlib.sha256(part).digest())
    composite = hashlib.sha256(b"".join(digests)).digest()
    return base64.b64encode(whole.digest()).decode(), base64.b64encode(composite).decode()


def sha256_b64(hex_digest: str) -> str:
    """The base64 form S3 uses for a SHA-256 given in hex (as the index stores it)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
