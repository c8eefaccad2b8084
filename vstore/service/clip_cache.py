"""Prepared clip layouts kept for a short while, so that a player's run of Range requests on
one clip URL lays the file out once: building the moov of an hour reads every chunk's packet
table, a Range of the last megabyte then reads a chunk or two.

A kept layout keeps its footage leased (retention waits for it, lifecycle L1-L3), so entries
live ``TTL_S`` after their last use and at most ``MAX_ENTRIES`` are kept. A range reaching
into the last ``LIVE_MARGIN_S`` is never kept: footage still arriving would be missing from
the kept layout.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from vstore.base.timebase import NS_PER_S
from vstore.export.clip_file import ClipFile

TTL_S = 30.0
MAX_ENTRIES = 16
LIVE_MARGIN_S = 60.0

Key = tuple[str, int, int]


class _Entry:
    __slots__ = ("clip", "last_used", "users")

    def __init__(self, clip: ClipFile) -> None:
        self.clip = clip
        self.users = 0
        self.last_used = time.monotonic()


class ClipCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(
        self, key: Key, make: Callable[[], ClipFile | None]
    ) -> tuple[ClipFile | None, Callable[[], None]]:
        """The layout for ``key`` (made by ``make`` when none is kept) and the function to
        call when done with it. Blocking: call off the event loop."""
        self.expire()
        with self._lock:
            e = self._entries.get(key)
            if e is not None:
                e.users += 1
                self._entries.move_to_end(key)
                return e.clip, lambda: self._release(key, e)
        clip = make()
        if clip is None:
            return None, lambda: None
        if key[2] > time.time_ns() - int(LIVE_MARGIN_S * NS_PER_S):
            return clip, clip.close  # at the live edge: not kept
        e = _Entry(clip)
        e.users = 1
        with self._lock:
            old = self._entries.pop(key, None)
            self._entries[key] = e
        if old is not None:
            self._retire(old)
        return clip, lambda: self._release(key, e)

    def _release(self, key: Key, e: _Entry) -> None:
        with self._lock:
            e.users -= 1
            e.last_used = time.monotonic()
            retired = self._entries.get(key) is not e and e.users == 0
        if retired:
            e.clip.close()
        self.expire()

    @staticmethod
    def _retire(e: _Entry) -> None:
        if e.users == 0:
            e.clip.close()

    def expire(self) -> None:
        """Close the layouts unused for TTL_S, and the oldest beyond MAX_ENTRIES."""
        now = time.monotonic()
        gone: list[_Entry] = []
        with self._lock:
            for key in list(self._entries):
                e = self._entries[key]
                old = now - e.last_used > TTL_S
                if e.users == 0 and (old or len(self._entries) > MAX_ENTRIES):
                    gone.append(self._entries.pop(key))
        for e in gone:
            e.clip.close()

    def close(self) -> None:
        with self._lock:
            gone = list(self._entries.values())
            self._entries.clear()
        for e in gone:
            if e.users == 0:
                e.clip.close()
