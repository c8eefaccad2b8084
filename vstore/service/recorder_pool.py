"""The node's recorder processes (``[service] recorders = N``): the cameras the node records
spread over N processes, so that recording grows with the cores, while the node's process
keeps the store's one index, the API, the schedule and the cluster member.

Each camera is recorded by one process and stays with it (a camera new to the node goes to
the process with the fewest). A process that dies, or stops answering (it beats every
second; HUNG_AFTER_S without a beat and it is killed), is seen within a second or so: the
node waits for the index calls it had under way, seals the segments it left open as
recovery does at a start (R1-R4: every whole chunk kept, damage recorded aloud), and starts
it again with the same cameras, one, two, four... up to 30 seconds later; its cameras stay
lent to it meanwhile (M2), so no import or repair takes them. In a cluster the node pushes
each camera's lease deadline to its process every half second; a process writes a camera
only before that deadline (O4), as the node's own recorders ask ``Agent.holds``.

With ``[service] pin_recorders`` (the default) each process keeps to a physical core of its
own when there are as many (M1): a process's threads then hand the interpreter lock over on
one core instead of being moved between cores at every hand-over, measured 15-20 % more
recorded per CPU second (bench_cores.py, the "linked" variants).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from vstore.base import cpus
from vstore.base.errors import UsageError, VstoreError
from vstore.service.camera_run import recording_settings
from vstore.store.config import CameraSettings, StoreConfig
from vstore.store.recovery import recover
from vstore.store.store import Store
from vstore.store.store_link import serve_link

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a process's imports and first answer
ANSWER_TIMEOUT_S = 600.0  # its cameras stopping and sealing, at the most, while it beats
STATUS_TIMEOUT_S = 2.0  # a status not answered by then shows the process as not answering
MONITOR_EVERY_S = 0.5  # deaths seen, lease deadlines pushed
BEAT_EVERY_S = 1.0  # (recorder_process.py beats this often)
HUNG_AFTER_S = 10.0  # no beat for this long: hung (or stopped), killed and started again
RESTART_MAX_S = 30.0
STEADY_S = 60.0  # a process that ran this long restarts at once when it dies
STATUS_CACHE_S = 0.5  # (metrics ask each camera's status in turn)


class RecorderGone(VstoreError):
    """A recorder process did not answer: it died, or hung and was killed."""


class RecorderBusy(VstoreError):
    """A recorder process is answering another message (its cameras starting or sealing)."""


class _Process:
    """One recorder process and the cameras it records."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: Connection | None = None
        # Lease deadlines go out, beats come in, on a connection of their own: never
        # behind a long answer.
        self.beats: Connection | None = None
        self.last_beat_mono = 0.0
        self.link: threading.Thread | None = None
        self.cameras: dict[str, CameraSettings] = {}  # what it should record
        self.lent: set[str] = set()  # cameras the store counts as its (Store.lend_camera)
        self.lock = threading.Lock()  # one message at a time
        self.started_mono = 0.0
        self.next_start_mono = 0.0
        self.backoff_s = 1.0
        self.last_death = ""
        self.asked = 0  # messages sent (their numbers)
        self.last_status: dict[str, dict[str, Any]] = {}  # its cameras' statuses, as last said

    @property
    def alive(self) -> bool:
        return self.proc is not None

    def silent_s(self) -> float:
        """Seconds since its last beat (0 while it is not running)."""
        return time.monotonic() - self.last_beat_mono if self.proc is not None else 0.0


class RecorderPool:
    """See the module notes. Thread-safe."""

    def __init__(
        self,
        store: Store,
        count: int,
        deadline: Callable[[str], float] | None = None,
    ) -> None:
        self.store = store
        self.config: StoreConfig = store.config
        # In a cluster, camera -> the time.monotonic() its writes must stop by.
        self.deadline = deadline
        self.procs = [_Process(k) for k in range(count)]
        # Process k keeps to the k-th of these CPUs (one per physical core), when pinned.
        self.pins = cpus.pin_plan(count) if store.config.service.pin_recorders else []
        self._lock = threading.Lock()  # placement, deaths, starts
        self._no_restarts = threading.Event()  # the node is stopping
        self._stopped = threading.Event()  # every process ended
        self._monitor: threading.Thread | None = None
        self._status_lock = threading.Lock()  # one refresh of the statuses at a time
        # Every process is started from this one thread, which lives until they all ended:
        # a recorder process is killed when the thread that started it ends (its
        # PR_SET_PDEATHSIG, which ends it with the node).
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="vstore-spawn")
        self._status_cache: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})

    def start(self) -> None:
        """Start every process (VstoreError when one cannot start)."""
        for p in self.procs:
            self._spawn(p)
        self._monitor = threading.Thread(target=self._watch, name="vstore-recorders", daemon=True)
        self._monitor.start()
        if self.deadline is not None:
            threading.Thread(
                target=self._push_deadlines, name="vstore-deadlines", daemon=True
            ).start()

    # --- placement -------------------------------------------------------------------------
    def place(self, config: StoreConfig, want: dict[str, CameraSettings]) -> dict[str, list[str]]:
        """Record exactly ``want``: cameras already recorded stay in their process, new ones
        go to the process with the fewest; returns the cameras started, restarted, stopped
        (for a process waiting to start again: what it will do when it starts)."""
        changes: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": []}
        with self._lock:
            self.config = config
            # A process that died (or was killed as hung) and is not buried yet still holds
            # its cameras' open segments: buried first, it seals them, and only then may a
            # camera it had go to another process (its seal would cut that one's off).
            for p in self.procs:
                self._bury_if_dead(p)
            where = {cam: p for p in self.procs for cam in p.cameras}
            plan = {p.number: {c: want[c] for c in p.cameras if c in want} for p in self.procs}
            for cam, settings in want.items():
                if cam not in where:
                    target = min(self.procs, key=lambda p: (not p.alive, len(plan[p.number])))
                    plan[target.number][cam] = settings
            for p in self.procs:
                got = self._give(p, plan[p.number])
                for kind, cams in got.items():
                    changes[kind].extend(cams)
        self._status_cache = (0.0, {})
        return changes

    def _lend(self, p: _Process, cameras: dict[str, CameraSettings]) -> None:
        """Lend ``p`` the cameras it is to record that it does not hold yet (M2); one an
        import writes now is left out, said aloud."""
        for cam in list(cameras):
            if cam not in p.lent:
                holder = next((q for q in self.procs if cam in q.lent), None)
                if holder is not None:  # (never two: its segments are the other's, M2)
                    log.error("camera %s not recorded now: recorder process %d still holds "
                              "it", cam, holder.number)  # fmt: skip
                    del cameras[cam]
                    continue
                try:
                    self.store.lend_camera(cam)
                except UsageError as exc:
                    log.error("camera %s not recorded now: %s", cam, exc)
                    del cameras[cam]
                    continue
                p.lent.add(cam)

    def _give(self, p: _Process, cameras: dict[str, CameraSettings]) -> dict[str, list[str]]:
        self._lend(p, cameras)
        before = p.cameras
        p.cameras = cameras
        if not p.alive:
            # It records them when it starts again; what it recorded of the others was
            # sealed when it died (M3): they are free.
            for cam in p.lent - set(cameras):
                self.store.return_camera(cam)
            p.lent &= set(cameras)
            return _changes(before, cameras)
        try:
            changes: dict[str, list[str]] = self._ask(
                p, "cameras", (self.config, cameras, self._deadlines(cameras)), ANSWER_TIMEOUT_S
            )
        except RecorderGone:
            # Killed (hung) or dead: what it left open is sealed now, its cameras not given
            # to it any more are free; it records the others when it starts again.
            proc = p.proc
            if proc is not None:
                try:
                    proc.wait(timeout=HUNG_AFTER_S)  # (killed: it ends at once)
                except subprocess.TimeoutExpired:
                    return _changes(before, cameras)  # (the monitor buries it once it ends)
                self._bury_if_dead(p)
            return _changes(before, cameras)
        for cam in changes.get("stopped", []):  # sealed: the camera is free again
            self.store.return_camera(cam)
            p.lent.discard(cam)
        return changes

    def _deadlines(
        self, cameras: dict[str, CameraSettings]
    ) -> tuple[float, dict[str, float]] | None:
        """The cameras' write deadlines as a recorder process takes them: (the lease's, the
        cameras whose differ), a few bytes however many cameras it records (M4)."""
        if self.deadline is None:
            return None
        each = {cam: self.deadline(cam) for cam in cameras}
        lease = max(each.values(), default=0.0)
        return lease, {cam: d for cam, d in each.items() if d != lease}

    # --- what they do ----------------------------------------------------------------------
    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every camera's recorder status (as ``CameraRun.status``), with its process; a
        process that does not answer within STATUS_TIMEOUT_S is said to."""
        with self._status_lock:
            at, cached = self._status_cache
            if time.monotonic() - at < STATUS_CACHE_S:
                return cached
            out: dict[str, dict[str, Any]] = {}
            for p in self.procs:
                got: dict[str, dict[str, Any]] = {}
                why = p.last_death or "its recorder process is starting"
                if p.alive and p.silent_s() > 2 * BEAT_EVERY_S:
                    why = f"its recorder process has not answered for {p.silent_s():.0f} s"
                elif p.alive:
                    try:
                        got = self._ask(p, "status", None, STATUS_TIMEOUT_S, kill=False,
                                        queue_s=STATUS_TIMEOUT_S)  # fmt: skip
                        p.last_status = got
                    except RecorderBusy as exc:
                        got, why = p.last_status, str(exc)  # (as it last said)
                    except RecorderGone as exc:
                        why = str(exc)
                pid = p.proc.pid if p.proc is not None else None
                for cam in list(p.cameras):
                    st = got.get(cam) or {
                        "recording": False,
                        "recorder_running": False,
                        "last_error": why,
                    }
                    out[cam] = {
                        **st,
                        "recorder_process": {
                            "number": p.number,
                            "pid": pid,
                            "cpu": self._pin_of(p),
                        },
                    }
            self._status_cache = (time.monotonic(), out)
            return out

    def status(self, camera: str) -> dict[str, Any]:
        return self.statuses().get(camera, {"recording": False})

    def recorded(self) -> list[str]:
        return sorted(cam for p in self.procs for cam in p.cameras)

    def recording(self) -> list[str]:
        return sorted(c for c, st in self.statuses().items() if st.get("recording"))

    def recorded_bytes(self) -> dict[str, int]:
        return {
            cam: int(st["writer"]["bytes"])
            for cam, st in self.statuses().items()
            if st.get("recording") and "bytes" in st.get("writer", {})
        }

    def _pin_of(self, p: _Process) -> int | None:
        """The CPU process ``p`` keeps to (None: wherever the scheduler puts it)."""
        return self.pins[p.number] if self.pins else None

    @property
    def processes(self) -> int:
        return len(self.procs)

    # --- the processes ---------------------------------------------------------------------
    def _spawn(self, p: _Process) -> None:
        self._spawner.submit(self._spawn_here, p).result()

    def _spawn_here(self, p: _Process) -> None:
        pairs = [socket.socketpair() for _ in range(3)]  # link, control, deadlines and beats
        fds = [there.fileno() for _here, there in pairs]
        # (the level the node logs its own cameras' events at)
        level = logging.getLogger("vstore").getEffectiveLevel()
        try:
            cpu = str(self.pins[p.number]) if self.pins else "-"
            proc = subprocess.Popen(
                [sys.executable, "-m", "vstore.service.recorder_process", str(self.store.root),
                 *map(str, fds), str(p.number), str(level), str(os.getpid()), cpu],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            for pair in pairs:
                for sock in pair:
                    sock.close()
            raise VstoreError(f"recorder process {p.number} could not start: {exc}") from exc
        for _here, there in pairs:
            there.close()
        (link_here, _), (control_here, _), (beats_here, _) = pairs
        control = Connection(control_here.detach())
        beats = Connection(beats_here.detach())
        link = serve_link(self.store, Connection(link_here.detach()), f"recorder-{p.number}")
        try:
            # (the first words, before anyone else may talk to it)
            control.send((self.config, self.store.uuid))
            if not control.poll(START_TIMEOUT_S):
                raise VstoreError(f"no answer in {START_TIMEOUT_S:.0f} s")
            _status, pid = control.recv()
        except (VstoreError, EOFError, OSError) as exc:
            proc.kill()
            code = proc.wait()
            control.close()
            beats.close()
            link.join(timeout=ANSWER_TIMEOUT_S)
            why = f"recorder process {p.number} did not start (exit {code}; its error is above)"
            p.last_death = why
            raise VstoreError(f"{why}: {exc}") from exc
        p.proc, p.control, p.link, p.beats = proc, control, link, beats
        p.started_mono = p.last_beat_mono = time.monotonic()
        threading.Thread(target=self._hear, args=(p, beats), daemon=True,
                         name=f"vstore-beats-{p.number}").start()  # fmt: skip
        log.info("recorder process %d started (pid %d)", p.number, pid)
        if p.cameras:
            self._lend(p, p.cameras)  # (held since it died; any an import took meanwhile)
            self._ask(p, "cameras", (self.config, p.cameras, self._deadlines(p.cameras)),
                      ANSWER_TIMEOUT_S)  # fmt: skip

    def _hear(self, p: _Process, beats: Connection) -> None:
        while True:
            try:
                beats.recv()
            except (EOFError, OSError):
                return
            p.last_beat_mono = time.monotonic()

    def _ask(
        self,
        p: _Process,
        op: str,
        arg: Any,
        timeout_s: float,
        kill: bool = True,
        queue_s: float | None = None,
    ) -> Any:
        """Its answer to one message; RecorderGone when it is gone, or when it does not
        answer in ``timeout_s`` (then killed, unless not ``kill``) or stops beating
        (killed: hung). ``queue_s``: how long to wait behind another message (RecorderBusy
        past it); None: as long as that takes. Messages are numbered: an answer that came
        after its asker gave up is skipped by the next."""
        if not p.lock.acquire(timeout=-1 if queue_s is None else queue_s):
            raise RecorderBusy(f"recorder process {p.number} is busy applying a change")
        try:
            conn = p.control
            if conn is None:
                raise RecorderGone(f"recorder process {p.number} is not running")
            p.asked += 1
            number = p.asked
            try:
                conn.send((number, op, arg))
                deadline = time.monotonic() + timeout_s
                while True:
                    while not conn.poll(min(BEAT_EVERY_S, timeout_s)):
                        if p.silent_s() > HUNG_AFTER_S:
                            self._kill(p, f"has not answered for {p.silent_s():.0f} s")
                            raise RecorderGone(f"recorder process {p.number} hung: killed")
                        if time.monotonic() > deadline:
                            if kill:
                                self._kill(p, f"did not answer {op!r} in {timeout_s:.0f} s")
                            raise RecorderGone(
                                f"recorder process {p.number} did not answer in {timeout_s:g} s"
                            )
                    answered, status, value = conn.recv()
                    if answered == number:
                        break
            except (EOFError, OSError) as exc:
                raise RecorderGone(f"recorder process {p.number} is gone: {exc}") from exc
        finally:
            p.lock.release()
        if status != "ok":
            raise VstoreError(f"recorder process {p.number}: {value}")
        return value

    def _kill(self, p: _Process, why: str) -> None:
        proc = p.proc
        if proc is not None and proc.poll() is None:
            log.error("recorder process %d %s: killing it", p.number, why)
            proc.kill()

    def _watch(self) -> None:
        while not self._no_restarts.wait(MONITOR_EVERY_S):
            for p in self.procs:
                if self._no_restarts.is_set():
                    return
                try:
                    self._tend(p)
                except VstoreError as exc:
                    log.error("%s", exc)

    def _tend(self, p: _Process) -> None:
        proc = p.proc
        if proc is not None and proc.poll() is None:
            if p.silent_s() > HUNG_AFTER_S:
                self._kill(p, f"has not answered for {p.silent_s():.0f} s (hung or stopped)")
            return
        with self._lock:
            if self._no_restarts.is_set():
                return
            self._bury_if_dead(p)
            if p.proc is None and time.monotonic() >= p.next_start_mono:
                p.next_start_mono = time.monotonic() + p.backoff_s
                p.backoff_s = min(p.backoff_s * 2, RESTART_MAX_S)
                self._spawn(p)

    def _push_deadlines(self) -> None:
        """The member's lease deadlines to every process, every MONITOR_EVERY_S, on their
        own connections: nothing the node waits for delays them (M4)."""
        while not self._stopped.wait(MONITOR_EVERY_S):
            for p in self.procs:
                conn, cameras = p.beats, p.cameras
                if conn is None or not cameras:
                    continue
                try:
                    conn.send(self._deadlines(cameras))
                except (OSError, ValueError):
                    pass  # it died: the monitor sees it

    def _bury_if_dead(self, p: _Process) -> None:
        """Bury ``p`` if its process has ended (under ``_lock``)."""
        proc = p.proc
        if proc is not None and proc.poll() is not None:
            self._bury(p, f"recorder process {p.number} died (exit {proc.returncode})")

    def _bury(self, p: _Process, why: str | None = None) -> None:
        """After a process ended (``why``, unless it was asked to): wait for its index calls
        under way and seal what it left open (M3). Its cameras stay lent to it for its next
        start, unless the node is stopping."""
        if why is not None:
            log.error("%s; sealing its open segments, then starting it again", why)
            p.last_death = why
        proc, p.proc = p.proc, None
        for conn in (p.control, p.beats):
            if conn is not None:
                conn.close()
        p.control = p.beats = None
        if p.link is not None:
            p.link.join(timeout=ANSWER_TIMEOUT_S)
            p.link = None
        if proc is not None:
            proc.wait()
        if time.monotonic() - p.started_mono >= STEADY_S:
            p.backoff_s = 1.0
            p.next_start_mono = 0.0
        self._recover(p.lent)  # (nothing is open after a clean stop)
        keep = set(p.cameras) if not self._no_restarts.is_set() else set()
        for cam in p.lent - keep:
            self.store.return_camera(cam)
        p.lent &= keep
        self._status_cache = (0.0, {})

    def _recover(self, cameras: set[str]) -> None:
        if not cameras:
            return
        open_ids = {
            seg_id
            for seg_id, marker in self.store.index.open_segments()
            if marker.get("camera") in cameras
        }
        if not open_ids:
            return
        for msg in recover(self.store, only_segments=open_ids).messages:
            log.warning("recovery: %s", msg)
        log.info("sealed %d segment(s) left open by a recorder process", len(open_ids))

    def stopping(self) -> None:
        """The node is stopping: no process is started again from now on."""
        self._no_restarts.set()

    def stop(self) -> None:
        """Every process stops its cameras (each seals what it was given) and ends; what a
        process that could not stop cleanly left open is sealed here."""
        self._no_restarts.set()
        if self._monitor is not None:
            self._monitor.join()
        with self._lock:
            alive = [p for p in self.procs if p.proc is not None]

            def stop_one(p: _Process) -> None:
                if p.cameras:
                    log.info("recorder process %d: sealing %d camera(s)", p.number,
                             len(p.cameras))  # fmt: skip
                try:
                    self._ask(p, "stop", None, ANSWER_TIMEOUT_S)
                except VstoreError as exc:
                    log.error("recorder process %d did not stop cleanly: %s", p.number, exc)

            # All at once: each seals its cameras while the others do theirs.
            stoppers = [threading.Thread(target=stop_one, args=(p,)) for p in alive]
            for t in stoppers:
                t.start()
            for t in stoppers:
                t.join()
            for p in alive:
                proc = p.proc
                if proc is not None:
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                self._bury(p)
        self._stopped.set()
        self._spawner.shutdown()


def _changes(
    before: dict[str, CameraSettings], after: dict[str, CameraSettings]
) -> dict[str, list[str]]:
    """What giving ``after`` in place of ``before`` starts, restarts and stops."""
    return {
        "started": [c for c in after if c not in before],
        "restarted": [
            c
            for c, s in after.items()
            if c in before and recording_settings(before[c]) != recording_settings(s)
        ],
        "stopped": [c for c in before if c not in after],
    }
