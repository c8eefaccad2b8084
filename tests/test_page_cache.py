"""Footage leaves the page cache once fsynced (and only then), unless the store keeps it."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import pytest

from tests.conftest import START_NS
from tests.test_timestamps import IDR, PPS, SLICE, SPS, VIDEO
from vstore import Packet
from vstore.api import open_store
from vstore.base.fsutil import Fs
from vstore.lifecycle.check import check_store

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mincore and fadvise: Linux")


def resident_pages(path) -> int:
    """Pages of ``path`` in the page cache, asked of the kernel with mincore(2) over a
    mapping that is never touched (so asking does not read anything in)."""
    size = os.path.getsize(path)
    page = mmap.PAGESIZE
    vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        view = (ctypes.c_char * size).from_buffer(m)
        try:
            rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vec)
        finally:
            del view
    assert rc == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec)


class SyncLog(Fs):
    """Records the order of fsyncs and cache drops, and the bytes written by then (for an
    fsync: when it began, all it is sure to cover while the writer appends beside it)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[int, int], int]] = []

    def fsync(self, fd):
        st = os.fstat(fd)
        super().fsync(fd)
        self.events.append(("fsync", (fd, st.st_ino), st.st_size))

    def drop_cache(self, fd, offset, length):
        # Keyed by inode too: a reused descriptor number must not inherit another file's fsyncs.
        self.events.append(("drop", (fd, os.fstat(fd).st_ino), offset + length))
        super().drop_cache(fd, offset, length)

    def start_writeback(self, fd, offset, length):
        self.events.append(("writeback", (fd, os.fstat(fd).st_ino), offset + length))
        assert offset + length <= os.fstat(fd).st_size, "writeback asked for unwritten bytes"
        super().start_writeback(fd, offset, length)


def record(store_dir, frames: int, fs: Fs | None = None, sealed: bool = True):
    st = open_store(store_dir, fs=fs)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    for i in range(frames):
        key = i % 25 == 0
        data = (SPS + PPS + IDR if key else SLICE) + i.to_bytes(4, "big") * 5000
        w.write(Packet(0, i * 3600, i * 3600, key, data))
    w.flush()
    if sealed:
        w.close()
        st.close()
    return st, w


def segment_files(store_dir):
    return sorted(store_dir.rglob("*.vseg"))


def test_fsynced_footage_is_not_left_in_the_page_cache(store_dir):
    record(store_dir, 150)
    files = segment_files(store_dir)
    assert files and all(resident_pages(p) == 0 for p in files)
    # Dropped from the cache, not lost: every byte reads back and verifies.
    with open_store(store_dir) as st:
        assert check_store(st).ok


def test_open_segment_keeps_only_its_unsynced_tail_cached(store_dir):
    st, w = record(store_dir, 120, sealed=False)
    try:
        (p,) = segment_files(store_dir)
        assert os.path.getsize(p) > 1_000_000
        assert resident_pages(p) <= 1  # the partial last page, dirtied again by the next write
    finally:
        w.close()
        st.close()


def test_drop_page_cache_false_keeps_footage_cached(store_dir):
    store_dir.mkdir()
    (store_dir / "vstore.toml").write_text("[store]\ndrop_page_cache = false\n")
    record(store_dir, 150)
    files = segment_files(store_dir)
    assert sum(resident_pages(p) for p in files) > 100


def test_cache_is_dropped_only_after_the_bytes_are_fsynced(store_dir):
    fs = SyncLog()
    record(store_dir, 150, fs=fs)
    synced: dict[tuple[int, int], int] = {}
    drops = 0
    for kind, fd, end in fs.events:
        if kind == "fsync":
            # Fsyncs behind the writer overlap and may return out of order: a later one that
            # returned first already covers more than an earlier one returning after it.
            synced[fd] = max(synced.get(fd, -1), end)
        elif kind == "drop":
            drops += 1
            assert end <= synced.get(fd, -1) + mmap.PAGESIZE, "dropped bytes not yet fsynced"
    assert drops >= 3


def test_each_chunk_fsynced_at_once_starts_its_writeback_first(store_dir):
    """With fsync every chunk, the kernel is asked to start writing a chunk before the writer
    hashes it, and an fsync that covers the chunk follows (behind the writer, which may
    write the next chunk first); with fsync_interval_s > 0, chunks that are not fsynced at
    once are left to the kernel (no extra I/O between fsyncs)."""
    fs = SyncLog()
    record(store_dir, 150, fs=fs)
    events = [e for e in fs.events if e[0] != "drop"]
    assert [k for k, _fd, _end in events].count("writeback") >= 5
    for i, (k, fd, end) in enumerate(events):
        if k == "writeback":
            later = [size for k2, fd2, size in events[i + 1 :] if k2 == "fsync" and fd2 == fd]
            assert later and max(later) >= end, "a chunk's writeback without its fsync"
    lazy = SyncLog()
    d = store_dir.parent / "lazy"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nfsync_interval_s = 60\n")
    record(d, 150, fs=lazy)
    assert [k for k, _fd, _end in lazy.events].count("writeback") <= 1  # the first chunk only
