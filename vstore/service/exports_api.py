"""Evidence packages over HTTP (``/api/v1/exports``): an investigator asks for a signed
package of cameras and ranges in its scope; the node builds it as an ``export`` job (the
package `vstore export` writes) under ``STORE/exports/``, and the one who asked (or a
principal that sees every camera) downloads the ZIP. A purpose is always required: a
package is evidence. Every request and download is audited."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound, UsageError, VstoreError
from vstore.base.fsutil import Fs, translate_oserror, write_durably
from vstore.base.layout import staging_path
from vstore.base.timebase import NS_PER_S, format_time, parse_time_ns
from vstore.export.clip_plan import plan_clip
from vstore.service.access import Principal
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
from vstore.service.job_runner import JobRunner
from vstore.service.limits import TooMany
from vstore.service.request_bodies import EXPORT
from vstore.store.store import Store

_ID = re.compile(r"^[0-9a-f]{16}$")
log = logging.getLogger(__name__)

CameraCheck = Callable[[web.Request, str], Awaitable[str]]
Runner = Callable[..., Awaitable[Any]]


class ExportsApi:
    def __init__(self, runner: JobRunner, camera: CameraCheck, run: Runner) -> None:
        self.runner = runner
        self.store = runner.store
        self._camera = camera  # the scope check: out of scope is "no camera", audited
        self._run = run  # off the event loop

    async def create(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        doc = await json_body(request, EXPORT)
        case, purpose = doc["case"].strip(), doc["purpose"].strip()
        if not case or not purpose:
            raise UsageError('give "case" and "purpose": a package is evidence')
        max_ns = int(self.store.config.service.max_clip_s * NS_PER_S)
        items = []
        for it in doc["items"]:
            cam = await self._camera(request, it["camera"])
            start, end = parse_time_ns(it["from"]), parse_time_ns(it["to"])
            if end <= start:
                raise UsageError(f"camera {cam}: to must be after from")
            if end - start > max_ns:
                raise UsageError(
                    f"a range is at most {max_ns / NS_PER_S:g} s ([service] max_clip_s)"
                )
            items.append({"camera": cam, "from_ns": start, "to_ns": end})
        # Packages being built count against the principal's concurrent exports as
        # downloads do: each copies footage to the node's disk.
        building = sum(
            1
            for j in self.runner.list()
            if j.name == "export" and j.owner == p.key and not j.finished.is_set()
        )
        limit = self.store.config.service.max_exports
        if building >= limit:
            raise TooMany(f"{limit} packages already being built for {p.name}; wait for one", 5.0)
        export_id = secrets.token_hex(8)
        layout = self.store.layout
        record = {"id": export_id, "by": p.name, "owner": p.key,
                  "cameras": sorted({i["camera"] for i in items}), "case": case,
                  "purpose": purpose}  # fmt: skip

        def start_job() -> Any:
            try:  # a range with no footage is refused now, not left as a job that failed
                for i in items:
                    plan_clip(self.store, i["camera"], i["from_ns"], i["to_ns"])
            except VstoreError as exc:
                audit(self.store, request, "export_failed", {**record, "error": str(exc)[:500]})
                raise
            _keep_record(self.store, export_id, record)
            params = {"items": items, "out": str(layout.export_path(export_id).absolute()), "case": case,
                      "purpose": purpose, "by": p.name}  # fmt: skip
            job = self.runner.submit(
                "export", params, p.name, p.as_actor(request.remote or ""), p.key
            )
            record["job"] = job.id
            _keep_record(self.store, export_id, record)
            return job

        job = await self._run(start_job)
        if job.finished.is_set() and job.state != "done":  # refused at once (no footage...)
            raise _failure(export_id, job)
        return json_response(
            {"id": export_id, "job": _public(job), "download": f"{API}/exports/{export_id}.zip"},
            202,
        )

    def _record(self, p: Principal, export_id: str) -> dict[str, Any]:
        """The export's record if this principal may have it; else NotFound, as for none."""
        if not _ID.match(export_id):
            raise NotFound(f"no export {export_id!r}")
        try:
            rec = json.loads(self.store.layout.export_record_path(export_id).read_bytes())
        except (OSError, ValueError):
            raise NotFound(f"no export {export_id!r}") from None
        config = self.store.config
        # (by the principal's key: a name is free text, another token may carry it)
        mine = p.sees_all() or (bool(rec.get("owner")) and rec.get("owner") == p.key)
        if not mine or not all(p.sees(c, config) for c in rec.get("cameras", [])):
            raise NotFound(f"no export {export_id!r}")
        return rec

    async def download(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        export_id = request.match_info["export"]
        try:
            rec = await self._run(self._record, p, export_id)
        except NotFound:
            # None, or another's: the same answer, and a record of the asking.
            await self._run(audit, self.store, request, "access_denied",
                            {"export": export_id[:64]})  # fmt: skip
            raise
        job_id = rec.get("job")
        try:
            job = self.runner.get(job_id) if job_id else None
        except NotFound:
            job = None  # (from before a restart: the file says whether it finished)
        if job is not None and not job.finished.is_set():
            raise ApiError(409, "not_ready", f"export {export_id} is still being built "
                           f"(job {job.id}: {job.doc()['state']})")  # fmt: skip
        if job is not None and job.state != "done":
            raise _failure(export_id, job)
        path = self.store.layout.export_path(export_id)
        if rec.get("expired"):
            keep = self.store.config.service.keep_exports_s
            raise ApiError(410, "expired", f"export {export_id}'s package was removed "
                           f"{rec['expired']}, {keep / 86400:g} day(s) after it was built "
                           "([service] keep_exports_s): ask for it again")  # fmt: skip
        if not path.is_file():
            raise NotFound(f"export {export_id} has no package (it failed or was removed)")
        await self._run(audit, self.store, request, "export_download",
                        {"export": export_id, "case": rec.get("case"),
                         "cameras": rec.get("cameras")})  # fmt: skip
        resp = web.FileResponse(path)
        resp.headers["Content-Disposition"] = f'attachment; filename="evidence-{export_id}.zip"'
        resp.headers["Cache-Control"] = "private, no-store"
        return resp


def _keep_record(store: Store, export_id: str, record: dict[str, Any]) -> None:
    """Write an export's record (who asked, for which cameras; its job; its expiry)."""
    path = store.layout.export_record_path(export_id)
    try:
        Fs().makedirs(store.layout.exports_dir)
        write_durably(Fs(), path, staging_path(path), json.dumps(record).encode(), 0o600)
    except OSError as exc:  # (a full disk is StorageFull: 507)
        raise translate_oserror(exc, f"writing {path}") from exc


def expire_packages(store: Store, now_ns: int) -> int:
    """Remove the packages built over the API more than ``[service] keep_exports_s`` ago
    (each audited, its record kept and marked, so its asker is told it expired). Returns how
    many went."""
    keep_ns = int(store.config.service.keep_exports_s * NS_PER_S)
    layout, gone = store.layout, 0
    for path in sorted(layout.exports_dir.glob("*.zip")) if layout.exports_dir.is_dir() else []:
        export_id = path.stem
        try:
            built_ns = path.stat().st_mtime_ns
            rec_path = layout.export_record_path(export_id)
            rec = json.loads(rec_path.read_bytes()) if rec_path.exists() else {"id": export_id}
        except (OSError, ValueError):
            continue
        if now_ns - built_ns < keep_ns:
            continue
        rec["expired"] = format_time(now_ns)
        _keep_record(store, export_id, rec)
        path.unlink(missing_ok=True)
        store.index.audit(
            "export_expired",
            "schedule",
            {"export": export_id, "case": rec.get("case"), "cameras": rec.get("cameras"),
             "built": format_time(built_ns)},
            now_ns,
        )  # fmt: skip
        gone += 1
    return gone


def _public(job: Any) -> dict[str, Any]:
    """The export job as a client sees it: without the package's path on the node."""
    return job.doc(server_paths=False)


def _failure(export_id: str, job: Any) -> ApiError:
    """A failed export as the one who asked it sees it: what was wrong with the request (no
    footage there, a bad range) as it is; a fault of the node (its keys, its disk) without
    the node's paths, which its log has."""
    err = job.error or {}
    if err.get("class") in ("NotFound", "UsageError"):
        status = 404 if err["class"] == "NotFound" else 400
        return ApiError(status, "export_failed", f"export {export_id}: {err.get('message')}")
    log.error("export %s (job %s) failed: %s", export_id, job.id, err.get("message"))
    return ApiError(500, "export_failed", f"export {export_id} failed on the node (job "
                    f"{job.id}); its operator finds why in the node's log")  # fmt: skip


def export_routes(api: ExportsApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(ExportsApi, name)

    return [
        Route("POST", f"{API}/exports", h("create"),
              "Build a signed evidence package: {items: [{camera, from, to}], case, purpose}; "
              "202 with the job and the download URL", "export", body=EXPORT, ok=(202,)),
        Route("GET", f"{API}/exports/{{export}}.zip", h("download"),
              "The package (ZIP) once its job is done; 409 while it is built", "export",
              (Param("export", "path", "export id"),)),
    ]  # fmt: skip
