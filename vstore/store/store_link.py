"""The store lent to a recorder process: its camera writers write segment files into the
store as a node's own writers do, and make their index calls (open markers, chunk rows,
seals, segment ids, camera numbers) and disk-space checks through a connection to the node,
whose process alone opens the index.

Why: one process records only as many cameras as one core's share of the interpreter lock
allows; recorder processes spread the cameras over the cores while the store keeps one
index, so every read, hold, retention run, tiering run and check sees one store
(docs/design/cluster.md, "Recorder processes").

Calls are answered out of order: each carries a number and its answer comes back with it,
so a writer's fsynced commit does not wait behind another camera's. Errors of the engine
cross as themselves (a SpaceRefused stays one); a connection that ends fails every call
waiting and every later one, and the recorder process stops.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vstore.base.errors import LinkLost, VstoreError, error_class
from vstore.base.fsutil import translate_oserror
from vstore.index.time_index import Batch, ChunkRow, SegmentRow
from vstore.store.config import StoreConfig
from vstore.store.recovery import recover
from vstore.store.store import Store

log = logging.getLogger(__name__)

# Calls the node serves at once for one recorder process (commits wait on fsyncs).
SERVE_THREADS = 8
# Rows a writer's look around an instant gets (it looks at one or two).
LOOK_AHEAD = 16
# Unsynced commits (a GOP's chunk rows: most calls) of all the process's writers go as one
# call at most this often; those made meanwhile wait for it. A call costs the node about
# 80 us of CPU whatever it carries: one per GOP was a tenth of what two recorder processes
# spent recording flat out. A row's wait is bounded by this, against a GOP's second or two.
COMMIT_SPACING_S = 0.005


class _Calls:
    """Numbered calls over a connection, many in flight, from any thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._waiting: dict[int, Future[Any]] = {}
        self._numbers = itertools.count(1)
        self._closed: str | None = None
        threading.Thread(target=self._read, name="vstore-link", daemon=True).start()

    def call(self, op: str, *args: Any) -> Any:
        fut: Future[Any] = Future()
        with self._send_lock:
            if self._closed is not None:
                raise LinkLost(self._closed)
            number = next(self._numbers)
            self._waiting[number] = fut
            try:
                self._conn.send((number, op, args))
            except (OSError, ValueError) as exc:
                self._waiting.pop(number, None)
                raise LinkLost(f"the node that owns the index is gone: {exc}") from exc
        return fut.result()

    def _read(self) -> None:
        try:
            while True:
                number, ok, value = self._conn.recv()
                fut = self._waiting.pop(number, None)
                if fut is None:
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(_error(*value))
        except Exception as exc:  # noqa: BLE001 - closed, reset, or garbled: the link is over
            reason = f"the node that owns the index is gone ({exc or 'connection closed'})"
        with self._send_lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            fut.set_exception(LinkLost(reason))

    def close(self) -> None:
        with self._send_lock:
            self._closed = self._closed or "the link to the node was closed"
        try:
            # A close alone would not wake our reader blocked in recv, nor end the socket
            # for the node while that recv holds it.
            with socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()


def _error(kind: str, message: str) -> VstoreError:
    """The engine error the node raised, as itself."""
    return error_class(kind)(message)


class _RowCommits:
    """The unsynced commits of every writer of the process, merged: one call carries all
    made since the last was sent, at most one a COMMIT_SPACING_S, and each waits for the
    answer of the call that carried it (its rows are in the index, or the error of the
    node). A camera's commits stay in order: its writer waits for each before the next."""

    def __init__(self, calls: _Calls) -> None:
        self._calls = calls
        self._cond = threading.Condition()
        self._ops: list[tuple[bytes, bytes | None]] = []
        self._due: Future[None] | None = None
        self._sender: threading.Thread | None = None
        self._closed = False

    def commit(self, batch: Batch) -> None:
        with self._cond:
            if self._closed:
                raise LinkLost("the link to the node was closed")
            if self._due is None:
                self._due = Future()
                self._cond.notify()
            due = self._due
            self._ops.extend(batch.ops)
            if self._sender is None:
                self._sender = threading.Thread(target=self._send, name="vstore-link-rows",
                                                daemon=True)  # fmt: skip
                self._sender.start()
        due.result()

    def _send(self) -> None:
        while True:
            with self._cond:
                while self._due is None and not self._closed:
                    self._cond.wait()
                if self._due is None:
                    return
                due, self._due = self._due, None
                merged = Batch()
                merged.ops, merged.count = self._ops, len(self._ops)  # (puts and deletes only)
                self._ops = []
            t = time.monotonic()
            try:
                self._calls.call("commit", merged, False)
            except Exception as exc:  # noqa: BLE001 - LinkLost or the node's error: every writer's
                due.set_exception(exc)
            else:
                due.set_result(None)
            time.sleep(max(0.0, COMMIT_SPACING_S - (time.monotonic() - t)))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


class LinkedIndex:
    """The index calls of camera writers (``WriterHost.index``), made by the node."""

    def __init__(self, calls: _Calls) -> None:
        self._calls = calls
        self._rows = _RowCommits(calls)

    def commit(self, batch: Batch, sync: bool = True) -> None:
        if sync or batch.sealed_rows or batch.audit_records:
            self._calls.call("commit", batch, sync)
        elif batch.count:
            self._rows.commit(batch)

    def new_segment_id(self) -> int:
        return int(self._calls.call("new_segment_id"))

    def last_segment(self, camera_num: int) -> SegmentRow | None:
        row: SegmentRow | None = self._calls.call("last_segment", camera_num)
        return row

    def camera_num(self, camera_id: str, create: bool = False) -> int | None:
        num: int | None = self._calls.call("camera_num", camera_id, create)
        return num

    # What placing a run's wall time reads (wall_placement.py: K2, and a fixed start): a
    # look at the footage around an instant, never a scan.
    def chunk_at(self, camera_num: int, t_ns: int) -> ChunkRow | None:
        row: ChunkRow | None = self._calls.call("chunk_at", camera_num, t_ns)
        return row

    def chunk_before(self, camera_num: int, t_ns: int) -> ChunkRow | None:
        row: ChunkRow | None = self._calls.call("chunk_before", camera_num, t_ns)
        return row

    def segments(self, camera_num: int, start_ns: int, end_ns: int) -> Iterator[SegmentRow]:
        """The first LOOK_AHEAD segments overlapping [start_ns, end_ns)."""
        rows: list[SegmentRow] = self._calls.call("segments", camera_num, start_ns, end_ns)
        return iter(rows)

    def chunks(self, camera_num: int, start_ns: int, end_ns: int) -> Iterator[ChunkRow]:
        """The first LOOK_AHEAD chunks from ``start_ns`` (a look ahead, never a scan)."""
        rows: list[ChunkRow] = self._calls.call("chunks", camera_num, start_ns, end_ns)
        return iter(rows)

    def close(self) -> None:
        self._rows.close()
        self._calls.close()


class LinkedStore(Store):
    """A store as a recorder process writes it: segment files here, the index the node's.
    Only camera writers use it; it holds no lock on the store and runs no recovery (the
    node did, and recovers what this process leaves open if it dies)."""

    LINKED = True

    def __init__(self, root: Path, conn: Connection, config: StoreConfig, uuid: str) -> None:
        self._calls = _Calls(conn)
        self._node_uuid = uuid
        super().__init__(root, create=False)
        self.config = config

    def _open_index(self, read_only: bool) -> Any:
        return LinkedIndex(self._calls)

    def _resolve_uuid(self, meta_uuid: str | None) -> str:
        return self._node_uuid  # (the node resolved it when it opened the store)

    def ensure_space(self, wait: bool = False) -> None:
        # The node frees room for all its cameras at once (lifecycle S1-S4).
        self._calls.call("ensure_space", wait)


def seal_abandoned(store: Store, segment_ids: list[int]) -> list[str]:
    """Seal segments a failed writer (W5) left open, now closed, at their last whole chunk
    (R2), while the store records on: what recovery does at the next writable open, without
    waiting for one (an open segment is never deleted, H2). Through a recorder process's
    link, the node does it. What recovery had to say, in words."""
    if not segment_ids:
        return []
    if isinstance(store, LinkedStore):
        return list(store._calls.call("seal_abandoned", list(segment_ids)))
    try:
        return recover(store, only_segments=set(segment_ids)).messages
    except OSError as exc:  # (recovery's own writes: a disk still full is StorageFull)
        raise translate_oserror(exc, "sealing the segments a failed writer left open") from exc


def serve_link(store: Store, conn: Connection, name: str) -> threading.Thread:
    """Answer a recorder process's calls on ``conn`` against ``store`` until the connection
    ends; the thread returned ends once every call under way has been answered."""
    ops: dict[str, Callable[..., Any]] = {
        "commit": _commit_of(store),
        "new_segment_id": store.index.new_segment_id,
        "last_segment": store.index.last_segment,
        "camera_num": store.index.camera_num,
        "chunk_at": store.index.chunk_at,
        "chunk_before": store.index.chunk_before,
        "chunks": lambda num, start, end: list(
            itertools.islice(store.index.chunks(num, start, end), LOOK_AHEAD)
        ),
        "segments": lambda num, start, end: list(
            itertools.islice(store.index.segments(num, start, end), LOOK_AHEAD)
        ),
        "ensure_space": store.ensure_space,
        "seal_abandoned": lambda ids: seal_abandoned(store, ids),
    }
    send_lock = threading.Lock()

    def answer(number: int, op: str, args: tuple[Any, ...]) -> None:
        try:
            if op not in ops:
                raise VstoreError(f"a recorder process asked for {op!r:.40}: no such call")
            reply = (number, True, ops[op](*args))
        except VstoreError as exc:
            reply = (number, False, (type(exc).__name__, str(exc)))
        except Exception as exc:  # (a bug of the node: the writer fails aloud, W5)
            log.exception("%s: index call %s failed", name, op)
            reply = (number, False, ("VstoreError", f"the node failed a {op}: {exc}"))
        with send_lock:
            try:
                conn.send(reply)
            except (OSError, ValueError):
                pass  # the recorder is gone; the node recovers what it left (R1-R4)

    def serve() -> None:
        pool = ThreadPoolExecutor(SERVE_THREADS, thread_name_prefix=f"vstore-link-{name}")
        try:
            while True:
                try:
                    number, op, args = conn.recv()
                except Exception:  # noqa: BLE001 - ended, reset or garbled: the link is over
                    return
                pool.submit(answer, number, op, args)
        finally:
            pool.shutdown(wait=True)
            conn.close()

    t = threading.Thread(target=serve, name=f"vstore-link-{name}", daemon=True)
    t.start()
    return t


def _commit_of(store: Store) -> Callable[[Batch, bool], None]:
    def commit(batch: Batch, sync: bool) -> None:
        if type(batch) is not Batch:
            raise VstoreError("a recorder process sent something other than an index batch")
        store.index.commit(batch, sync)

    return commit
