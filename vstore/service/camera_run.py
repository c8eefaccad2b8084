"""One camera recording: its recorder, the thread it runs on, and what it reports of itself.
A node runs one per camera it records, in its own process or in a recorder process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vstore.base.errors import StorageFull, VstoreError
from vstore.base.jsonio import to_jsonable
from vstore.base.redaction import redact_secrets, redact_url
from vstore.base.timebase import format_time
from vstore.ingest.recorder import Recorder
from vstore.store.config import CameraSettings
from vstore.store.store import Store
from vstore.store.store_link import seal_abandoned

log = logging.getLogger(__name__)

# A camera whose writer failed on a full disk tries again after this, doubling up to the max.
DISK_FULL_RETRY_S = 5.0
DISK_FULL_RETRY_MAX_S = 60.0


def recording_settings(s: CameraSettings) -> CameraSettings:
    """What a camera's recorder works by: its settings but those that only describe it
    (a new name needs no restart; a new url or segment duration does)."""
    return s._replace(name=None, location=None, timezone=None)


class CameraRun:
    """One camera's recorder and the thread it runs on."""

    def __init__(
        self,
        store: Store,
        camera_id: str,
        settings: CameraSettings,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        assert settings.url is not None
        url = self.url = settings.url
        self.settings = recording_settings(settings)
        self.stop = threading.Event()
        self._new_recorder = lambda reason="restart": Recorder(
            store, camera_id, url, stop=self.stop, gate=gate, run_reason=reason
        )
        self.recorder = self._new_recorder()
        self._left_open: list[int] = []  # segments failed writers left open (W5)
        self.started_ns = time.time_ns()
        self.thread = threading.Thread(target=self._run, name=f"vstore-src-{camera_id}")
        self.thread.start()

    def _run(self) -> None:
        wait_s = DISK_FULL_RETRY_S
        while True:
            began = time.monotonic()
            try:
                self.recorder.run()
                return
            except StorageFull as exc:
                # The disk filled (ENOSPC) under a writer with no watermark to keep it
                # from it: its writer failed (W5), what it acknowledged is kept. Recording
                # starts again, in a new segment, once writing succeeds again.
                self._collect_left_open()
                if self.stop.is_set():
                    return
                if time.monotonic() - began > DISK_FULL_RETRY_MAX_S:
                    wait_s = DISK_FULL_RETRY_S  # (it recorded since: a new episode)
                self.recorder.status.note_error(f"{exc}; trying again in {wait_s:.0f} s")
                log.error("camera %s: the disk is full (%s): recording stopped; trying "
                          "again in %.0f s", self.recorder.camera_id, exc, wait_s)  # fmt: skip
                if self.stop.wait(wait_s):
                    return
                wait_s = min(wait_s * 2, DISK_FULL_RETRY_MAX_S)
                # What the failures left open is sealed first (R2), in the order it was
                # recorded: open, it would wait for the node's next start, and no retention
                # deletes an open segment (H2). A seal needs far less room than recording:
                # while the disk is too full for it, it is too full to record.
                while not self._seal_left_open():
                    if self.stop.wait(wait_s):
                        return
                    wait_s = min(wait_s * 2, DISK_FULL_RETRY_MAX_S)
                status = self.recorder.status
                self.recorder = self._new_recorder("disk_full")  # (its gap's reason)
                self.recorder.status.note_error(status.last_error, status.last_error_at_ns)
            except Exception as exc:  # noqa: BLE001 - kept as the camera's status
                self.recorder.status.note_error(str(exc))
                log.error("camera %s: recording stopped: %s", self.recorder.camera_id, exc)
                self._collect_left_open()
                self._seal_left_open()  # (what it can now; else the next start's recovery)
                return

    def _collect_left_open(self) -> None:
        """Note the segments the failed recorder's writer left open (W5)."""
        w = self.recorder.writer
        if w is not None:
            self._left_open += w.abandoned_segments

    def _seal_left_open(self) -> bool:
        """Seal the segments the failed writers left open (R2). False while the disk is
        still too full for it; any other failure is logged and leaves them to the next
        start's recovery (the camera records meanwhile)."""
        cam = self.recorder.camera_id
        try:
            for msg in seal_abandoned(self.recorder.store, self._left_open):
                log.warning("camera %s: recovery: %s", cam, msg)
        except StorageFull as exc:
            self.recorder.status.note_error(f"{exc}; trying again")
            return False
        except VstoreError as exc:
            log.error("camera %s: the segment(s) a full disk left open are left to the next "
                      "start's recovery: %s", cam, exc)  # fmt: skip
        self._left_open = []
        return True

    @property
    def recording(self) -> bool:
        """Its recorder runs, its source is connected now (not connecting or waiting to
        retry), and its footage is kept (not paused for space, S4)."""
        w = self.recorder.writer
        paused = w is not None and w.paused_for_space is not None
        return self.thread.is_alive() and self.recorder.status.connected and not paused

    def recorded_bytes(self) -> int | None:
        """Footage bytes its writer has stored, while it records (None otherwise)."""
        w = self.recorder.writer
        return w.stats.bytes if w is not None and self.recording else None

    def status(self) -> dict[str, Any]:
        """What the recorder is doing: recording or not, its source, connects and
        reconnects, drops, the end of its durable footage, its last error."""
        r = self.recorder
        w = r.writer
        status = to_jsonable(r.status)
        status.pop("camera", None)
        paused = w.paused_for_space if w is not None else None
        if paused is not None:
            status["last_error"] = f"recording paused: {paused}"
            status["last_error_at_ns"] = time.time_ns()  # (now: it lasts)
        # (a source's error may quote its URL, password and all: viewers read this)
        status["last_error"] = redact_secrets(status["last_error"], self.url)
        durable_end_ns = w.durable_end_ns if w is not None else None
        return {
            **status,
            # A recorder still trying to connect (or waiting to retry) is running but not
            # recording, and says why in last_error.
            "recording": self.recording,
            "recorder_running": self.thread.is_alive(),
            "url": redact_url(self.url),
            "since_ns": self.started_ns,
            "durable_end_ns": durable_end_ns,
            # (the same instants for people)
            "since": format_time(self.started_ns),
            "durable_end": format_time(durable_end_ns) if durable_end_ns is not None else None,
            "last_error_at": (
                format_time(status["last_error_at_ns"]) if status["last_error_at_ns"] else None
            ),
            "writer": w.stats.as_dict() if w is not None else status.get("writer", {}),
        }

    def halt(self) -> None:
        self.stop.set()

    def join(self) -> None:
        self.thread.join()


def reconcile_runs(
    runs: dict[str, CameraRun],
    want: dict[str, CameraSettings],
    start: Callable[[str, CameraSettings], CameraRun],
) -> dict[str, list[str]]:
    """Make ``runs`` record exactly ``want``: a camera whose recording settings changed is
    stopped (its writer seals) before its new run starts, one no longer wanted stops, a new
    one starts (``start``); the others are not touched. Returns the cameras started,
    restarted and stopped."""
    changes: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": []}
    halted = []
    for cam, run in list(runs.items()):
        s = want.get(cam)
        if s is None or recording_settings(s) != run.settings:
            run.halt()
            halted.append(run)
            del runs[cam]
            changes["restarted" if cam in want else "stopped"].append(cam)
    for run in halted:
        run.join()  # sealed before the camera's new run opens its writer, or another takes it
    for cam, s in want.items():
        if cam not in runs:
            runs[cam] = start(cam, s)
            if cam not in changes["restarted"]:
                changes["started"].append(cam)
    return changes


class LocalRecorders:
    """The node's cameras recorded in its own process (``[service] recorders = 1``): the
    same face as ``recorder_pool.RecorderPool``, which records them in recorder processes."""

    processes = 0  # (recorder processes: none)

    def __init__(self, store: Store, gate: Callable[[str], Callable[[], bool] | None]) -> None:
        self.store = store
        self._gate = gate  # camera -> what its recorder asks before each write (None: alone)
        self._runs: dict[str, CameraRun] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def place(self, config: Any, want: dict[str, CameraSettings]) -> dict[str, list[str]]:
        """Record exactly ``want`` (see ``reconcile_runs``)."""
        with self._lock:
            return reconcile_runs(
                self._runs, want, lambda cam, s: CameraRun(self.store, cam, s, self._gate(cam))
            )

    def status(self, camera: str) -> dict[str, Any]:
        with self._lock:
            run = self._runs.get(camera)
        return run.status() if run is not None else {"recording": False}

    def statuses(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            runs = list(self._runs.items())
        return {cam: run.status() for cam, run in runs}

    def recorded(self) -> list[str]:
        with self._lock:
            return sorted(self._runs)

    def recording(self) -> list[str]:
        with self._lock:
            return sorted(c for c, r in self._runs.items() if r.recording)

    def recorded_bytes(self) -> dict[str, int]:
        with self._lock:
            runs = list(self._runs.items())
        return {c: n for c, r in runs if (n := r.recorded_bytes()) is not None}

    def stopping(self) -> None:
        pass

    def stop(self) -> None:
        """Every camera stops, each writer sealing, all at once."""
        self.place(None, {})
