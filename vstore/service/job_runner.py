"""Jobs a node runs for its clients (the HTTP API, the CLI through the store's socket): each
registered job (``vstore.jobs.registry``) on its own thread, with progress, cancel and a final
result equal to what the command prints with ``--json``.

Cancel takes effect at the job's next safe point: its next progress report, which every job
makes between units of work it has finished (a segment deleted or tiered, a GOP imported,
a segment checked). A cancelled import is an unfinished one (lifecycle F1-F4): run again, it
replaces what it wrote. Jobs are not persisted: a node that stops mid-job does not run it
again when it comes back (a hold placed twice is not for a daemon to guess); the client
is told the outcome is unknown.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from typing import Any

from vstore.base.actor import acting_as
from vstore.base.errors import Cancelled, NotFound, VstoreError
from vstore.base.timebase import format_time
from vstore.jobs import registry
from vstore.store.store import Store

log = logging.getLogger(__name__)

KEEP_FINISHED = 200  # finished jobs kept for their clients to read


JobCancelled = Cancelled  # the job was cancelled; it stopped at a safe point


class Job:
    """One job: its request, state, progress and outcome."""

    def __init__(
        self,
        job_id: str,
        name: str,
        params: dict[str, Any],
        by: str,
        actor: Any,
        owner: str = "",
    ) -> None:
        self.id, self.name, self.params, self.by, self.actor = job_id, name, params, by, actor
        self.owner = owner  # the principal's key (Principal.key): whose job it is
        self.state = "queued"  # queued | running | done | failed | cancelled
        self.progress: tuple[float, float] | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.created_ns = time.time_ns()
        self.started_ns: int | None = None
        self.finished_ns: int | None = None
        self.cancel_requested = threading.Event()
        self.finished = threading.Event()

    def doc(self, server_paths: bool = True) -> dict[str, Any]:
        """The job as JSON; without ``server_paths``, none of the node's file paths (an
        export's package, an import's file) for a client that is no operator of the node."""
        done, total = self.progress if self.progress is not None else (None, None)
        params, result = self.params, self.result
        if not server_paths:
            params = {k: v for k, v in params.items() if k not in _PATH_PARAMS}
            if isinstance(result, dict):
                result = {k: v for k, v in result.items() if k != "path"}
        return {
            "id": self.id,
            "job": self.name,
            "params": params,
            "by": self.by,
            "state": self.state,
            "progress": {"done": done, "total": total},
            "result": result,
            "error": self.error,
            "created": format_time(self.created_ns),
            "created_ns": self.created_ns,
            "started": format_time(self.started_ns) if self.started_ns else None,
            "started_ns": self.started_ns,
            "finished": format_time(self.finished_ns) if self.finished_ns else None,
            "finished_ns": self.finished_ns,
        }


# Who submits jobs that nobody waits on for their outcome (a client's job, by a principal's
# name, reports to that client).
UNATTENDED = frozenset({"schedule", "drain"})

# Job parameters that name a file on the node (export, import, rebuild-index).
_PATH_PARAMS = frozenset({"out", "file", "source"})


class JobRunner:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # Jobs are not kept across restarts (lifecycle J3): ids carry this run's own tag, so
        # an id from before a restart is "no job", never another job.
        self._run_tag = os.urandom(3).hex()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Jobs that failed, by job name (`/metrics`: vstore_jobs_failed).
        self.failed: collections.Counter[str] = collections.Counter()

    def submit(
        self, name: str, params: dict[str, Any], by: str, actor: Any = None, owner: str = ""
    ) -> Job:
        registry.check_params(name, params)  # refused before it is a job (400 over HTTP)
        with self._lock:
            if self._closed:
                raise VstoreError("the node is stopping: no new jobs")
            job_id = f"{time.strftime('%Y%m%d')}-{self._run_tag}-{next(self._ids)}"
            job = Job(job_id, name, params, by, actor, owner)
            self._jobs[job.id] = job
            self._forget_old()
            t = threading.Thread(target=self._run, args=(job,), name=f"vstore-job-{job.id}")
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()
        return job

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished.is_set()]
        for j in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[j.id]

    def _run(self, job: Job) -> None:
        def progress(done: float, total: float) -> None:
            job.progress = (done, total)
            if job.cancel_requested.is_set():
                raise JobCancelled(f"job {job.id} ({job.name}) cancelled")

        if job.cancel_requested.is_set():
            job.state = "cancelled"
            job.error = _error_doc(JobCancelled(f"job {job.id} cancelled before it started"))
            job.finished_ns = time.time_ns()
            job.finished.set()
            return
        job.state, job.started_ns = "running", time.time_ns()
        try:
            with acting_as(job.actor):
                job.result = registry.run(self.store, job.name, job.params, progress)
            job.state = "done"
        except JobCancelled as exc:
            job.state, job.error = "cancelled", _error_doc(exc)
        except VstoreError as exc:
            job.state, job.error = "failed", _error_doc(exc)
            # A job nobody waits on (a schedule's, a drain's) fails in the log, loudly: its
            # failure to tier leaves footage on this disk alone.
            (log.error if job.by in UNATTENDED else log.warning)(
                "job %s (%s, by %s) failed: %s", job.id, job.name, job.by, exc
            )
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.name)
            job.state, job.error = "failed", _error_doc(exc)
        finally:
            if job.state == "failed":
                with self._lock:
                    self.failed[job.name] += 1
            job.finished_ns = time.time_ns()
            job.finished.set()

    def failed_counts(self) -> dict[str, int]:
        """Jobs that failed, by job name."""
        with self._lock:
            return dict(self.failed)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel_requested.set()
        return job

    def close(self, timeout_s: float = 60.0) -> None:
        """Cancel every job and wait for each to reach its safe point."""
        with self._lock:
            self._closed = True
            jobs, threads = list(self._jobs.values()), list(self._threads)
        for j in jobs:
            j.cancel_requested.set()
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


def _error_doc(exc: BaseException) -> dict[str, Any]:
    """An error as a client rebuilds it: its class by name, its message, and for a failed
    tiering run the document of what it did."""
    doc: dict[str, Any] = {"class": type(exc).__name__, "message": str(exc)}
    partial = getattr(exc, "partial", None)
    if partial is not None:
        doc["partial"] = partial
    if not isinstance(exc, VstoreError):
        doc["class"] = "VstoreError"
        doc["message"] = f"internal error: {exc}"
    return doc
