"""Hashing a file while another thread writes it: a thread reads the bytes back (from the
page cache) just behind the writer, so an export's SHA-256 costs no pass of its own after
the clip is written; it also starts their writeback to disk, so the fsync that makes the
export durable waits for the tail only."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from vstore.base.fsutil import Fs

_BLOCK = 1 << 20


class FollowingHasher:
    """Start it before the writer creates or fills ``path``; call ``written()`` as the writer
    goes (it wakes the reader) and ``finish()`` once the writer has closed the file, which
    returns the SHA-256 state of every byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._h = hashlib.sha256()
        self._fs = Fs()
        self._wake = threading.Event()
        self._done = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="vstore-hash", daemon=True)
        self._thread.start()

    def written(self, *_: Any) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            fd = -1
            while fd < 0:  # the writer creates the file
                done = self._done  # read before the open: a file made just after still counts
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    if done:
                        raise
                    self._wake.wait(0.005)
                    self._wake.clear()
            try:
                pos = 0
                buf = bytearray(_BLOCK)
                view = memoryview(buf)
                while True:
                    done = self._done  # read before looking at the size: no byte is missed
                    n = os.preadv(fd, [buf], pos)
                    if n:
                        self._h.update(view[:n])  # (releases the GIL: runs beside the writer)
                        self._fs.start_writeback(fd, pos, n)
                        pos += n
                        continue
                    if done:
                        return
                    self._wake.wait(0.005)
                    self._wake.clear()
            finally:
                os.close(fd)
        except OSError as exc:  # handed to finish()
            self._error = exc

    def finish(self) -> Any:
        self._done = True
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._h

    def abandon(self) -> None:
        self._done = True
        self._wake.set()
        self._thread.join()
