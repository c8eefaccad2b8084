"""The filesystem seam: the few OS calls whose failure ordering matters for crash safety.

Jobs and writers call these through an ``Fs`` object so tests can inject faults (a failing
fsync, ENOSPC, a short write) without patching the os module.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from vstore.base import libc
from vstore.base.errors import StorageFull, VstoreError

_IOV_MAX = 512  # buffers per writev call (Linux allows 1024)
_SYNC_FILE_RANGE_WRITE = 2


class Fs:
    """Real filesystem operations. Subclass and override to inject faults in tests."""

    def open_new(self, path: Path, mode: int = 0o644) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)

    def makedirs(self, path: Path) -> list[Path]:
        """Create path and missing parents; returns the directories created, outermost first."""
        created: list[Path] = []
        p = path
        while not p.exists():
            created.append(p)
            p = p.parent
        for d in reversed(created):
            try:
                d.mkdir()
            except FileExistsError:
                pass
        return list(reversed(created))

    def open_rw(self, path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def writev(self, fd: int, parts: list[bytes | bytearray | memoryview]) -> int:
        """Write all parts, in order; returns bytes written. Short writes are finished, not
        dropped, and more parts than one writev takes go in several calls (never joined
        into a copy: a GOP's packets can be a megabyte or more)."""
        written = 0
        i = 0
        n = len(parts)
        while i < n:
            batch = parts if i == 0 and n <= _IOV_MAX else parts[i : i + _IOV_MAX]
            done = os.writev(fd, batch)
            written += done
            if done == sum(map(len, batch)):  # the usual case: all of it
                i += len(batch)
                continue
            for p in batch:  # skip the parts written whole
                if done < len(p):
                    break
                done -= len(p)
                i += 1
            else:
                continue
            rest = memoryview(parts[i])[done:]  # rare: a short write inside part i
            while rest:
                k = os.write(fd, rest)
                if k == 0:
                    raise OSError(errno.EIO, "write returned 0 bytes")
                written += k
                rest = rest[k:]
            i += 1
        return written

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def drop_cache(self, fd: int, offset: int, length: int) -> None:
        """Advise the kernel to drop these (fsynced, so clean) bytes from the page cache.
        Advice only: a kernel or filesystem that ignores it changes nothing but speed."""
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):  # AttributeError: a platform without fadvise
            pass

    def start_writeback(self, fd: int, offset: int, length: int) -> None:
        """Ask the kernel to start writing these bytes to disk now (Linux
        ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, as RocksDB's ``bytes_per_sync`` does), so
        the fsync that follows waits for less. Advice only: it makes nothing durable and its
        errors are the fsync's to report; elsewhere it does nothing."""
        fn = libc.function("sync_file_range", ("int", "int64", "int64", "uint"), "int")
        if fn is not None:
            fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)


def translate_oserror(exc: OSError, what: str) -> VstoreError:
    """Turn an OSError into the vstore error a user can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{what}: disk full ({exc.strerror})")
    return VstoreError(f"{what}: {exc.strerror or exc}")


def create_durably(fs: Fs, path: Path) -> int:
    """Create a new file so that its directory entry survives a crash once fsynced.

    Only directories whose entries changed are fsynced: the file's parent, and the parent of
    every directory this call created (one segment a minute per camera must not cost a chain
    of directory fsyncs each time).
    """
    created = fs.makedirs(path.parent)
    fd = fs.open_new(path)
    try:
        for d in created:
            fs.fsync_dir(d.parent)
    except OSError:
        fs.close(fd)
        raise
    return fd


def write_durably(fs: Fs, path: Path, staging: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new, whole.

    The bytes are written and fsynced under ``staging`` first, renamed over ``path``, and the
    directory is fsynced so the rename itself survives.
    """
    if staging.exists():
        fs.unlink(staging)  # left by a crash between write and rename
    fd = fs.open_new(staging, mode)
    try:
        fs.writev(fd, [data])
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.replace(staging, path)
    fs.fsync_dir(path.parent)
