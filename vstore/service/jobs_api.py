"""The job routes (``/api/v1/jobs``): submit, list, read and cancel jobs. Served by the node's
HTTP API and, for a process that only records (`vstore record`, an embedding recorder), on
the store's Unix socket alone (``job_server``).

Who may run what: a hold (``hold``) needs the custodian role and the camera in scope; every
other job acts on the whole store and needs the operator role and a scope of every camera.
A principal reads and cancels its own jobs; one that sees every camera reads all of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound, UsageError
from vstore.service.access import Principal, hold_in_scope
from vstore.service.http_common import (
    API,
    PRINCIPAL,
    ApiError,
    Param,
    Route,
    audit,
    json_body,
    json_response,
)
from vstore.service.job_runner import Job, JobRunner
from vstore.service.request_bodies import job_body
from vstore.store.audit_log import cameras_of


class JobsApi:
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    def _authorize(self, p: Principal, name: str, params: dict[str, Any]) -> None:
        config = self.runner.store.config
        if name == "hold":
            if not p.may("hold"):
                raise ApiError(403, "forbidden", "holds need the custodian role")
            if params.get("action") not in ("add", "release", "sync"):
                raise UsageError(
                    f"unknown hold action {params.get('action')!r} (add, release or sync)"
                )
            camera = params.get("camera")
            if params.get("action") == "release":
                hold = hold_in_scope(self.runner.store, p, params.get("id"))
                camera = hold.camera
                params["id"] = hold.id  # (the hold authorized: a name could match more)
            elif params.get("action") == "sync":
                camera = None
            if camera is not None and not p.sees(str(camera), config):
                raise NotFound(f"no camera {camera!r}")
            if camera is None and not p.sees_all():
                raise ApiError(403, "forbidden", "this job acts on every camera")
            return
        if not p.may("operate"):
            raise ApiError(403, "forbidden", f"the {name} job needs the operator role")
        if not p.sees_all():
            raise ApiError(
                403, "forbidden", f"the {name} job acts on the whole store: use a * token"
            )

    def _visible(self, p: Principal, job: Job) -> bool:
        return p.sees_all() or (bool(job.owner) and job.owner == p.key)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        doc = await json_body(request, job_body())
        name, params = doc["job"], doc.get("params", {})
        if name in ("hold", "export", "key-rotate"):
            # Who placed a hold, made an export or rotated a key is the principal, never what a client
            # writes; only the local socket (the CLI, which passes --by) names someone.
            given = params.get("by") if p.via == "local:socket" else None
            params = {**params, "by": given or p.name}
        try:
            self._authorize(p, name, params)
        except NotFound:  # a camera or hold out of scope: the same answer, and recorded
            detail = {"job": name, "camera": params.get("camera"), "hold": params.get("id")}
            await asyncio.to_thread(audit, self.runner.store, request, "access_denied", detail)
            raise
        actor = doc.get("actor") if p.via == "local:socket" else None
        job = self.runner.submit(
            name, params, p.name, actor or p.as_actor(request.remote or ""), p.key
        )
        # Who started what, on which cameras: an import writes footage, a tiering run moves
        # it; the job's own records (holds, deletions, moves) follow as it works.
        cams = params.get("cameras") or ([params["camera"]] if params.get("camera") else [])
        detail = {"job": name, "id": job.id, "params": params, "cameras": list(cams)}
        await asyncio.to_thread(audit, self.runner.store, request, "job_submit", detail)
        return json_response(_shown(p, job), 202)

    async def list_jobs(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        jobs = [_shown(p, j) for j in self.runner.list() if self._visible(p, j)]
        return json_response({"jobs": jobs})

    def _job(self, request: web.Request) -> Job:
        job = self.runner.get(request.match_info["job"])
        if not self._visible(request[PRINCIPAL], job):
            raise NotFound(f"no job {job.id!r}")
        return job

    async def get(self, request: web.Request) -> web.StreamResponse:
        return json_response(_shown(request[PRINCIPAL], self._job(request)))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        self.runner.cancel(job.id)
        # (with the job's cameras and owner: a custodian reading a camera's records sees
        # that someone stopped work on it)
        # (an export's items are its clips)
        asked = {"detail": {**job.params, "clips": job.params.get("items")}}
        detail = {"job": job.name, "id": job.id, "job_by": job.by,
                  "cameras": sorted(cameras_of(asked))}  # fmt: skip
        await asyncio.to_thread(audit, self.runner.store, request, "job_cancel", detail)
        return json_response(_shown(request[PRINCIPAL], job), 202)


def _shown(p: Principal, job: Job) -> dict[str, Any]:
    """A job as the principal sees it: the node's file paths only to its operators."""
    return job.doc(server_paths=p.may("operate"))


def job_routes(api: JobsApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(JobsApi, name)

    job = (Param("job", "path", "job id"),)
    return [
        Route("GET", f"{API}/jobs", h("list_jobs"), "Jobs (one's own; every job with a * scope)",
              "view"),
        Route("POST", f"{API}/jobs", h("submit"),
              "Run a job: {job: hold|retention|tier|import|check|rebuild-index, params: {...}} "
              "(holds need custodian, the others operator with a * scope)", "view",
              body=job_body(), ok=(202,)),
        Route("GET", f"{API}/jobs/{{job}}", h("get"), "A job's state, progress and result", "view",
              job),
        Route("DELETE", f"{API}/jobs/{{job}}", h("cancel"),
              "Cancel a job (it stops at its next safe point)", "view", job, ok=(202,)),
    ]  # fmt: skip
