"""Chunks are fsynced behind the writer (lifecycle W2): the writer goes on while at most
SYNC_DEPTH fsyncs run, and beyond them leaves chunks for the next fsync up to
GROUP_MAX_BYTES (group commit); nothing is indexed or called durable before its fsync
returns, and a failed fsync also fails the later one that overlapped it (fsyncgate) and
stops the writer."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from tests.conftest import START_NS
from tests.test_fault_injection import _close_then_recover_clean, push
from tests.test_timestamps import VIDEO
from vstore.api import open_store
from vstore.base.errors import StorageFull, VstoreError
from vstore.base.fsutil import Fs
from vstore.lifecycle.check import check_store
from vstore.store import writer_sync
from vstore.store.writer_sync import SYNC_DEPTH

GATE_TIMEOUT_S = 30  # a test that fails must not hang the suite


class GatedFs(Fs):
    """fsyncs on the store's sync threads wait for ``gate``; the first one then fails with
    EIO when ``fail_first`` is set."""

    def __init__(self, fail_first: bool = False) -> None:
        self.gate = threading.Event()
        self.fail_first = fail_first
        self.enospc = False
        self.waiting = 0
        self.direct = 0  # fsyncs on other threads (flush, seal), which pass the gate
        self._calls = 0
        self._lock = threading.Lock()

    def writev(self, fd, parts):
        if self.enospc:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().writev(fd, parts)

    def fsync(self, fd):
        if not threading.current_thread().name.startswith("vstore-sync"):
            self.direct += 1
            return super().fsync(fd)
        with self._lock:
            self._calls += 1
            first = self._calls == 1
            self.waiting += 1
        if first or not self.fail_first:
            assert self.gate.wait(GATE_TIMEOUT_S), "gate never opened"
        if first and self.fail_first:
            raise OSError(errno.EIO, "Input/output error")
        return super().fsync(fd)


def wait_for(cond, what: str = "condition") -> None:
    """Poll ``cond`` (work on the store's threads) until true, or fail after the timeout."""
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not cond():
        assert time.monotonic() < deadline, f"{what}: timed out"
        time.sleep(0.01)


def close_in_thread(w) -> tuple[threading.Thread, list[VstoreError]]:
    """Start ``w.close()`` on a thread and give it half a second; its errors land in the list."""
    errors: list[VstoreError] = []

    def close():
        try:
            w.close()
        except VstoreError as exc:
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.5)
    return closer, errors


def chunk_count(st) -> int:
    return len(list(st.index.chunks(st.camera_num("cam"), 0, 2**62)))


def test_writer_goes_on_while_fsyncs_run_behind_it_and_groups_chunks_up_to_the_limit(
    store_dir, monkeypatch
):
    """SYNC_DEPTH fsyncs held at the gate: the writer goes on, leaving the GOPs it closes for
    the next fsync (group commit) until they hold GROUP_MAX_BYTES, then waits for the oldest
    fsync; one fsync then covers the grouped GOPs. Nothing is indexed or durable before."""
    fs = GatedFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    # Each keyframe after the first closes a GOP; its fsync blocks at the gate.
    push(w, 25 * SYNC_DEPTH + 1)
    wait_for(lambda: fs.waiting == SYNC_DEPTH)
    assert w.durable_end_ns is None  # nothing is durable before its fsync returns
    assert chunk_count(st) == 0  # nor indexed (W2)
    gop_bytes = w._seg.entries[0].length  # every GOP of push() is the same size
    monkeypatch.setattr(writer_sync, "GROUP_MAX_BYTES", gop_bytes * 5 // 2)
    # Two GOPs more close with no place free: both are left for the next fsync, no wait.
    push(w, 50, first=25 * SYNC_DEPTH + 1)
    assert fs.waiting == SYNC_DEPTH and chunk_count(st) == 0
    # A third would leave more than GROUP_MAX_BYTES: the writer waits for the oldest fsync.
    more = threading.Thread(target=push, args=(w, 25), kwargs={"first": 25 * SYNC_DEPTH + 51})
    more.start()
    more.join(0.5)
    assert more.is_alive(), "the writer left more than GROUP_MAX_BYTES for the next fsync"
    assert w.durable_end_ns is None and chunk_count(st) == 0
    fs.gate.set()
    more.join(GATE_TIMEOUT_S)
    assert not more.is_alive()
    w.flush()
    assert fs.waiting == SYNC_DEPTH + 1  # one fsync behind the writer for the three GOPs
    rows = list(st.index.chunks(st.camera_num("cam"), 0, 2**62))
    assert len(rows) == SYNC_DEPTH + 4  # the GOPs, then the open one flush() closed
    assert w.durable_end_ns == rows[-1].end_ns
    w.close()
    assert check_store(st).ok
    assert len(list(st.read_packets("cam", START_NS, START_NS + 10**12))) == 25 * SYNC_DEPTH + 76
    st.close()


def test_chunks_left_for_the_next_fsync_get_it_when_the_camera_goes_quiet(store_dir):
    """Group commit leaves two GOPs for the next fsync while one runs; then the camera sends
    nothing more (a dropped source, a pause before close()). When the running fsync
    returns, its sync thread hands them over: they are fsynced, indexed and durable with no
    further call on the writer."""
    fs = GatedFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 25 * SYNC_DEPTH + 51)  # SYNC_DEPTH fsyncs at the gate, then two GOPs left over
    wait_for(lambda: fs.waiting == SYNC_DEPTH)
    assert chunk_count(st) == 0 and w.durable_end_ns is None
    fs.gate.set()
    wait_for(lambda: chunk_count(st) == SYNC_DEPTH + 2, "the GOPs left over were never fsynced")
    assert fs.waiting == SYNC_DEPTH + 1  # one fsync for both
    rows = list(st.index.chunks(st.camera_num("cam"), 0, 2**62))
    wait_for(lambda: w.durable_end_ns == rows[-1].end_ns)
    w.close()
    assert check_store(st).ok
    st.close()


def test_chunks_left_over_are_handed_over_once_a_busy_writer_lets_go(store_dir):
    """The same, but the writer is busy (holds its lock) when the running fsync returns: the
    hand-over retries until it gets the lock, then fsyncs the chunks left over."""
    fs = GatedFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 25 * SYNC_DEPTH + 51)
    wait_for(lambda: fs.waiting == SYNC_DEPTH)
    with w._lock:  # as a packet being written holds it
        fs.gate.set()
        wait_for(lambda: chunk_count(st) == SYNC_DEPTH)  # the gated fsync's own GOPs
        time.sleep(3 * writer_sync.HANDOVER_RETRY_S)  # retries find the lock taken
        assert fs.waiting == SYNC_DEPTH
    wait_for(lambda: chunk_count(st) == SYNC_DEPTH + 2, "the GOPs left over were never fsynced")
    assert fs.waiting == SYNC_DEPTH + 1
    w.close()
    assert check_store(st).ok
    st.close()


def test_failed_fsync_fails_the_later_fsync_beside_it_and_indexes_neither(store_dir, monkeypatch):
    """The first GOP's fsync fails while the second GOP's fsync, running beside it, returns:
    after a failed fsync a later one does not vouch for the bytes before it, so neither
    GOP is indexed, and the writer refuses packets until new_run(). Two fsyncs in flight
    (SYNC_DEPTH is a tunable; the chain must hold at any depth) and no group commit, so the
    second GOP gets an fsync of its own."""
    monkeypatch.setattr(writer_sync, "SYNC_DEPTH", 2)
    monkeypatch.setattr(writer_sync, "GROUP_MAX_BYTES", 0)
    fs = GatedFs(fail_first=True)
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 51)  # two GOPs closed: two fsyncs behind the writer, the first held at the gate
    fs.gate.set()
    with pytest.raises(VstoreError, match=r"fsync|stopped after an error"):
        push(w, 50, first=51)
    with pytest.raises(VstoreError, match="stopped after an error"):
        push(w, 1, first=101)
    assert chunk_count(st) == 0
    assert w.durable_end_ns is None
    # Starting over after the failure works: the failed segment is left to recovery.
    w.new_run(reason="fsync_failed")
    push(w, 26, first=200)
    w.flush()
    assert chunk_count(st) == 2  # a GOP, then the keyframe flush() closed
    st2 = _close_then_recover_clean(st, w, store_dir)
    # Recovery keeps what the abandoned file verifiably holds (R2), beside the new run.
    assert st2.last_recovery.recovered_segments == 1
    assert len(list(st2.read_packets("cam", START_NS, START_NS + 10**13))) >= 50 + 26
    st2.close()


def test_close_reports_an_fsync_that_failed_behind_the_writer(store_dir):
    """A failure nobody has seen yet (the last GOP's fsync) is raised by close()."""
    fs = GatedFs(fail_first=True)
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 26)
    fs.gate.set()
    with pytest.raises(VstoreError, match="fsync"):
        w.close()
    st.index.close()
    with open_store(store_dir) as st2:
        assert st2.last_recovery.recovered_segments == 1
        assert check_store(st2).ok


def test_seal_fsyncs_beside_the_fsync_behind_it_and_fails_with_it(store_dir):
    """close() seals while the last GOP's fsync still runs behind the writer: the seal's own
    fsync does not wait for it (one fsync's wait, not two in a row), but the file stays open
    until it is done, and its failure fails the seal although the seal's fsync returned (a
    later fsync does not vouch for the bytes before a failed one)."""
    fs = GatedFs(fail_first=True)
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 30)  # one GOP closed, its fsync held at the gate; five frames open
    closer, errors = close_in_thread(w)
    assert closer.is_alive(), "the seal finished before the fsync behind it"
    assert fs.direct >= 1, "the seal waited for the fsync behind it before its own"
    fs.gate.set()
    closer.join(GATE_TIMEOUT_S)
    assert len(errors) == 1 and "fsync" in str(errors[0])
    assert chunk_count(st) == 0  # neither the failed GOP nor the sealed rest is indexed
    st.index.close()
    with open_store(store_dir) as st2:
        assert st2.last_recovery.recovered_segments == 1
        assert check_store(st2).ok


def test_close_on_a_full_disk_waits_for_the_fsync_behind_it_before_closing_the_file(store_dir):
    """close() that cannot seal (disk full) leaves the file to recovery, but only after the
    fsync running behind the writer has finished with its descriptor (closing it under the
    fsync could fsync whatever file reused the number, and index chunks never fsynced)."""
    fs = GatedFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 30)  # one GOP closed, its fsync held at the gate; five frames open
    fs.enospc = True
    closer, errors = close_in_thread(w)
    assert closer.is_alive(), "close() abandoned the file while its fsync was running"
    fs.gate.set()
    closer.join(GATE_TIMEOUT_S)
    assert len(errors) == 1 and isinstance(errors[0], StorageFull)
    assert chunk_count(st) == 1  # the GOP whose fsync returned is indexed
    fs.enospc = False
    st.index.close()
    with open_store(store_dir) as st2:
        assert st2.last_recovery.recovered_segments == 1
        assert check_store(st2).ok
        assert len(list(st2.read_packets("cam", START_NS, START_NS + 10**12))) == 25
