"""A recorder process: records the cameras its node gives it, into the node's store
through the store link (the node alone opens the index), until the node tells it to stop
or goes away. Started by ``recorder_pool.py`` as ``python -m vstore.service.recorder_process
STORE LINK_FD CONTROL_FD DEADLINES_FD NUMBER LOG_LEVEL NODE_PID CPU`` (CPU: the one it keeps
to, or ``-``); not a command for people.

The node asks, this process answers, one message at a time on the control connection; each
message is ``(number, op, arg)`` and its answer ``(number, "ok" | "error", value)`` (an
answer the node gave up waiting for is known by its number and skipped):

- ``("cameras", (config, {camera: settings}, deadlines | None))``: record exactly these
  cameras (a new url restarts one; the ones left out stop and seal before the answer);
  ``deadlines`` (``time.monotonic()`` instants) fence each camera's writes in a cluster
  (O4), as ``(lease, {camera: other})``: the member's lease deadline for every camera but
  those named (0: not held now), so that a push stays a few bytes for any number of them.
- ``("status", None)``: every camera's status, as ``CameraRun.status`` says it.
- ``("stop", None)``: every camera stops and seals; the answer says so; the process ends.

On the deadlines connection the node sends those deadlines every half second, as the
member's lease renews, and this process beats every second (never behind a long answer on
the control connection).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vstore.base import cpus, heap, libc
from vstore.base.logger import configure
from vstore.service.camera_run import LocalRecorders
from vstore.service.recorder_pool import BEAT_EVERY_S
from vstore.store.config import CameraSettings, StoreConfig
from vstore.store.store_link import LinkedStore

log = logging.getLogger(__name__)


def _deadline(deadlines: tuple[float, dict[str, float]] | None, camera: str) -> float:
    """The instant up to which ``camera`` may be written (looked up at each write: the node
    replaces the deadlines as the lease renews)."""
    if deadlines is None:
        return 0.0
    lease, other = deadlines
    return other.get(camera, lease)


class Recorders:
    """The cameras this process records, as its node last said: recorded as the node's own
    are (``LocalRecorders``), each fenced by its lease deadline in a cluster."""

    def __init__(self, store: LinkedStore) -> None:
        self.store = store
        self.local = LocalRecorders(store, self.gate)
        # (lease deadline, {camera: its own}); None: no cluster, no fencing
        self.deadlines: tuple[float, dict[str, float]] | None = None

    def gate(self, camera: str) -> Callable[[], bool] | None:
        if self.deadlines is None:
            return None
        return lambda: time.monotonic() < _deadline(self.deadlines, camera)

    def set_cameras(
        self,
        config: StoreConfig,
        want: dict[str, CameraSettings],
        deadlines: tuple[float, dict[str, float]] | None,
    ) -> dict[str, list[str]]:
        self.store.config = config
        if deadlines is not None:
            self.deadlines = deadlines  # (replaced whole: a gate reads it unlocked)
        # (every camera left out is sealed before the answer: the node may give it to another)
        return self.local.place(config, want)

    def set_deadlines(self, deadlines: tuple[float, dict[str, float]]) -> None:
        if self.deadlines is not None:
            self.deadlines = deadlines


def serve(control: Connection, recorders: Recorders) -> None:
    """Answer the node's messages until it says stop or goes away."""
    while True:
        try:
            number, op, arg = control.recv()
        except (EOFError, OSError):
            # Nothing can be indexed any more: the node's next start seals what is open
            # (R1-R4). The process ends here, its cameras' threads with it.
            log.error("the node is gone: stopping")
            os._exit(1)
        if op == "stop":
            recorders.local.stop()
            recorders.store.close()
            control.send((number, "ok", None))
            return
        try:
            if op == "cameras":
                reply: Any = recorders.set_cameras(*arg)
            elif op == "status":
                reply = recorders.local.statuses()
            else:
                raise ValueError(f"unknown message {op!r:.40}")
            control.send((number, "ok", reply))
        except Exception as exc:  # (the node logs it and carries on)
            log.exception("message %.40r failed", op)
            control.send((number, "error", f"{type(exc).__name__}: {exc}"))


def main(argv: list[str]) -> int:
    root, link_fd, control_fd, deadlines_fd, number, level, node_pid, cpu = argv
    _die_with_node(int(node_pid))
    if cpu != "-":
        cpus.pin_process(int(cpu))  # (before any thread of its own starts)
    configure(int(level), f"%(asctime)s %(levelname)s recorder-{number} %(name)s: %(message)s")
    # The node stops this process by a message, after its own signal: a Ctrl-C at a
    # terminal, and systemd's SIGTERM, reach the whole process group, and must not cut a
    # camera's seal short (M5).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    link = Connection(int(link_fd))
    control = Connection(int(control_fd))
    # The node's vstore.toml as it read it, and its store's uuid (segments carry it).
    config, uuid = control.recv()
    heap.settle_for_recording()
    store = LinkedStore(Path(root), link, config, uuid)
    recorders = Recorders(store)
    beats = Connection(int(deadlines_fd))
    threading.Thread(target=_read_deadlines, args=(beats, recorders), daemon=True).start()
    threading.Thread(target=_beat, args=(beats,), daemon=True, name="vstore-beat").start()
    control.send(("ok", os.getpid()))
    heap.keep_trimming(threading.Event())  # (for the process's life)
    serve(control, recorders)
    return 0


# Linux's prctl(2) option: the signal this process gets when its parent thread ends.
PR_SET_PDEATHSIG = 1


def _die_with_node(node_pid: int) -> None:
    """End with the node, even stopped (SIGSTOP) when it dies: a recorder process that
    outlived its node would write into segments the node's next start sealed (M5). SIGKILL
    ends a stopped process too; the control connection's end covers the rest."""
    prctl = libc.function("prctl", ("int", "ulong", "ulong", "ulong", "ulong"), "int")
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != node_pid:  # (it died before the line above)
        os._exit(1)


def _read_deadlines(conn: Connection, recorders: Recorders) -> None:
    while True:
        try:
            recorders.set_deadlines(conn.recv())
        except (EOFError, OSError):
            return  # the node is gone: the control connection says so too


def _beat(conn: Connection) -> None:
    """Tell the node this process still runs (it kills one silent for HUNG_AFTER_S)."""
    while True:
        try:
            conn.send(None)
        except (OSError, ValueError):
            return
        time.sleep(BEAT_EVERY_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
