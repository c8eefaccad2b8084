"""TS hub: one thread reads every live MPEG-TS socket the native demuxer serves, instead of a
reading thread per camera.

A recorder connects and probes on its own thread as before, then hands its connection to the
hub and waits (no CPU) until the hub ends that session. Every tick the hub asks the kernel
which sockets have bytes (one epoll call for all cameras), drains each that is due (a read
that fills READ_BYTES is followed by another, so pacing never caps a bitrate), demuxes the
bytes, and hands a camera's packets to its writer queue once a GOP is complete, without
ever blocking: a full queue drops to the next keyframe, counted, as on the per-camera path.
A camera silent for its timeout, a closed connection, an error, a stop or a deadline ends
only that camera's session; its recorder wakes and reconnects or returns as before.

Why: at hundreds of cameras a thread per socket costs more in wake-ups and GIL hand-offs
than the demuxing itself (docs/design/ingest.md).
"""

from __future__ import annotations

import selectors
import threading
import time
from typing import Any

from vstore.base.errors import SourceError
from vstore.ingest.mpegts import READ_INTERVAL_S
from vstore.ingest.source import PacketSink

MAX_READS_PER_TICK = 8  # a camera far behind catches up over several ticks, fairly
# How often a camera's socket is drained. Each drain costs a wake-up, a recv and the Python
# around them, whatever it brings, so a TCP camera is read every quarter second (~125 KB at
# 4 Mbit/s; TCP's window holds what arrives meanwhile, and a camera never loses bytes to it).
# A UDP socket keeps READ_INTERVAL_S: datagrams beyond its buffer are lost, and the kernel
# caps that buffer at net.core.rmem_max (208 KiB by default), not the 4 MiB asked for.
TCP_READ_INTERVAL_S = 0.25
# A camera's packets go to its writer in one batch when a video keyframe arrives: the writer
# can then close and commit the GOP before it (acknowledgement is per GOP anyway). Each
# hand-over wakes a writer-pool thread, and at hundreds of cameras those wake-ups and the GIL
# hand-offs they cause cost more than the writing, so there is about one per GOP. A long GOP
# is still handed over every HANDOVER_MAX_S or HANDOVER_MAX_BYTES, so the writer's memory
# bound (max_chunk_bytes) and its stats stay in force.
HANDOVER_MAX_S = 2.0
HANDOVER_MAX_BYTES = 2 * 1024 * 1024


class TsSession:
    """One camera's connection while the hub reads it."""

    def __init__(self, conn: Any, sink: PacketSink, t0: float, first_key: Any) -> None:
        self.conn, self.sink, self.t0, self.first_key = conn, sink, t0, first_key
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.last_data = time.monotonic()
        self.interval_s = READ_INTERVAL_S if conn.sock.udp else TCP_READ_INTERVAL_S
        self.next_read = 0.0
        self.pending: list[tuple[Any, ...]] = []
        self.pending_bytes = 0
        self.key_at = -1  # index in pending of its first video keyframe; -1: none yet
        self.handed_at = time.monotonic()

    def finish(self, error: BaseException | None = None) -> None:
        """End the session: what was read goes to the writer first, whatever the reason (the
        camera closed it, went silent, or recording stops), the frame still being assembled
        too: a video PES without a length ends only where the next begins."""
        try:
            self._add(self.conn.packetizer.flush(self.sink.wall_ns()), 0)
            self.hand_over()
        finally:
            self.error = error
            self.done.set()

    def stopping(self) -> bool:
        return self.sink.stopping(self.t0)

    def feed(self, data: bytes, now_ns: int) -> None:
        self._add(self.conn.packetizer.feed(data, now_ns), len(data))

    def _add(self, packets: list[tuple[Any, ...]], size: int) -> None:
        if packets:
            if self.key_at < 0 and (k := self.first_key(packets)) >= 0:
                self.key_at = len(self.pending) + k
            self.pending += packets
            self.pending_bytes += size

    def handover_due(self, now: float) -> bool:
        return bool(self.pending) and (
            self.key_at >= 0
            or self.pending_bytes >= HANDOVER_MAX_BYTES
            or now - self.handed_at >= HANDOVER_MAX_S
        )

    def hand_over(self) -> None:
        batch, key_at = self.pending, self.key_at
        self.pending, self.pending_bytes, self.key_at = [], 0, -1
        self.handed_at = time.monotonic()
        if batch:
            self.sink.enqueue(batch, key_at >= 0, block=False, key_at=key_at)

    def drain(self) -> bool:
        """Read what is queued; False once the session has ended."""
        sock = self.conn.sock
        for _ in range(MAX_READS_PER_TICK):
            try:
                data, full, eof = sock.read_ready()
            except SourceError as exc:
                self.finish(exc)
                return False
            if data:
                self.last_data = time.monotonic()
                self.feed(data, self.sink.wall_ns())
            if eof:  # (the camera closed the connection)
                self.finish()
                return False
            if not full:
                break
        else:
            self.next_read = 0.0  # still behind: read again next tick
        return True


class TsHub:
    """The reading thread; it runs while it has sessions and starts again on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[TsSession] = []
        self._thread: threading.Thread | None = None

    def run(self, conn: Any, sink: PacketSink, t0: float, first_key: Any) -> None:
        """Read ``conn`` for ``sink`` until the session ends (returns) or fails (raises).
        ``first_key(packets)``: index of the first video keyframe, -1 if none."""
        s = TsSession(conn, sink, t0, first_key)
        # The probed seconds first; then the connection lets go of them (a GOP or more per
        # camera, kept for the whole session otherwise).
        head, conn.pr.head = conn.pr.head, b""
        s.feed(head, sink.wall_ns())
        del head
        with self._lock:
            self._pending.append(s)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="vstore-ts-hub", daemon=True
                )
                self._thread.start()
        s.done.wait()
        if s.error is not None:
            raise s.error

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sessions: dict[int, TsSession] = {}
        try:
            while True:
                tick = time.monotonic()
                with self._lock:
                    new, self._pending = self._pending, []
                    if not new and not sessions:
                        self._thread = None
                        return
                for s in new:
                    fd = s.conn.sock.sock.fileno()
                    sel.register(fd, selectors.EVENT_READ, s)
                    sessions[fd] = s
                for key, _ in sel.select(0):
                    s = key.data
                    if tick < s.next_read:
                        continue  # a TCP camera in a hub that ticks faster for UDP ones
                    s.next_read = tick + s.interval_s - 0.01
                    try:
                        alive = s.drain()
                    except Exception as exc:  # noqa: BLE001 - one camera's failure is its own
                        s.finish(exc)
                        alive = False
                    if not alive:
                        sel.unregister(key.fd)
                        del sessions[key.fd]
                now = time.monotonic()
                interval_s = TCP_READ_INTERVAL_S
                for fd, s in list(sessions.items()):
                    interval_s = min(interval_s, s.interval_s)
                    if s.handover_due(now):
                        s.hand_over()
                    if s.stopping():
                        s.finish()
                    elif now - s.last_data > s.conn.sock.timeout_s:
                        s.finish(s.conn.sock.silence_error())
                    else:
                        continue
                    sel.unregister(fd)
                    del sessions[fd]
                time.sleep(max(0.0, tick + interval_s - time.monotonic()))
        except BaseException as exc:
            # A bug here must not leave recorders waiting forever: every session learns it.
            with self._lock:
                self._thread = None
                orphans = [*sessions.values(), *self._pending]
                self._pending = []
            for s in orphans:
                s.finish(exc)
            raise
        finally:
            sel.close()


_hub = TsHub()


def hub() -> TsHub:
    """The process's hub (one reading thread serves every recorder of every store)."""
    return _hub
