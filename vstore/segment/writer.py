"""Appending one segment file: header, checksummed chunks, then the seal, each write through
the filesystem seam, with the content hashed as it is written."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path

from vstore.base.errors import VstoreError
from vstore.base.fsutil import Fs, create_durably, translate_oserror
from vstore.segment import format as fmt
from vstore.segment.seal import seal_parts

PAGE_BYTES = 4096  # page-cache drops cover whole pages; larger pages only drop less
# A chunk's payload is checksummed, hashed and written as the packets' own buffers when it is
# large: joining them first would hold a second copy of every GOP (a camera's largest
# allocation, ~1 MB at 4 Mbit/s) and cost a memcpy. Small payloads are joined: there the
# per-buffer calls cost more than the copy.
JOIN_MAX_BYTES = 256 * 1024


class SegmentFile:
    """One segment file being appended to. Not thread-safe: its CameraWriter serializes calls."""

    def __init__(
        self, fs: Fs, root: Path, relpath: str, meta: fmt.SegmentMeta, drop_cache: bool = True
    ) -> None:
        self.fs = fs
        # Footage just written is rarely read again soon: once fsynced it leaves the page
        # cache, so recording does not evict the index and the reads investigators wait on,
        # and the kernel reuses warm pages instead of touching new ones (the copy into fresh
        # page-cache pages was a third of a core at 200 cameras here; lifecycle.md W2).
        self._drop_cache = drop_cache
        self._dropped_to = 0
        self.path = root / relpath
        self.relpath = relpath
        self.meta = meta
        header = fmt.pack_header(meta)
        try:
            self.fd = create_durably(fs, self.path)
        except OSError as exc:
            raise translate_oserror(exc, f"cannot create {self.path}") from exc
        try:
            fs.writev(self.fd, [header])
        except OSError as exc:
            fs.close(self.fd)
            raise translate_oserror(exc, f"cannot write {self.path}") from exc
        # No fsync yet: the first sync() covers the header, and fsyncs the directory entry
        # before any chunk row names the file (W1). A crash before it leaves a file that
        # recovery discards (R1).
        self._dir_synced = False
        self._sha = hashlib.sha256(header)
        self.offset = len(header)
        self.entries: list[fmt.DirEntry] = []
        self.packet_count = 0

    def append_raw_chunk(self, raw: bytes, entry: fmt.DirEntry) -> fmt.DirEntry:
        """Copy a whole, already verified chunk from another segment (trimming keeps held
        chunks byte for byte; only their offset changes)."""
        moved = entry._replace(offset=self.offset)
        self.append_bytes(raw)
        self.entries.append(moved)
        self.packet_count += entry.packet_count
        return moved

    def append_bytes(self, raw: bytes) -> None:
        """Copy bytes that are no chunk verbatim (a damaged run another segment kept between
        its chunks, lifecycle R5): hashed with the content, named by no directory entry."""
        try:
            self.fs.writev(self.fd, [raw])
        except OSError as exc:
            raise translate_oserror(exc, f"writing {self.path}") from exc
        self._sha.update(raw)
        self.offset += len(raw)

    def append_chunk(
        self,
        flags: int,
        start_ns: int,
        end_ns: int,
        table_raw: bytes,
        packet_count: int,
        payload: list[bytes | bytearray | memoryview],
        syncing: bool = False,
        sample_sizes: bytes | None = None,
    ) -> fmt.DirEntry:
        """Append one chunk. ``syncing``: an fsync follows at once, so the kernel starts
        writing the chunk out while this thread hashes it (the fsync then waits for less:
        +10-25 % fsynced throughput for one camera here). ``sample_sizes``: the table's
        sample-size column (``nal.sample_sizes``), which sets CHUNK_SAMPLE_SIZES."""
        if sample_sizes is not None:
            table_raw += sample_sizes
            flags |= fmt.CHUNK_SAMPLE_SIZES
        payload_bytes = sum(map(len, payload))
        stored, codec = fmt.encode_table(table_raw, packet_count, payload_bytes)
        if len(payload) > 1 and payload_bytes <= JOIN_MAX_BYTES:
            payload = [b"".join(payload)]
        chunk_len = fmt.CHUNK_OVERHEAD + len(stored) + payload_bytes
        if chunk_len > fmt.MAX_CHUNK_BYTES:
            raise VstoreError("chunk exceeds 4 GiB")
        head = fmt.pack_chunk_header(
            fmt.ChunkHeader(chunk_len, packet_count, len(stored), codec, flags, start_ns, end_ns)
        )
        crc = fmt.crc32_parts(payload, zlib.crc32(stored, zlib.crc32(head)))
        tail = fmt.CHUNK_CRC.pack(crc)
        parts = [head, stored, *payload, tail]
        try:
            self.fs.writev(self.fd, parts)
        except OSError as exc:
            # Leave the file ending on a whole chunk so the rest of it stays valid.
            try:
                self.fs.truncate(self.fd, self.offset)
            except OSError:
                pass  # recovery truncates torn tails by checksum (lifecycle R2)
            raise translate_oserror(exc, f"writing {self.path}") from exc
        if syncing:
            self.fs.start_writeback(self.fd, self.offset, chunk_len)
        for p in parts:
            self._sha.update(p)
        entry = fmt.DirEntry(self.offset, chunk_len, start_ns, end_ns, packet_count, crc, flags)
        self.entries.append(entry)
        self.offset += chunk_len
        self.packet_count += packet_count
        return entry

    def sync(self) -> None:
        """fsync, then drop the pages of everything written so far (on the writer's thread)."""
        self.fsync()
        self.drop_synced(self.offset)

    def fsync(self) -> None:
        """fsync the file and, the first time, its directory entry. Safe beside the writer
        appending: behind it (W2) two of these may run at once."""
        try:
            self.fs.fsync(self.fd)
            if not self._dir_synced:
                self.fs.fsync_dir(self.path.parent)
                self._dir_synced = True
        except OSError as exc:
            # After a failed fsync the page cache state is unknown (fsyncgate): never retry it
            # as if nothing happened; the caller stops this segment.
            raise translate_oserror(exc, f"fsync {self.path}") from exc

    def drop_synced(self, end: int, final: bool = False) -> None:
        """Drop the pages up to ``end`` (all fsynced) that were not dropped before. While
        the file grows, its partial last page stays (the next write dirties it again); once
        ``final``, that page goes too. One caller at a time (the sync jobs are chained); the
        writer may already be appending past ``end``."""
        if not self._drop_cache:
            return
        upto = (end + (PAGE_BYTES - 1 if final else 0)) & ~(PAGE_BYTES - 1)
        if upto > self._dropped_to:
            self.fs.drop_cache(self.fd, self._dropped_to, upto - self._dropped_to)
            self._dropped_to = upto

    def seal(self, end_ns: int, behind: Callable[[], object] | None = None) -> tuple[int, str]:
        """Write footer and trailer, fsync, close. Returns (size_bytes, sha256 hex).

        ``behind``: waits for the fsync still running behind the writer on this file. Ours
        overlaps it (a close or a cut pays one fsync's wait, not two in a row); the file
        closes only after it, whatever fails, since it uses the descriptor, and its failure
        fails the seal even when ours returned (fsyncgate)."""
        try:
            try:
                digest = self._sha.digest()
                tail = seal_parts(self.entries, end_ns, self.offset, digest)
                size = self.offset + sum(map(len, tail))
                self.fs.writev(self.fd, tail)
                self.fs.fsync(self.fd)
                if not self._dir_synced:
                    self.fs.fsync_dir(self.path.parent)
                    self._dir_synced = True
            finally:
                if behind is not None:
                    behind()  # raises its failure, or after ours, chained to ours
            self.drop_synced(size, final=True)
        except OSError as exc:
            raise translate_oserror(exc, f"sealing {self.path}") from exc
        finally:
            fd, self.fd = self.fd, -1  # never closed twice, even when close() fails
            try:
                self.fs.close(fd)
            except OSError as exc:
                raise translate_oserror(exc, f"closing {self.path}") from exc
        return size, digest.hex()

    def abandon(self) -> None:
        """Close without sealing (after an I/O error); recovery seals what is whole."""
        if self.fd >= 0:
            try:
                self.fs.close(self.fd)
            except OSError:
                pass
            self.fd = -1
