"""The space keeper: holds free disk space above the watermark beside the writers.

A writer asks ``check`` before each new segment; that costs one ``statvfs``. Below the
watermark, ``stop-recording`` refuses at once, and ``overwrite-oldest`` wakes the keeper's
thread and records on: the keeper frees space while cameras write, so no camera ever waits
on another camera's work or on the network (lifecycle S1-S4). Each of its passes evicts the
tier read cache first (disposable copies), then deletes only as much of the oldest local,
unheld, unleased footage as meets the target, through the garbage protocol, finishing only
local deletions. When even that cannot meet the target, it deletes nothing, and writers are
refused (``SpaceRefused``) until space comes back; a live writer then drops packets, counts
them, and resumes by itself at the first keyframe after it does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vstore.base.errors import StorageFull
from vstore.base.logger import get_logger
from vstore.store.config import RetentionConfig
from vstore.store.disk import DiskUsage, min_free_bytes

log = get_logger(__name__)

# A pass that could not meet the target is not retried sooner than this: a camera paused
# for space asks at every keyframe, and a pass reads the whole catalog.
RETRY_INTERVAL_S = 1.0
# How long an import waits for a pass it asked for (live cameras never wait).
WAIT_TIMEOUT_S = 120.0
# How often an unmet watermark is said again while it lasts (a pass runs every second).
UNMET_LOG_EVERY_S = 300.0


class SpaceRefused(StorageFull):
    """No new segment now: the disk is below the watermark and the declared behaviour (or
    what is left to delete) says not to record. Nothing was written; retrying later is safe."""


# One pass of the deletion that frees room: returns the bytes still missing below the
# watermark (0: met) and, when some are, why nothing could free them. The lifecycle layer
# provides it (the retention planner and executor); a store without one only refuses.
MakeRoom = Callable[[], tuple[int, str]]


class SpaceKeeper:
    """One per writable store; its thread starts on the first shortfall. Thread-safe."""

    def __init__(
        self,
        retention_config: Callable[[], RetentionConfig],
        usage: Callable[[], DiskUsage],
        cache_dir: Path,
        make_room: MakeRoom | None = None,
    ) -> None:
        self._config = retention_config
        self.usage = usage
        self._cache_dir = cache_dir
        self._make_room = make_room
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wanted = 0  # passes asked for
        self._done = 0  # passes finished
        self._unmet_bytes = 0  # what the last pass could not free (0: target met)
        self._last_pass_mono = 0.0
        self._stopping = False
        self.passes = 0
        self.last_error: str | None = None
        self.unmet_why = ""  # why the last pass could not meet the target
        self._said: tuple[float, str] | None = None  # (when, why) the log last said it

    # --- the writers' side --------------------------------------------------------------------
    def check(self, wait: bool = False) -> None:
        """Raise SpaceRefused when no new segment may start; otherwise return at once (with
        ``wait``, after the keeper's next pass: an import may wait, a camera may not)."""
        cfg = self._config()
        if cfg.min_free_bytes is None and cfg.min_free_ratio is None:
            return
        usage = self.usage()
        need = min_free_bytes(cfg, usage)
        if usage.free_bytes >= need:
            self._unmet_bytes = 0  # space came back (freed by hand, or by a run): forget it
            return
        if cfg.disk_full == "stop-recording":
            raise SpaceRefused(
                f"free space {usage.free_bytes} B is below the watermark ({need} B) and "
                "disk_full = stop-recording: run `vstore retention run` or free space"
            )
        ticket = self._ask()
        if wait:
            self._wait(ticket)
            usage = self.usage()
            if usage.free_bytes >= need:
                return
        if self._unmet_bytes and usage.free_bytes < need:
            raise SpaceRefused(
                f"disk below the watermark ({usage.free_bytes} B free of {need} B wanted) and "
                f"{self.unmet_why or 'nothing deletable frees enough'}: recording pauses "
                "rather than delete held footage or footage for nothing (release holds, add "
                "storage or free what other programs use); it resumes by itself"
            )

    # --- the keeper's thread ------------------------------------------------------------------
    def _ask(self) -> int:
        with self._cond:
            self._wanted += 1
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="vstore-space", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self._wanted

    def _wait(self, ticket: int, timeout_s: float = WAIT_TIMEOUT_S) -> bool:
        """Wait until pass ``ticket`` (and those before it) finished; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._done < ticket and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_idle(self, timeout_s: float = WAIT_TIMEOUT_S) -> bool:
        """Wait until every pass asked for has finished; False on timeout."""
        with self._cond:
            ticket = self._wanted
        return self._wait(ticket, timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._done >= self._wanted and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                target = self._wanted
            pause = self._last_pass_mono + RETRY_INTERVAL_S - time.monotonic()
            if self._unmet_bytes and pause > 0:
                time.sleep(pause)
            try:
                self._unmet_bytes = self.free_space()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the keeper must outlive one bad pass
                self.last_error = str(exc)
                log.error("freeing disk space failed: %s", exc)
            self._last_pass_mono = time.monotonic()
            self.passes += 1
            with self._cond:
                self._done = max(self._done, target)
                self._cond.notify_all()

    def free_space(self) -> int:
        """One pass: the read cache first, then (through ``make_room``) the fewest, oldest
        footage that meets the target (S1, S2); returns the bytes still missing (0: met)."""
        unmet, why = self._pass()
        if unmet:
            self.unmet_why = why
            self._say_unmet(unmet, why)
        else:
            self._said = None
        return unmet

    def _pass(self) -> tuple[int, str]:
        cfg = self._config()
        usage = self.usage()
        need = min_free_bytes(cfg, usage) - usage.free_bytes
        if need <= 0:
            return 0, ""
        freed = evict_cache(self._cache_dir, need)  # S3: disposable copies go first
        if freed:
            log.warning("low disk: evicted %d B of the tier read cache", freed)
            usage = self.usage()
            need = min_free_bytes(cfg, usage) - usage.free_bytes
            if need <= 0:
                return 0, ""
        if self._make_room is None:
            return need, "this store deletes nothing for room (no retention wired)"
        return self._make_room()

    def _say_unmet(self, unmet_bytes: int, why: str) -> None:
        """Log an unmet target when it starts or its reason changes, then every
        UNMET_LOG_EVERY_S while it lasts: not 86,400 times a day."""
        now = time.monotonic()
        if self._said is None or self._said[1] != why or now - self._said[0] >= UNMET_LOG_EVERY_S:
            self._said = (now, why)
            log.error("disk below the watermark by %d B and %s: nothing deleted, recording "
                      "pauses", unmet_bytes, why)  # fmt: skip

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            th = self._thread
        if th is not None:
            th.join(timeout=30)


def evict_cache(cache_dir: os.PathLike[str] | str, want_bytes: int) -> int:
    """Delete the tier read cache's least recently used files until ``want_bytes`` are
    freed (the cache is copies of tiered footage, re-read on demand). Returns bytes freed."""
    root = Path(cache_dir)
    if not root.is_dir() or want_bytes <= 0:
        return 0
    files = []
    for p in root.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            files.append((st.st_atime_ns, st.st_size, p))
    freed = 0
    for _at, size, p in sorted(files):
        if freed >= want_bytes:
            break
        try:
            p.unlink()
        except OSError:
            continue
        freed += size
    return freed
