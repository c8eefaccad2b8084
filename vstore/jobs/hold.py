"""The hold job: add, release or sync a legal hold (what `vstore hold` runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vstore.base import layout
from vstore.base.errors import NotFound, UsageError, VstoreError
from vstore.base.jsonio import to_jsonable
from vstore.base.timebase import format_time
from vstore.store import shared_holds
from vstore.store.holds import add_hold, hold_doc, release_hold, sync_object_holds
from vstore.store.store import Store


def hold_job(
    store: Store, params: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """``action`` add (camera, from_ns, to_ns, reason, by), release (id: its number here or
    its name NODE:N; by, reason, and the camera it is expected to be of, optional) or sync:
    the hold is recorded first (the index is the authority), then mirrored onto S3 object
    legal holds, which may fail on its own (reported in ``objects.errors``)."""
    action = params.get("action")
    hold = None
    warning = None
    share_error = ""
    shared: shared_holds.HoldSyncResult | None = None
    if action == "sync":
        shared = shared_holds.sync(store, params.get("by") or "hold-sync")
        objects = sync_object_holds(store)
    elif action == "add":
        num = _camera_to_hold(store, params["camera"])
        hold = add_hold(
            store,
            params["camera"],
            int(params["from_ns"]),
            int(params["to_ns"]),
            params["reason"],
            params["by"],
            mirror=False,
        )
        objects = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
        if num is None:
            warning = (
                f"camera {hold.camera!r} has no footage in this store: the hold is placed here "
                f"and shared with every store of the bucket {store.config.tier.url}, which keep "
                "what it covers (their next hold exchange, at most 30 s on a running node)"
            )
        elif next(iter(store.index.chunks(num, hold.from_ns, hold.to_ns)), None) is None:
            warning = (
                f"camera {hold.camera!r} has no footage in that range (yet) in this store: "
                "the hold is placed, but check the times and their offset (`vstore timeline`)"
            )
            if store.config.cluster.etcd:
                warning += (
                    "; another node of the cluster may have recorded it: the hold binds "
                    "every node (their next hold exchange, at most 30 s)"
                )
    elif action == "release":
        hold = release_hold(
            store,
            params.get("id"),
            params["by"],
            params.get("reason", ""),
            mirror=False,
            camera=params.get("camera"),
        )
        objects = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
    else:
        raise UsageError(f"unknown hold action {action!r}")
    if hold is not None:
        # Every store of the bucket honours it (its next sync); a failure here leaves it
        # binding on this store, and `vstore hold sync` shares it later.
        try:
            earlier = shared_holds.share(store, hold)
        except VstoreError as exc:
            share_error = f"not shared with the other stores of the bucket yet: {exc}"
        else:
            if earlier is not None:  # released through another node first: that stands
                hold = replace(hold, released_ns=earlier.released_ns,
                               released_by=earlier.released_by,
                               release_reason=earlier.release_reason)  # fmt: skip
                warning = (
                    f"the hold was released already, by {earlier.released_by} at "
                    f"{format_time(earlier.released_ns or 0)} through another node "
                    f"({earlier.release_reason or 'no reason given'!r}): that release stands "
                    "and is the one recorded here"
                )
    doc = {**(hold_doc(store, hold) if hold is not None else {}), "objects": to_jsonable(objects)}
    if share_error:
        doc["share_error"] = share_error
    if shared is not None:
        doc["shared"] = to_jsonable(shared)
    if warning:
        doc["warning"] = warning
    return doc


def _camera_to_hold(store: Store, camera: str) -> int | None:
    """The camera's number in this store; None for a camera this store has no footage of
    that the stores sharing its bucket may have (configured here, as every node of a cluster
    lists every camera, or found in the bucket's catalog): a hold is placed through any node.
    NotFound otherwise, naming the cameras there are."""
    try:
        return store.camera_num(camera)
    except NotFound:
        url = store.config.tier.url
        if not url:
            raise
        if camera in store.config.cameras:
            return None
        try:
            known = next(iter(store.tier(url).list_prefix(layout.catalog_camera_prefix(camera))),
                         None) is not None  # fmt: skip
        except VstoreError:
            known = False
        if not known:
            raise
        return None
