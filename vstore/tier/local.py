"""A directory as an object store: the embedded default tier (no server to install).

Objects are files under the root (the key's slashes are directories); uploads are written
to a temporary name, fsynced, renamed and the directory fsynced, so an object exists whole
or not at all.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from vstore.base import layout
from vstore.base.errors import NotFound, PreconditionFailed, TierError
from vstore.base.fsutil import Fs, write_durably
from vstore.base.jsonio import dumps_compact, loads_dict
from vstore.base.ratelimit import RateLimiter
from vstore.tier.base import ABSENT, BlobTier, ByteRange, ObjectInfo


def file_sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


class LocalTier(BlobTier):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.resolve()}"

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise TierError(f"bad object key {key!r}")
        return self.root / key

    def put_file(
        self,
        key: str,
        path: Path,
        sha256_b64: str,
        rate: RateLimiter | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        h = hashlib.sha256()
        try:
            # The hash of the bytes as copied: what the object holds is what the caller meant.
            with open(path, "rb") as src, open(tmp, "wb") as out:
                while block := src.read(1 << 20):
                    if rate is not None:
                        rate.consume(len(block))
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            got = base64.b64encode(h.digest()).decode()
            if got != sha256_b64:
                tmp.unlink()
                raise TierError(f"{key}: checksum mismatch after copy ({got} != {sha256_b64})")
            meta = layout.object_metadata_path(dest)
            if metadata:
                # Written durably before the object appears, as S3 stores both at once.
                staging = meta.with_name(meta.name + ".part")
                write_durably(Fs(), meta, staging, dumps_compact(metadata, sort_keys=True))
            else:
                meta.unlink(missing_ok=True)
            os.replace(tmp, dest)
            fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise TierError(f"{self.url}/{key}: {exc.strerror or exc}") from exc
        return ObjectInfo(key, dest.stat().st_size, got)

    def _etag(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:32]

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            # One writer at a time compares and replaces (S3 does this server-side).
            fd = os.open(self.root / ".conditional.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if if_match is not None:
                    try:
                        now = self._etag(dest.read_bytes())
                    except FileNotFoundError:
                        now = None
                    if (now is not None) if if_match == ABSENT else (now != if_match):
                        raise PreconditionFailed(f"{self.url}/{key}: written by another since")
                write_durably(Fs(), dest, dest.with_name(dest.name + ".part"), data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise TierError(f"{self.url}/{key}: {exc.strerror or exc}") from exc
        return self._etag(data)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TierError(f"{self.url}/{key}: {exc.strerror or exc}") from exc
        return data, self._etag(data)

    def get(self, key: str, rng: ByteRange | None = None) -> bytes:
        p = self._path(key)
        try:
            with open(p, "rb") as f:
                if rng is None:
                    return f.read()
                f.seek(rng.start)
                data = f.read() if rng.length is None else f.read(rng.length)
        except FileNotFoundError:
            raise NotFound(f"no object {key} in {self.url}") from None
        if rng is not None and rng.length is not None and len(data) != rng.length:
            raise TierError(f"{key}: range {rng.start}+{rng.length} beyond the object")
        return data

    def head(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return None
        try:
            meta = loads_dict(layout.object_metadata_path(p).read_bytes())
        except FileNotFoundError:
            meta = {}
        return ObjectInfo(key, size, metadata=meta)

    def delete(self, key: str) -> None:
        p = self._path(key)
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        layout.object_metadata_path(p).unlink(missing_ok=True)

    def list_dirs(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        for p in sorted(base.iterdir()):
            if p.is_dir() and any(f.is_file() for f in p.rglob("*")):
                yield p.name

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        for p in sorted(self.root.rglob("*")):
            if (
                not p.is_file()
                or p.name.endswith((".part", layout.OBJECT_METADATA_SUFFIX))
                or (p.name == ".conditional.lock")
            ):
                continue
            key = p.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                yield ObjectInfo(key, p.stat().st_size)
