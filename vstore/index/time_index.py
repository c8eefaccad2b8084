"""The time index: a RocksDB database (via rocksdict) of cameras, segments, chunks and events.

Keys are built by vstore.base.layout (fixed-width, order-preserving), so a time-range lookup is one
seek to the last chunk starting at or before the range, then a short forward scan.
Schema: docs/design/schema.md. Thread-safe: RocksDB serializes writes; the counters that
allocate ids are guarded by one lock.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from vstore import _native
from vstore.base import actor, layout
from vstore.base.errors import StorageFull, StoreLocked, VstoreError
from vstore.base.jsonio import dumps_compact
from vstore.index import gop_table
from vstore.index.segment_chain import (
    ZERO_LINK,
    ChainHead,
    ChainLink,
    LinkSigner,
    link_hash,
    row_statement,
    signed_link,
)
from vstore.index.view import make_view, remove_view

SCHEMA_VERSION = 1


class ChunkRow(NamedTuple):
    """One GOP chunk: where its bytes are and which wall-clock span it covers.

    A named tuple, not a dataclass: seeks build one per row, and a tuple is built in a
    fraction of a frozen dataclass's time (part of the seek-latency budget)."""

    camera_num: int
    start_ns: int
    end_ns: int
    segment_id: int
    offset: int
    length: int
    packet_count: int
    crc32: int
    flags: int

    def key(self) -> bytes:
        return layout.chunk_key(self.camera_num, self.start_ns)

    def value(self) -> bytes:
        """About 20 bytes of varints + CRC + flags (docs/design/schema.md)."""
        return _native.keycodec.encode_chunk_value(
            self.segment_id,
            self.offset,
            self.length,
            self.packet_count,
            self.end_ns - self.start_ns,
            self.crc32,
            self.flags,
        )

    @classmethod
    def from_entry(cls, camera_num: int, segment_id: int, e: Any) -> "ChunkRow":
        """The row of a segment footer's directory entry (format.DirEntry)."""
        return cls(
            camera_num,
            e.start_ns,
            e.end_ns,
            segment_id,
            e.offset,
            e.length,
            e.packet_count,
            e.crc32,
            e.flags,
        )

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> "ChunkRow":
        try:
            return cls(*_native.keycodec.decode_chunk_row(key, value))
        except ValueError as exc:
            raise VstoreError(f"corrupt chunk row in the index: {key.hex()}") from exc


class SegmentRow(NamedTuple):
    """A segment file's catalog row; state is "open" while written, "sealed" after."""

    camera_num: int
    segment_id: int
    start_ns: int
    end_ns: int
    state: str
    location: str  # "local" (path relative to the store) or a tier URL such as s3://b/k
    path: str
    size_bytes: int
    sha256: str
    chunk_count: int
    packet_count: int
    codecs: tuple[str, ...] = ()
    # "" when this store owns the file or object; else the uuid of the store that wrote it
    # (indexed from its tier by rebuild-index): read, never deleted or changed here (D6).
    owner: str = ""
    # (offset, length) of chunks found damaged after sealing, left in the file and out of
    # the index by `check --repair` (R6): the content hash is known not to match.
    damaged: tuple[tuple[int, int], ...] = ()
    # Its place in its camera's recording chain (segment_chain.py); None for a segment not
    # sealed yet, another store's, or sealed before this store kept chains.
    chain: ChainLink | None = None
    # Once sealed, its GOP table (gop_table.py): what a playlist reads instead of its chunks.
    gops: str = ""

    @classmethod
    def opened(
        cls, camera_num: int, segment_id: int, start_ns: int, path: str, codecs: tuple[str, ...]
    ) -> "SegmentRow":
        """The row of a local segment a writer has just opened (no chunk yet, lifecycle W0)."""
        return cls(
            camera_num, segment_id, start_ns, start_ns, "open", "local", path, 0, "", 0, 0, codecs
        )

    @classmethod
    def sealed(
        cls,
        camera_num: int,
        segment_id: int,
        entries: Sequence[Any],
        *,
        location: str,
        path: str,
        size_bytes: int,
        sha256: str,
        codecs: tuple[str, ...],
        owner: str = "",
        damaged: tuple[tuple[int, int], ...] = (),
        start_ns: int | None = None,
    ) -> "SegmentRow":
        """The row of a sealed segment whose chunks are ``entries`` (directory entries, in
        order): its end, chunk and packet counts come from them. ``start_ns`` is the
        segment's own start when it is not its first chunk's (a recovered file's header)."""
        return cls(
            camera_num,
            segment_id,
            entries[0].start_ns if start_ns is None else start_ns,
            entries[-1].end_ns,
            "sealed",
            location,
            path,
            size_bytes,
            sha256,
            len(entries),
            sum(e.packet_count for e in entries),
            codecs,
            owner,
            damaged,
            None,
            gop_table.encode(entries),
        )

    @property
    def foreign(self) -> bool:
        return bool(self.owner)

    @property
    def damaged_offsets(self) -> frozenset[int]:
        """Offsets of its chunks whose damage is recorded (R6)."""
        return frozenset(off for off, _n in self.damaged)

    def key(self) -> bytes:
        return layout.segment_key(self.camera_num, self.start_ns, self.segment_id)

    def value(self) -> bytes:
        d = {
            "segment_id": self.segment_id,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "state": self.state,
            "location": self.location,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "chunk_count": self.chunk_count,
            "packet_count": self.packet_count,
            "codecs": list(self.codecs),
        }
        if self.owner:
            d["owner"] = self.owner
        if self.damaged:
            d["damaged"] = [list(x) for x in self.damaged]
        if self.chain is not None:
            d["chain"] = self.chain.as_json()
        if self.gops:
            d["gops"] = self.gops  # (last: see sealed_gops)
        return dumps_compact(d)

    @staticmethod
    def sealed_gops(key: bytes, value: bytes) -> tuple[int, str] | None:
        """(segment id, GOP table) of a sealed, undamaged row that has one, else None, read
        without decoding the row (a day's playlist asks this of 1,440 rows). Sound for what
        value() writes: compact JSON in which a quote inside a string is always escaped, so
        these key patterns can only be the row's own keys, and a table is base64."""
        at = value.rfind(b',"gops":"')
        if at < 0 or b'"state":"sealed"' not in value or b'"damaged":' in value:
            return None
        end = value.index(b'"', at + 9)
        return int.from_bytes(key[-8:], "big"), value[at + 9 : end].decode("ascii")

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> "SegmentRow":
        cam, _start = layout.decode_time_key(key)
        d = json.loads(value)
        d["codecs"] = tuple(d.get("codecs", ()))
        if "damaged" in d:
            d["damaged"] = tuple(tuple(x) for x in d["damaged"])
        if "chain" in d:
            d["chain"] = ChainLink.from_json(d["chain"])
        return cls(camera_num=cam, **d)


class Event(NamedTuple):
    """A discontinuity or other timeline event: kind, wall time, and free-form detail."""

    camera_num: int
    at_ns: int
    seq: int
    kind: str
    detail: dict[str, Any]

    def key(self) -> bytes:
        return layout.event_key(self.camera_num, self.at_ns, self.seq)

    def value(self) -> bytes:
        return json.dumps({"kind": self.kind, "detail": self.detail}).encode()

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> "Event":
        cam, at = layout.decode_time_key(key)
        seq = int.from_bytes(key[13:17], "big")
        d = json.loads(value)
        return cls(cam, at, seq, d["kind"], d.get("detail", {}))


class Batch:
    """Puts and deletes applied atomically by TimeIndex.commit()."""

    def __init__(self) -> None:
        # (key, value) puts and (key, None) deletes, in order: plain data, so that a batch
        # crosses to the process that owns the index (vstore/store/store_link.py).
        self.ops: list[tuple[bytes, bytes | None]] = []
        self.count = 0
        # Audit records get their sequence numbers when the batch is committed, in the same
        # write as the counter: no number is ever handed out and then not written, so a gap
        # in the log is always a deletion (see vstore/evidence/audit_chain.py).
        self.audit_records: list[dict[str, Any]] = []
        # Sealed segment rows that take the next link of their camera's chain at commit.
        self.sealed_rows: list[SegmentRow] = []

    def put_sealed(self, row: SegmentRow) -> None:
        """Put a newly sealed segment's row: it is linked into its camera's recording chain
        (and its link signed) when the batch is committed, in the same write."""
        self.sealed_rows.append(row)
        self.count += 1

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))
        self.count += 1

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))
        self.count += 1

    def write_batch(self) -> WriteBatch:
        """The RocksDB batch of these puts and deletes."""
        wb = WriteBatch(raw_mode=True)
        for key, value in self.ops:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        return wb

    def put_segment_and_chunks(self, row: SegmentRow, entries: Iterable[Any]) -> None:
        """A sealed segment's row and the rows of its chunks, read back from its own
        footer directory (``format.DirEntry``): a segment indexed again from its bytes."""
        self.put(row.key(), row.value())
        for e in entries:
            c = ChunkRow.from_entry(row.camera_num, row.segment_id, e)
            self.put(c.key(), c.value())

    def put_catalog_behind(self, camera_num: int, start_ns: int, location: str) -> None:
        """Mark that the shared catalog hour holding a tiered segment that starts at start_ns
        must be written again (the segment was tiered or deleted in this batch;
        lifecycle/shared_catalog.py)."""
        hour = layout.catalog_hour_ns(start_ns)
        # A fresh nonce each time: the writer clears a mark only if it is the one it read.
        mark = f"{location}\n{os.urandom(8).hex()}"
        self.put(layout.catalog_pending_key(camera_num, hour), mark.encode())

    def put_open_marker(
        self, segment_id: int, camera: str, camera_num: int, path: str, start_ns: int
    ) -> None:
        """The open marker of a segment being written (lifecycle W0), as recovery reads it
        back through ``TimeIndex.open_segments``."""
        self.put(
            layout.open_key(segment_id),
            dumps_compact(
                {"camera": camera, "path": path, "start_ns": start_ns, "camera_num": camera_num}
            ),
        )


# Shared by every index opened in this process. Sized so that the chunk rows a server seeks
# in (a camera-month is ~65 MB uncompressed; 1,000 camera-hours about the same) stay decoded
# in memory: a miss costs a read and a zstd decompression, which doubled seek times at 64 MB.
BLOCK_CACHE_BYTES = 256 << 20
# Segment ids reserved per synchronous index write (new_segment_id).
SEGMENT_ID_BLOCK = 256
_BLOCK_CACHE = Cache(BLOCK_CACHE_BYTES)


def _options(read_only: bool = False) -> Options:
    o = Options(raw_mode=True)
    t = BlockBasedOptions()
    t.set_block_cache(_BLOCK_CACHE)
    t.set_bloom_filter(10, False)
    t.set_cache_index_and_filter_blocks(True)
    # The small top-level index and filter blocks never leave the cache (one less lookup
    # and no miss on the path of every seek).
    t.set_pin_l0_filter_and_index_blocks_in_cache(True)
    t.set_pin_top_level_index_and_filter(True)
    o.set_block_based_table_factory(t)
    if not read_only:
        o.create_if_missing(True)
        o.set_compression_type(DBCompressionType.zstd())
    return o


class TimeIndex:
    """The store's RocksDB index. Open read-only to inspect a store another process writes."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._audit_lock = threading.Lock()
        self._chain_locks: dict[int, threading.Lock] = {}
        # () -> the recording key's signer, or None when it cannot be had (set by the store
        # that opens this index for writing): chain links are signed as they are made.
        self.link_signer: Callable[[], LinkSigner | None] | None = None
        self._id_next = self._id_limit = 0  # the block of segment ids in hand (see below)
        self._view: Path | None = None
        try:
            if read_only:
                if not (self.path / "CURRENT").exists():
                    raise VstoreError(f"no index at {self.path}: is this a vstore store?")
                self._db = self._open_read_only()
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self._db = Rdict(str(self.path), _options())
        except VstoreError:
            raise
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's message
            msg = str(exc)
            if "lock" in msg.lower():
                raise StoreLocked(
                    f"the store index {self.path} is open for writing by another process "
                    "(a running `vstore serve` or `vstore record`?); read-only commands still work"
                ) from exc
            if isinstance(full := self._write_error(exc), StorageFull):  # (its MANIFEST)
                raise full from exc
            raise VstoreError(f"cannot open index {self.path}: {msg}") from exc
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._read = ReadOptions()
        if not read_only:
            self._init_schema()
        else:
            self._check_schema()

    # --- writes: every one through these, so a full disk is StorageFull ---------------------
    def _put(self, key: bytes, value: bytes, opts: WriteOptions) -> None:
        try:
            self._db.put(key, value, opts)
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's message
            raise self._write_error(exc) from exc

    def _write(self, wb: WriteBatch, opts: WriteOptions) -> None:
        try:
            self._db.write(wb, opts)
        except Exception as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: Exception) -> Exception:
        """RocksDB's failed write as the engine's error: a full disk (ENOSPC, a quota) is
        StorageFull, which a recorder waits out and starts again after (as when a segment
        write fails so); any other I/O error a VstoreError naming the index. The rest
        (a bug) stays itself."""
        msg = str(exc)
        low = msg.lower()
        if "no space left" in low or "quota exceeded" in low or "nospace" in low:
            return StorageFull(f"index {self.path}: disk full ({msg})")
        if low.startswith("io error"):
            return VstoreError(f"index {self.path}: write failed ({msg})")
        return exc

    # --- lifecycle -----------------------------------------------------------------------------
    def _init_schema(self) -> None:
        raw = self._db.get(layout.SCHEMA_VERSION_KEY)
        if raw is None:
            self._put(layout.SCHEMA_VERSION_KEY, str(SCHEMA_VERSION).encode(), self._sync)
            return
        self._check_schema()

    def _check_schema(self) -> None:
        raw = self._db.get(layout.SCHEMA_VERSION_KEY)
        if raw is not None and int(raw) != SCHEMA_VERSION:
            raise VstoreError(
                f"index schema version {int(raw)} is not supported (this vstore reads "
                f"{SCHEMA_VERSION})"
            )

    def _open_read_only(self) -> Rdict:
        """Open through a fresh view of links (see vstore.index.view). A writer that compacts
        between listing the files and opening them makes the view miss a file: another
        view then catches up with it."""
        for attempt in range(5):
            self._view = make_view(self.path)
            try:
                return Rdict(
                    str(self._view), _options(read_only=True), access_type=AccessType.read_only()
                )
            except Exception as exc:
                self._drop_view()
                if attempt == 4 or "No such file" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _drop_view(self) -> None:
        if self._view is not None:
            remove_view(self._view)
            self._view = None

    def close(self) -> None:
        failed: Exception | None = None
        if self._db is not None:
            try:
                if not self.read_only:
                    self._db.flush_wal(True)
            except Exception as exc:  # noqa: BLE001 - a full disk: what was synced stays (R3)
                failed = self._write_error(exc)
            try:
                self._db.close()
            except Exception as exc:  # noqa: BLE001 - its last flush, on a full disk
                failed = failed or self._write_error(exc)
            self._db = None  # type: ignore[assignment]
        self._drop_view()
        if failed is not None:
            raise failed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def commit(self, batch: Batch, sync: bool = True) -> None:
        if batch.sealed_rows:
            nums = sorted({r.camera_num for r in batch.sealed_rows})
            locks = [self._chain_lock(n) for n in nums]
            for lock in locks:
                lock.acquire()
            try:
                self._link(batch)
                self._commit(batch, sync)
            finally:
                for lock in reversed(locks):
                    lock.release()
            return
        self._commit(batch, sync)

    def _commit(self, batch: Batch, sync: bool) -> None:
        if batch.audit_records:
            with self._audit_lock:
                raw = self._db.get(layout.NEXT_AUDIT_SEQ_KEY)
                seq = int.from_bytes(raw, "big") if raw else 1
                for rec in batch.audit_records:
                    batch.put(layout.audit_key(seq), dumps_compact({"seq": seq, **rec}))
                    seq += 1
                batch.put(layout.NEXT_AUDIT_SEQ_KEY, seq.to_bytes(8, "big"))
                batch.audit_records = []
                self._write(batch.write_batch(), self._sync)  # (an audit record is always synced)
            return
        if batch.count:
            self._write(batch.write_batch(), self._sync if sync else self._nosync)

    # --- recording chains (segment_chain.py) -----------------------------------------------
    def _chain_lock(self, camera_num: int) -> threading.Lock:
        with self._lock:
            lock = self._chain_locks.get(camera_num)
            if lock is None:
                lock = self._chain_locks[camera_num] = threading.Lock()
            return lock

    def _link(self, batch: Batch) -> None:
        """Give each sealed row of the batch the next link of its camera's chain, and put
        the rows and the cameras' new heads into the batch (under the cameras' chain locks)."""
        signer = self.link_signer() if self.link_signer is not None else None
        now_ns = time.time_ns()
        heads: dict[int, ChainHead] = {}
        for row in batch.sealed_rows:
            num = row.camera_num
            head = heads.get(num) or self.chain_head(num)
            if head is None:
                head = ChainHead(self.camera_id(num), 0, ZERO_LINK)
            link = ChainLink(head.seq + 1, head.link)
            stmt = row_statement(head.camera, row, link)
            link = signed_link(signer, link.seq, link.prev, stmt)
            row = row._replace(chain=link)
            batch.put(row.key(), row.value())
            heads[num] = ChainHead(head.camera, link.seq, link_hash(stmt)).signed(signer, now_ns)
        for num, head in heads.items():
            batch.put(layout.chain_head_key(num), head.value())
        batch.sealed_rows = []

    def chain_head(self, camera_num: int) -> ChainHead | None:
        raw = self._db.get(layout.chain_head_key(camera_num))
        return ChainHead.decode(raw) if raw is not None else None

    def raise_chain_head(self, camera_num: int, seq: int, link: str) -> None:
        """Make a camera's head name link ``seq`` unless it is already there or past it: a
        rebuilt index takes back the links its tiered segments carry. The head is signed
        anew; links the index lost with it stay missing, and `vstore check` names them."""
        with self._chain_lock(camera_num):
            head = self.chain_head(camera_num)
            if head is not None and head.seq >= seq:
                return
            signer = self.link_signer() if self.link_signer is not None else None
            new = ChainHead(self.camera_id(camera_num), seq, link).signed(signer, time.time_ns())
            self._put(layout.chain_head_key(camera_num), new.value(), self._sync)

    def sign_chain_heads(self, signer: LinkSigner, now_ns: int, older_than_ns: int) -> int:
        """Sign again every camera's chain head last signed before now - older_than_ns: the
        signature's time says the chain stood so at that moment. Returns how many."""
        n = 0
        for _cam, num in self.cameras():
            with self._chain_lock(num):
                head = self.chain_head(num)
                if head is None or (head.signature and head.signed_at_ns > now_ns - older_than_ns):
                    continue
                self._put(
                    layout.chain_head_key(num), head.signed(signer, now_ns).value(), self._nosync
                )
                n += 1
        return n

    def camera_id(self, camera_num: int) -> str:
        raw = self._db.get(layout.camera_num_key(camera_num))
        if raw is None:
            raise VstoreError(f"camera number {camera_num} has no camera in the index")
        return bytes(raw).decode()

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put_sync(self, key: bytes, value: bytes) -> None:
        """Write one key and wait for it to be durable."""
        self._put(key, value, self._sync)

    def has_segments(self) -> bool:
        """Whether a segment id was ever handed out (so segments may name this store)."""
        return self._db.get(layout.NEXT_SEGMENT_ID_KEY) is not None

    # --- counters and cameras ------------------------------------------------------------------
    def _next(self, key: bytes, batch: Batch | None = None) -> int:
        with self._lock:
            raw = self._db.get(key)
            value = int.from_bytes(raw, "big") if raw else 1
            self._put(key, (value + 1).to_bytes(8, "big"), self._sync)
            return value

    def new_segment_id(self) -> int:
        """A segment id never handed out before, by this process or any earlier one.

        Ids are reserved SEGMENT_ID_BLOCK at a time: the stored counter moves past the whole
        block in one synchronous write, and the ids of the block are then handed out from
        memory. A segment roll-over thus costs no index fsync of its own; a crash skips the
        rest of a block (ids are unique, not dense)."""
        with self._lock:
            if self._id_next >= self._id_limit:
                raw = self._db.get(layout.NEXT_SEGMENT_ID_KEY)
                first = int.from_bytes(raw, "big") if raw else 1
                limit = first + SEGMENT_ID_BLOCK
                self._put(layout.NEXT_SEGMENT_ID_KEY, limit.to_bytes(8, "big"), self._sync)
                self._id_next, self._id_limit = first, limit
            self._id_next += 1
            return self._id_next - 1

    def reserve_segment_ids(self, up_to: int) -> None:
        """Make every later new_segment_id() exceed up_to (after importing foreign ids)."""
        with self._lock:
            raw = self._db.get(layout.NEXT_SEGMENT_ID_KEY)
            nxt = int.from_bytes(raw, "big") if raw else 1
            if nxt <= up_to:
                self._put(layout.NEXT_SEGMENT_ID_KEY, (up_to + 1).to_bytes(8, "big"), self._sync)
            if self._id_next <= up_to:  # the block in hand is below them: take a new one
                self._id_next = self._id_limit = 0

    def camera_num(self, camera_id: str, create: bool = False) -> int | None:
        """The camera's fixed-width number used in keys; allocated on first use when create."""
        raw = self._db.get(layout.camera_key(camera_id))
        if raw is not None:
            return int(json.loads(raw)["num"])
        if not create:
            return None
        with self._lock:
            raw = self._db.get(layout.camera_key(camera_id))
            if raw is not None:
                return int(json.loads(raw)["num"])
            num_raw = self._db.get(layout.NEXT_CAMERA_NUM_KEY)
            num = int.from_bytes(num_raw, "big") if num_raw else 1
            b = Batch()
            b.put(layout.NEXT_CAMERA_NUM_KEY, (num + 1).to_bytes(8, "big"))
            b.put(layout.camera_key(camera_id), json.dumps({"num": num}).encode())
            b.put(layout.camera_num_key(num), camera_id.encode())
            self.commit(b)
            return num

    def forget_camera(self, camera_id: str) -> None:
        """Unregister a camera nothing was ever stored for (an import that stored nothing
        registered it): its number is not given again."""
        num = self.camera_num(camera_id)
        if num is None:
            return
        if next(iter(self.segments(num)), None) is not None:
            raise VstoreError(f"camera {camera_id!r} has footage: it is never forgotten")
        b = Batch()
        b.delete(layout.camera_key(camera_id))
        b.delete(layout.camera_num_key(num))
        self.commit(b)

    def cameras(self) -> list[tuple[str, int]]:
        """(camera id, camera num) for every camera, ordered by id."""
        out = []
        for key, value in self.scan(layout.CAMERA_PREFIX):
            out.append((key[1:].decode(), int(json.loads(value)["num"])))
        return out

    # --- scans ---------------------------------------------------------------------------------
    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) under a key prefix, in key order (from ``start`` if given)."""
        it = self._db.iter()
        it.seek(start if start is not None else prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.next()

    def _scan_from_prev(
        self, prefix: bytes, seek_key: bytes, end_ns: int
    ) -> Iterator[tuple[bytes, bytes]]:
        """Rows of a camera from the last one keyed at or before seek_key, up to end_ns."""
        it = self._db.iter()
        it.seek_for_prev(seek_key)
        if not it.valid() or not it.key().startswith(prefix):
            it.seek(seek_key)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            _cam, t = layout.decode_time_key(key)
            if t >= end_ns:
                return
            yield key, it.value()
            it.next()

    def chunks(self, camera_num: int, start_ns: int, end_ns: int) -> Iterator[ChunkRow]:
        """Chunks overlapping [start_ns, end_ns): one seek, then a forward scan.

        Every clip and snapshot starts here, so each key is fetched from RocksDB once and
        rows are built as plain tuples (see the seek benchmarks)."""
        prefix = layout.camera_prefix(layout.CHUNK_PREFIX, camera_num)
        seek = layout.chunk_key(camera_num, start_ns)
        it = self._db.iter(self._read)
        it.seek_for_prev(seek)
        key = _key(it)
        if key is None or not key.startswith(prefix):
            it.seek(seek)
        for row in self._forward(it, prefix, end_ns):
            if row.end_ns > start_ns:
                yield row

    def _forward(self, it: Any, prefix: bytes, end_ns: int) -> Iterator[ChunkRow]:
        """Rows from the iterator's position on, within prefix, that start before end_ns."""
        key = _key(it)
        while key is not None and key.startswith(prefix):
            row = self._row(key, it.value())
            if row.start_ns >= end_ns:
                return
            yield row
            it.next()
            key = _key(it)

    def segment_chunks(self, row: SegmentRow, end_ns: int | None = None) -> list[ChunkRow]:
        """The chunk rows of one segment, in order: those in its row's span, or up to
        ``end_ns`` (a segment still written, whose row does not say its end yet)."""
        hi = row.end_ns if end_ns is None else end_ns
        return [
            c
            for c in self.chunks(row.camera_num, row.start_ns, hi)
            if c.segment_id == row.segment_id
        ]

    def chunks_starting(self, camera_num: int, start_ns: int, end_ns: int) -> list[ChunkRow]:
        """The chunks that start in [start_ns, end_ns), in one bounded scan (RocksDB stops
        at the bound, so no row is fetched to be thrown away): for long ranges."""
        ro = ReadOptions()
        ro.set_iterate_upper_bound(layout.chunk_key(camera_num, end_ns))
        row = self._row
        start = layout.chunk_key(camera_num, start_ns)
        return [row(k, v) for k, v in self._db.items(from_key=start, read_opt=ro)]

    def chunk_at(self, camera_num: int, t_ns: int) -> ChunkRow | None:
        """The chunk that holds instant t_ns (one seek), or None in a gap."""
        prefix = layout.camera_prefix(layout.CHUNK_PREFIX, camera_num)
        it = self._db.iter(self._read)
        it.seek_for_prev(layout.chunk_key(camera_num, t_ns))
        key = _key(it)
        if key is None or not key.startswith(prefix):
            return None
        row = self._row(key, it.value())
        return row if row.end_ns > t_ns else None

    def chunk_before(self, camera_num: int, t_ns: int) -> ChunkRow | None:
        """The last chunk that starts before instant t_ns (one seek), or None."""
        prefix = layout.camera_prefix(layout.CHUNK_PREFIX, camera_num)
        it = self._db.iter(self._read)
        it.seek_for_prev(layout.chunk_key(camera_num, t_ns - 1))
        key = _key(it)
        if key is None or not key.startswith(prefix):
            return None
        return self._row(key, it.value())

    @staticmethod
    def _row(key: bytes, value: bytes) -> ChunkRow:
        try:
            return tuple.__new__(ChunkRow, _native.keycodec.decode_chunk_row(key, value))
        except ValueError as exc:
            raise VstoreError(f"corrupt chunk row in the index: {key.hex()}") from exc

    def chunks_from_keyframe(
        self, camera_num: int, start_ns: int, end_ns: int, continuation_flag: int
    ) -> list[ChunkRow]:
        """Chunks overlapping [start_ns, end_ns), preceded by the chunks back to the GOP start
        that a decoder needs (when the first overlapping chunk continues an oversized GOP).
        One iterator and one seek: back over continuations, then forward."""
        prefix = layout.camera_prefix(layout.CHUNK_PREFIX, camera_num)
        seek = layout.chunk_key(camera_num, start_ns)
        it = self._db.iter(self._read)
        it.seek_for_prev(seek)
        rows: list[ChunkRow] = []
        key = _key(it)
        if key is not None and key.startswith(prefix):
            back = [self._row(key, it.value())]
            while back[-1].flags & continuation_flag:
                it.prev()
                key = _key(it)
                if key is None or not key.startswith(prefix):
                    break
                back.append(self._row(key, it.value()))
            rows = back[::-1]
            for _ in range(len(back)):  # back to the row at or before start_ns
                it.next()
        else:
            it.seek(seek)
        rows.extend(self._forward(it, prefix, end_ns))
        i = next((k for k, r in enumerate(rows) if r.end_ns > start_ns), len(rows))
        while 0 < i < len(rows) and rows[i].flags & continuation_flag:
            i -= 1
        return rows[i:]

    def segments(
        self, camera_num: int, start_ns: int = -(2**63), end_ns: int = 2**63 - 1
    ) -> Iterator[SegmentRow]:
        """Segments overlapping [start_ns, end_ns), oldest first."""
        prefix = layout.camera_prefix(layout.SEGMENT_PREFIX, camera_num)
        seek = layout.segment_key(camera_num, start_ns, 2**64 - 1)
        for key, value in self._scan_from_prev(prefix, seek, end_ns):
            row = SegmentRow.decode(key, value)
            if row.end_ns > start_ns or row.state == "open":
                yield row

    def segment_items(
        self, camera_num: int, start_ns: int, end_ns: int
    ) -> Iterator[tuple[bytes, bytes]]:
        """The undecoded (key, value) of the segments that may overlap [start_ns, end_ns),
        oldest first: those starting before end_ns, from the last one starting at or before
        start_ns (for callers that keep what they derive from a row until its bytes change)."""
        prefix = layout.camera_prefix(layout.SEGMENT_PREFIX, camera_num)
        seek = layout.segment_key(camera_num, start_ns, 2**64 - 1)
        it = self._db.iter()
        it.seek_for_prev(seek)
        first = it.key() if it.valid() and it.key().startswith(prefix) else seek
        # One bounded scan (RocksDB stops at the bound): a day is 1,440 rows. Read whole
        # while the options live (the bound is theirs).
        ro = ReadOptions()
        ro.set_iterate_upper_bound(layout.segment_key(camera_num, end_ns, 0))
        return iter(list(self._db.items(from_key=first, read_opt=ro)))

    def last_segment(self, camera_num: int) -> SegmentRow | None:
        prefix = layout.camera_prefix(layout.SEGMENT_PREFIX, camera_num)
        it = self._db.iter()
        it.seek_for_prev(prefix + b"\xff" * 16)
        if it.valid() and it.key().startswith(prefix):
            return SegmentRow.decode(it.key(), it.value())
        return None

    def segment_of(self, chunk: ChunkRow) -> SegmentRow | None:
        """The row of the segment that holds ``chunk`` (None: gone)."""
        return next(
            (r for r in self.segments(chunk.camera_num, chunk.start_ns, chunk.start_ns + 1)
             if r.segment_id == chunk.segment_id),
            None,
        )  # fmt: skip

    def untiered_tail(self, camera_num: int, limit: int) -> Iterator[SegmentRow]:
        """The camera's newest segments still on this store's disk (not tiered), newest
        first, up to ``limit``: tiering goes oldest first, so they end at the first tiered
        one."""
        prefix = layout.camera_prefix(layout.SEGMENT_PREFIX, camera_num)
        it = self._db.iter()
        it.seek_for_prev(prefix + b"\xff" * 16)
        while limit > 0 and it.valid() and it.key().startswith(prefix):
            row = SegmentRow.decode(it.key(), it.value())
            if row.location != "local":
                return
            yield row
            limit -= 1
            it.prev()

    def last_chunk(self, camera_num: int) -> ChunkRow | None:
        prefix = layout.camera_prefix(layout.CHUNK_PREFIX, camera_num)
        it = self._db.iter()
        it.seek_for_prev(prefix + b"\xff" * 8)
        if it.valid() and it.key().startswith(prefix):
            return ChunkRow.decode(it.key(), it.value())
        return None

    def events(
        self, camera_num: int, start_ns: int = -(2**63), end_ns: int = 2**63 - 1
    ) -> Iterator[Event]:
        prefix = layout.camera_prefix(layout.EVENT_PREFIX, camera_num)
        for key, value in self.scan(prefix, layout.event_key(camera_num, start_ns, 0)):
            ev = Event.decode(key, value)
            if ev.at_ns >= end_ns:
                return
            yield ev

    # --- holds, audit, garbage --------------------------------------------------------------
    def new_hold_id(self) -> int:
        return self._next(layout.NEXT_HOLD_ID_KEY)

    def holds(self) -> list[dict[str, Any]]:
        """Every hold ever placed (released ones included: the record is permanent)."""
        return [json.loads(v) for _k, v in self.scan(layout.HOLD_PREFIX)]

    def audit(
        self, action: str, by: str, detail: dict[str, Any], at_ns: int, batch: Batch | None = None
    ) -> None:
        """Append a permanent audit record (in ``batch`` when given, else committed now); its
        sequence number is given when the batch is committed."""
        rec = {
            "at_ns": at_ns,
            "action": action,
            "by": by,
            "actor": actor.current(),  # the user, host and command behind it
            "detail": detail,
        }
        b = batch if batch is not None else Batch()
        b.audit_records.append(rec)
        b.count += 1
        if batch is None:
            self.commit(b, sync=True)

    def audit_items(self, first_seq: int = 1) -> list[tuple[int, bytes]]:
        """(sequence number, stored bytes) of the audit records from ``first_seq`` on."""
        return [
            (int.from_bytes(k[1:9], "big"), v)
            for k, v in self.scan(layout.AUDIT_PREFIX, layout.audit_key(first_seq))
        ]

    def audit_digests(self) -> list[tuple[int, bytes]]:
        """(digest number, stored bytes) of every audit digest, oldest first."""
        return [
            (int.from_bytes(k[1:9], "big"), v) for k, v in self.scan(layout.AUDIT_DIGEST_PREFIX)
        ]

    def put_audit_digest(self, seq: int, raw: bytes) -> None:
        """The digest and the next digest's number, in one durable write."""
        wb = WriteBatch(raw_mode=True)
        wb.put(layout.audit_digest_key(seq), raw)
        wb.put(layout.NEXT_AUDIT_DIGEST_KEY, (seq + 1).to_bytes(8, "big"))
        self._write(wb, self._sync)

    def has_signatures(self) -> bool:
        """Whether anything here was ever signed (a chain head, an audit digest): the store's
        keys were made before."""
        return any(
            next(self.scan(prefix), None) is not None
            for prefix in (layout.CHAIN_HEAD_PREFIX, layout.AUDIT_DIGEST_PREFIX)
        )

    def audit_counters(self) -> tuple[int | None, int | None]:
        """The numbers the next audit record and the next digest will take (None: none was
        ever written)."""
        rec = self._db.get(layout.NEXT_AUDIT_SEQ_KEY)
        dig = self._db.get(layout.NEXT_AUDIT_DIGEST_KEY)
        return (
            int.from_bytes(rec, "big") if rec else None,
            int.from_bytes(dig, "big") if dig else None,
        )

    def audit_records(self) -> list[dict[str, Any]]:
        return [json.loads(v) for _k, v in self.scan(layout.AUDIT_PREFIX)]

    def garbage(self) -> list[tuple[int, dict[str, Any]]]:
        """(segment id, record) of deletions that were started but not finished."""
        return [
            (int.from_bytes(k[1:9], "big"), json.loads(v))
            for k, v in self.scan(layout.GARBAGE_PREFIX)
        ]

    def open_segments(self) -> list[tuple[int, dict[str, Any]]]:
        """(segment id, marker) of every segment whose writer had not sealed it."""
        return [
            (int.from_bytes(k[1:9], "big"), json.loads(v)) for k, v in self.scan(layout.OPEN_PREFIX)
        ]

    def all_chunk_rows(self) -> Iterator[ChunkRow]:
        for key, value in self.scan(layout.CHUNK_PREFIX):
            yield ChunkRow.decode(key, value)

    def all_segment_rows(self) -> Iterator[SegmentRow]:
        for key, value in self.scan(layout.SEGMENT_PREFIX):
            yield SegmentRow.decode(key, value)

    def approximate_size_bytes(self) -> int:
        total = 0
        for p in self.path.glob("*"):
            if p.is_file():
                total += p.stat().st_size
        return total


def _key(it: Any) -> bytes | None:
    """The iterator's current key, or None once it is past the end."""
    return it.key() if it.valid() else None
