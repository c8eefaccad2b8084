"""Injected I/O faults: a full disk and a failing fsync stop the writer with a clear error,
and what was acknowledged before stays indexed, whole and verifiable."""

from __future__ import annotations

import contextlib
import errno

import pytest

from tests.conftest import START_NS
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.api import open_store
from vstore.base.errors import StorageFull, VstoreError
from vstore.base.fsutil import Fs
from vstore.lifecycle.check import check_store


class FaultyFs(Fs):
    """Fails writes with ENOSPC (or fsyncs with EIO) once armed."""

    def __init__(self) -> None:
        self.enospc = False
        self.eio_fsync = False
        self.short_writes = False

    def writev(self, fd, parts):
        if self.enospc:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.short_writes:
            # Deliver a few bytes per call: the writer must loop until all is written.
            import os

            data = b"".join(bytes(p) for p in parts)
            pos = 0
            while pos < len(data):
                pos += os.write(fd, data[pos : pos + 7])
            return len(data)
        return super().writev(fd, parts)

    def fsync(self, fd):
        if self.eio_fsync:
            raise OSError(errno.EIO, "Input/output error")
        super().fsync(fd)


def push(w, frames, first=0):
    for i in range(first, first + frames):
        key, data = au(i)
        w.write(Packet(0, i * 3600, i * 3600, key, data))


def test_disk_full_is_a_clear_error_and_keeps_acknowledged_footage(store_dir):
    fs = FaultyFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 50)
    w.flush()
    fs.enospc = True
    with pytest.raises(StorageFull, match="disk full"):
        push(w, 50, first=50)
    # The writer refuses more packets: the open GOP may have lost its keyframe.
    with pytest.raises(VstoreError, match="stopped after an error"):
        push(w, 1, first=100)
    with pytest.raises(StorageFull):
        w.close()  # still full: sealing fails too, the file is left to recovery
    fs.enospc = False
    st.close()
    with open_store(store_dir) as st2:  # recovery seals it at the last whole chunk
        assert st2.last_recovery.recovered_segments == 1
        assert check_store(st2).ok
        pk = list(st2.read_packets("cam", START_NS, START_NS + 10**12))
        assert len(pk) >= 50


def test_writer_resumes_after_disk_is_freed(store_dir):
    fs = FaultyFs()
    with open_store(store_dir, fs=fs) as st:
        w = st.writer("cam", [VIDEO], start_ns=START_NS)
        push(w, 50)
        fs.enospc = True
        with pytest.raises(StorageFull):
            push(w, 50, first=50)
        fs.enospc = False
        w.new_run(reason="disk_full")
        push(w, 50, first=100)
        w.close()
        assert check_store(st).ok
        assert len(list(st.read_packets("cam", START_NS, START_NS + 10**12))) >= 100


def test_fsync_failure_stops_the_writer(store_dir):
    fs = FaultyFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 50)
    fs.eio_fsync = True
    with pytest.raises(VstoreError, match="fsync"):
        push(w, 50, first=50)
        # Group commit may leave the GOPs for an fsync after the one running (W2): the
        # failure then comes from it at the next chunk, or from flush() at the latest.
        w.flush()
    with pytest.raises(VstoreError, match="stopped after an error"):
        push(w, 1, first=100)
    fs.eio_fsync = False
    _close_then_recover_clean(st, w, store_dir).close()


def test_short_writes_are_completed(store_dir):
    fs = FaultyFs()
    fs.short_writes = True
    with open_store(store_dir, fs=fs) as st:
        with st.writer("cam", [VIDEO], start_ns=START_NS) as w:
            push(w, 60)
        assert check_store(st).ok
        assert len(list(st.read_packets("cam", START_NS, START_NS + 10**12))) == 60


class SealFailsFs(FaultyFs):
    """fsync fails on the sealer threads only: the failure happens behind the writer."""

    def fsync(self, fd):
        import threading

        if self.eio_fsync and threading.current_thread().name.startswith("vstore-seal"):
            raise OSError(errno.EIO, "Input/output error")
        super().fsync(fd)


def test_a_background_seal_failing_stops_the_writer_and_recovery_seals_it(store_dir):
    store_dir.mkdir(exist_ok=True)
    (store_dir / "vstore.toml").write_text(
        "[store]\nsegment_duration_s = 2\nfsync_interval_s = 60\n"
    )
    fs = SealFailsFs()
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 60)  # one cut: its seal runs behind the writer and succeeds
    w.flush()
    fs.eio_fsync = True
    with pytest.raises(VstoreError, match="sealing"):
        for k in range(60, 2000, 10):  # the next cut's seal fails; the writer then refuses
            push(w, 10, first=k)
    fs.eio_fsync = False
    # Recovery seals the segment the failed seal left open.
    st2 = _close_then_recover_clean(st, w, store_dir)
    assert len(list(st2.read_packets("cam", START_NS, START_NS + 10**12))) >= 60
    st2.close()


def _close_then_recover_clean(st, w, store_dir):
    """Close what can be closed after the fault, reopen (recovery runs), check is clean."""
    try:
        w.close()
    except VstoreError:
        pass
    st.index.close()
    st2 = open_store(store_dir)
    assert check_store(st2).ok
    return st2


def _assert_writev_writes_all(path, parts) -> None:
    """Fs.writev of ``parts`` to a new file returns their length and leaves them in order."""
    import os

    from vstore.base.fsutil import Fs

    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert Fs().writev(fd, parts) == sum(map(len, parts))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)


def test_writev_of_more_buffers_than_one_call_takes_writes_them_all_in_order(tmp_path):
    """A long GOP of small packets is written as its own buffers (never joined): more than a
    writev takes at once must go in several calls, in order, nothing lost."""

    parts = [bytes([k % 256]) * (k % 97) for k in range(1500)]  # zero-length ones included
    parts += [bytearray(b"tail"), memoryview(b"end")]
    _assert_writev_writes_all(tmp_path / "f", parts)


def _writer_with_64k_chunks(tmp_path, fsync_interval_s: int):
    """A store whose chunks close at 64 KiB, on a FaultyFs, and a writer past its keyframe."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(
        f"[store]\nmax_chunk_bytes = 65536\nfsync_interval_s = {fsync_interval_s}\n"
    )
    fs = FaultyFs()
    st = open_store(d, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    key, data = au(0)
    w.write_raw(0, 0, 0, key, data)
    return d, fs, st, w


def test_disk_full_at_a_chunk_the_fast_path_filled_releases_the_writer(tmp_path):
    """The compiled write_raw closes a chunk that reached max_chunk_bytes while holding the
    writer's lock; a write error there must leave the lock free, or a close from another
    thread (the recorder's) would hang."""
    import threading

    _d, fs, st, w = _writer_with_64k_chunks(tmp_path, fsync_interval_s=60)
    fs.enospc = True
    with pytest.raises(StorageFull):
        for i in range(1, 40):  # ordinary 4 KB packets: the 17th fills the 64 KiB chunk
            w.write_raw(0, i * 3600, i * 3600, False, au(i)[1] + bytes(4000))
    fs.enospc = False
    outcome: list[object] = []

    def close() -> None:
        try:
            w.close()
            outcome.append("closed")
        except VstoreError as exc:
            outcome.append(exc)

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(10)
    assert outcome, "the writer's lock was left held"
    st.close()


def test_a_short_writev_is_finished_in_order(tmp_path, monkeypatch):
    """The kernel may write less than asked (a signal, a nearly full disk): the rest of the
    part it stopped in, and the parts after it, are written, in order, nothing twice."""
    import os

    real_writev = os.writev
    calls = []

    def short_writev(fd, bufs):
        # The first call stops 5 bytes into the third buffer; later ones write fully.
        calls.append(len(bufs))
        if len(calls) == 1:
            data = b"".join(bytes(b) for b in bufs[:2]) + bytes(bufs[2])[:5]
            return os.write(fd, data)
        return real_writev(fd, bufs)

    monkeypatch.setattr(os, "writev", short_writev)
    parts = [b"a" * 10, b"b" * 20, b"c" * 30, b"d" * 40] + [
        bytes([k % 256]) * (k % 50) for k in range(600)
    ]
    _assert_writev_writes_all(tmp_path / "f", parts)
    assert len(calls) >= 2


@pytest.mark.parametrize("how", ["write_raw", "method", "write_many"])
def test_a_failed_fsync_at_a_full_chunk_stops_the_writer(tmp_path, how):
    """A chunk closed because it reached max_chunk_bytes is fsynced like any other: when that
    fsync fails the writer must stop (W5), on every path that appends, instead of taking more
    packets and later indexing a chunk whose fsync failed."""
    from vstore.store.camera_writer import CameraWriter

    d, fs, st, w = _writer_with_64k_chunks(tmp_path, fsync_interval_s=0)
    fs.eio_fsync = True
    items = [(0, i * 3600, i * 3600, False, au(i)[1] + bytes(4000)) for i in range(1, 40)]
    with pytest.raises(VstoreError):
        if how == "write_many":
            w.write_many([(*it, None, False) for it in items])
        else:
            for it in items:
                (w.write_raw if how == "write_raw" else lambda *a: CameraWriter.write_raw(w, *a))(
                    *it
                )
    fs.eio_fsync = False
    with pytest.raises(VstoreError, match="stopped after an error"):
        w.write_raw(0, 41 * 3600, 41 * 3600, False, au(41)[1])
    w.flush()  # a good fsync now must not index the chunk whose fsync failed
    assert list(st.index.chunks(st.camera_num("cam"), 0, 2**62)) == []
    # Recovery, on the next open, keeps what the file verifiably holds.
    st2 = _close_then_recover_clean(st, w, d)
    assert st2.last_recovery.recovered_segments == 1
    assert len(list(st2.read_packets("cam", START_NS, START_NS + 10**12))) >= 17
    st2.close()


def test_new_run_with_bad_tracks_changes_nothing(store_dir):
    """new_run refuses bad tracks before it seals anything: the run goes on as before."""
    from vstore import TrackInfo
    from vstore.base.errors import UsageError

    with open_store(store_dir) as st:
        w = st.writer("cam", [VIDEO], start_ns=START_NS)
        push(w, 30)
        with pytest.raises(UsageError):
            w.new_run([TrackInfo(0, "video", "h264", (0, 90000), bitstream="annexb")])
        push(w, 30, first=30)
        w.close()
        got = [p.dts for p in st.read_packets("cam", START_NS, START_NS + 10**12)]
        assert got == [i * 3600 for i in range(60)]
        assert w.stats.segments == 1


class RecordingFs(Fs):
    """Records the order of the durable operations (fsyncs, renames) a caller makes."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str]] = []
        self.fds: dict[int, str] = {}

    def open_new(self, path, mode=0o644):
        fd = super().open_new(path, mode)
        self.fds[fd] = path.name
        return fd

    def fsync(self, fd):
        self.ops.append(("fsync", self.fds.get(fd, "?")))
        super().fsync(fd)

    def replace(self, src, dst):
        self.ops.append(("replace", f"{src.name}->{dst.name}"))
        super().replace(src, dst)

    def fsync_dir(self, path):
        self.ops.append(("fsync_dir", path.name))
        super().fsync_dir(path)


def test_meta_json_is_written_through_the_seam_fsynced_before_its_rename(store_dir):
    fs = RecordingFs()
    open_store(store_dir, fs=fs).close()
    meta_ops = [op for op in fs.ops if "meta" in op[1] or op == ("fsync_dir", store_dir.name)]
    assert meta_ops[:3] == [
        ("fsync", "meta.json.tmp"),
        ("replace", "meta.json.tmp->meta.json"),
        ("fsync_dir", store_dir.name),
    ]
    assert not (store_dir / "meta.json.tmp").exists()


def test_meta_json_deleted_by_hand_is_restored_with_the_same_uuid_and_audited(store_dir):
    st = open_store(store_dir)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 50)
    w.close()
    uuid_before = st.uuid
    st.close()
    (store_dir / "meta.json").unlink()

    st = open_store(store_dir)
    try:
        assert st.uuid == uuid_before
        restored = [r for r in st.index.audit_records() if r["action"] == "store.meta_restored"]
        assert restored and restored[0]["detail"]["uuid"] == uuid_before
        assert check_store(st).ok
    finally:
        st.close()
    assert uuid_before in (store_dir / "meta.json").read_text()


def test_meta_json_and_index_of_different_stores_are_refused(store_dir, tmp_path):
    open_store(store_dir).close()
    other = tmp_path / "other"
    open_store(other).close()
    (store_dir / "meta.json").write_bytes((other / "meta.json").read_bytes())
    with pytest.raises(VstoreError, match="copied from another store"):
        open_store(store_dir)


def test_meta_json_missing_from_an_index_without_the_uuid_copy_is_refused(store_dir):
    from vstore.base import layout
    from vstore.index.time_index import Batch

    st = open_store(store_dir)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    push(w, 50)
    w.close()
    b = Batch()
    b.delete(layout.STORE_UUID_KEY)  # as an index written before the copy existed
    st.index.commit(b)
    st.close()
    (store_dir / "meta.json").unlink()
    with pytest.raises(VstoreError, match=r"restore meta\.json from a backup"):
        open_store(store_dir)
    assert not (store_dir / "meta.json").exists()  # nothing re-invented


def test_a_camera_stopped_by_a_full_disk_records_again_once_there_is_space(tmp_path, monkeypatch):
    """A disk filled to ENOSPC (no watermark kept it from it) fails the camera's writer
    (W5), keeping what it acknowledged; the node's camera starts recording again, in a new
    segment, once writing succeeds again, instead of staying stopped until a restart."""
    import time

    from tests.service_helpers import wait_for
    from tools.camsim import StreamSpec, TcpCamera
    from vstore.service import camera_run
    from vstore.store.config import CameraSettings

    monkeypatch.setattr(camera_run, "DISK_FULL_RETRY_S", 0.5)
    cam = TcpCamera(StreamSpec(width=160, height=120, fps=10, gop_frames=10))
    fs = FaultyFs()
    st = open_store(tmp_path / "s", fs=fs)
    run = camera_run.CameraRun(st, "gate", CameraSettings(url=cam.url, segment_duration_s=2.0))
    try:
        wait_for(lambda: run.recording and (run.recorder.writer.durable_end_ns or 0), 20,
                 "recording")  # fmt: skip
        time.sleep(1.0)
        fs.enospc = True
        wait_for(lambda: "disk is full" in run.recorder.status.last_error
                 or "No space" in run.recorder.status.last_error, 20, "the writer to fail")  # fmt: skip
        full_ns = time.time_ns()
        time.sleep(1.0)
        fs.enospc = False
        wait_for(lambda: run.recording and (run.recorder.writer is not None)
                 and (run.recorder.writer.durable_end_ns or 0) > full_ns, 20,
                 "recording again")  # fmt: skip
        # The segment the failed writer left open is sealed already (R2), not left for
        # the next start (an open segment is never deleted): only the live one is open.
        assert len(list(st.index.open_segments())) == 1
        # Recording again, the status keeps the error it had, dated: not a current one.
        status = run.status()
        assert status["recording"] and "disk" in status["last_error"]
        assert status["last_error_at_ns"] < full_ns + 2 * 10**9
        assert status["last_error_at"].startswith(time.strftime("%Y-", time.gmtime()))
        assert status["since"] and status["durable_end"]
    finally:
        run.halt()
        run.join()
        cam.close()
    covered = st.timeline("gate", 0, 2**62).covered
    assert covered[0][0] < full_ns and covered[-1][1] > full_ns + 10**9, covered
    assert len(covered) >= 2  # the gap while the disk was full is visible
    gaps = [e for e in st.timeline("gate", 0, 2**62).events if e["kind"] == "gap"]
    assert gaps and gaps[-1]["detail"]["reason"] == "disk_full", gaps  # (not a restart)
    st.close()
    st2 = open_store(tmp_path / "s")  # (recovery seals the segment the failed writer left)
    assert check_store(st2).ok
    st2.close()


@contextlib.contextmanager
def _tmpfs(mnt):
    """A file system of 160 MB of its own at ``mnt`` (a tmpfs: root only), to fill."""
    import subprocess

    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mnt)],
                       check=False, capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    with _tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def _fill(path):
    """Take every block the file system has left (unbuffered: nothing waits in Python)."""
    f = open(path, "wb", buffering=0)  # noqa: SIM115 - held open: the caller fills it on
    try:
        while True:
            f.write(b"\0" * (1 << 16))
    except OSError:
        pass
    return f


def _records_again_all_sealed(run, st, filler) -> None:
    """``filler`` removed (room again): the camera records again within a minute, and only
    its live segment is open (what its failures left open was sealed meanwhile)."""
    import time

    from tests.service_helpers import wait_for

    full_ns = time.time_ns()
    filler.unlink()
    wait_for(lambda: run.recording and run.recorder.writer is not None
             and (run.recorder.writer.durable_end_ns or 0) > full_ns + 10**9, 60,
             "recording again")  # fmt: skip
    assert len(list(st.index.open_segments())) == 1  # the live one


def _stop(run, cam, st) -> None:
    run.halt()
    run.join()
    cam.close()
    st.close()


def _checks_clean(root) -> None:
    """The store, opened again (recovery first), checks clean."""
    st = open_store(root)
    try:
        assert check_store(st).ok
    finally:
        st.close()


def test_the_index_on_a_full_disk_is_storage_full_and_writes_again_once_there_is_room(
    small_disk,
):
    """RocksDB's own write (its log) on a disk with no block left: StorageFull, the error
    every writer waits out, not a bare exception; once there is room the index takes
    writes again (RocksDB resumes by itself: it wants the room of a memtable free)."""
    import time

    from tests.service_helpers import wait_for
    from vstore.base.errors import StorageFull
    from vstore.index.time_index import Batch

    st = open_store(small_disk / "s")
    try:
        f = _fill(small_disk / "filler")
        b = Batch()
        b.put(b"\x00test/big", b"x" * (8 << 20))  # more than RocksDB keeps ready in its log
        with pytest.raises(StorageFull, match=r"index .*disk full"):
            st.index.commit(b)
        f.close()
        (small_disk / "filler").unlink()

        def writes() -> bool:
            try:
                st.index.put_sync(b"\x00test/after", b"1")
                return True
            except StorageFull:
                time.sleep(0.5)
                return False

        wait_for(writes, 60, "the index to take writes again")
        assert st.index.get(b"\x00test/after") == b"1"
    finally:
        st.close()


def test_a_disk_so_full_that_nothing_can_be_written_stops_no_camera_for_good(
    small_disk, monkeypatch
):
    """A real disk filled to the last block, held full: the camera's writer fails (W5) and
    its next tries too, the index's own writes with them. Once there is room it records
    again, in a new segment, and the segments the failures left open are sealed first
    (R2), not left for the next start."""
    import time

    from tests.service_helpers import wait_for
    from tools.camsim import StreamSpec, TcpCamera
    from vstore.service import camera_run
    from vstore.store.config import CameraSettings

    monkeypatch.setattr(camera_run, "DISK_FULL_RETRY_S", 0.3)
    monkeypatch.setattr(camera_run, "DISK_FULL_RETRY_MAX_S", 0.3)
    cam = TcpCamera(StreamSpec(width=160, height=120, fps=10, gop_frames=10))
    st = open_store(small_disk / "s")
    run = camera_run.CameraRun(st, "gate", CameraSettings(url=cam.url, segment_duration_s=1.0))
    try:
        wait_for(lambda: run.recording and (run.recorder.writer.durable_end_ns or 0), 20,
                 "recording")  # fmt: skip
        f = _fill(small_disk / "filler")
        wait_for(lambda: "full" in (run.recorder.status.last_error or ""), 20,
                 "the writer to fail")  # fmt: skip
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # held full: what a seal frees is taken again
            try:
                f.write(b"\0" * 4096)
            except OSError:
                time.sleep(0.05)
        f.close()
        _records_again_all_sealed(run, st, small_disk / "filler")
    finally:
        _stop(run, cam, st)
    _checks_clean(small_disk / "s")


def test_a_full_disk_under_the_index_alone_stops_no_camera_for_good(tmp_path, monkeypatch):
    """The index on a disk of its own, filled: the writes behind the writer (chunk rows
    after each fsync, a segment's sealed row) fail, and the writer's next packet says so
    as the full disk it is. The camera records again once there is room, and the segments
    its failures left open are sealed without a restart."""
    import time

    from tests.service_helpers import wait_for
    from tools.camsim import StreamSpec, TcpCamera
    from vstore.index.time_index import Batch
    from vstore.service import camera_run
    from vstore.store.config import CameraSettings

    monkeypatch.setattr(camera_run, "DISK_FULL_RETRY_S", 0.3)
    monkeypatch.setattr(camera_run, "DISK_FULL_RETRY_MAX_S", 0.3)
    cam = TcpCamera(StreamSpec(width=160, height=120, fps=10, gop_frames=10))
    store = tmp_path / "s"
    with _tmpfs(store / "index") as index_disk:
        st = open_store(store)
        run = camera_run.CameraRun(st, "gate", CameraSettings(url=cam.url, segment_duration_s=1.0))
        try:
            wait_for(lambda: run.recording and (run.recorder.writer.durable_end_ns or 0), 20,
                     "recording")  # fmt: skip
            f = _fill(index_disk / "filler")
            # (RocksDB's log has room set aside; a batch larger than that finds none, and
            # the index refuses every write from then on, as a memtable flush would make it)
            big = Batch()
            big.put(b"\x00test/big", b"x" * (8 << 20))
            with pytest.raises(StorageFull):
                st.index.commit(big)
            wait_for(lambda: "full" in (run.recorder.status.last_error or ""), 20,
                     "the writer to fail")  # fmt: skip
            assert "index" in run.recorder.status.last_error
            time.sleep(2)  # (held full: its tries fail)
            f.close()
            _records_again_all_sealed(run, st, index_disk / "filler")
        finally:
            _stop(run, cam, st)
        _checks_clean(store)


def test_a_token_made_on_a_full_disk_is_a_disk_full_error(small_disk, capsys):
    """The token file cannot be written: exit 7 (disk full), said so, no traceback; the
    file as it was stays whole."""
    from vstore.cli.main import main

    store = str(small_disk / "s")
    assert main(["init", "--store", store]) == 0
    args = ["token", "create", "--name", "t", "--role", "viewer", "--groups", "*", "--store"]
    assert main([*args, store]) == 0
    capsys.readouterr()
    f = _fill(small_disk / "filler")
    try:
        assert main([*args, store]) == 7
        err = capsys.readouterr().err
        assert "disk full" in err and "Traceback" not in err
    finally:
        f.close()
    (small_disk / "filler").unlink()
    assert main(["token", "list", "--store", store, "--json"]) == 0
    assert '"t"' in capsys.readouterr().out
