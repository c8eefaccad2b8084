"""Legal holds the whole city honours: every store writes its holds to the shared bucket
(``_holds/STORE/ID.json``) and brings every other store's into its own index, so that the
retention, space keeper and trims of every node keep what any node's hold covers, and each
node puts object legal holds on its own objects under them (H4). A hold placed on one node
is released on any: the release is written onto the hold's shared object (by a
conditional write) and every store, its own included, takes it from there.

A hold of another store is kept in this index as a hold of its own (its own local id),
naming where it came from (``origin``: STORE#ID); it only ever goes from active to released.
When the bucket cannot be read, the holds brought in before still bind."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vstore.base import layout
from vstore.base.errors import VstoreError
from vstore.base.jsonio import dumps_compact, to_jsonable
from vstore.index.time_index import Batch
from vstore.store.holds import (
    Hold,
    ObjectHoldResult,
    hold_origin,
    list_holds,
    placed_via,
    sync_object_holds,
)
from vstore.store.store import Store
from vstore.tier.base import BlobTier


@dataclass
class HoldSyncResult:
    """What one exchange with the bucket did (``vstore hold sync --json``)."""

    shared: int = 0  # this store's holds written to the bucket (new or changed)
    brought_in: int = 0  # other stores' holds now in this index
    released: int = 0  # holds released here because the bucket says so
    read: int = 0  # shared hold objects read (those unchanged since the last read are not)
    # The object legal holds of what the holds brought in or released cover, made to match.
    objects: ObjectHoldResult = field(default_factory=ObjectHoldResult)
    errors: list[str] = field(default_factory=list)


def _key(origin: str) -> str:
    store_uuid, _, hold_id = origin.partition("#")
    return layout.shared_hold_key(store_uuid, int(hold_id))


def _doc(store: Store, hold: Hold) -> dict[str, Any]:
    d = asdict(hold)
    d["origin"] = hold_origin(store, hold)
    d["placed_via"] = placed_via(store, hold)
    return d


def _shared_tier(store: Store) -> BlobTier | None:
    url = store.config.tier.url
    return store.tier(url) if url else None


def share(store: Store, hold: Hold) -> Hold | None:
    """Write a hold (placed or released here) to its shared object: created if new, a
    release written onto it (by a conditional write). A hold already released in the
    bucket stays released: that release stands, taken here as well, and is returned when
    it is not the one ``hold`` carries (two nodes released it at once)."""
    tier = _shared_tier(store)
    if tier is None:
        return None
    earlier: dict[str, Any] = {}

    def change(data: bytes | None) -> bytes | None:
        earlier.clear()
        if data is None:
            return dumps_compact(_doc(store, hold))
        body = json.loads(data)
        if body.get("released_ns") is not None:
            earlier.update(body)
            return None  # (released already: that release stands)
        if hold.released_ns is None:
            return None  # (nothing new to say)
        body.update(released_ns=hold.released_ns, released_by=hold.released_by,
                    release_reason=hold.release_reason)  # fmt: skip
        return dumps_compact(body)

    tier.update(_key(hold_origin(store, hold)), change)
    if not earlier or hold.released_ns is None:
        return None
    if (earlier.get("released_ns"), earlier.get("released_by")) == (
        hold.released_ns,
        hold.released_by,
    ):
        return None  # (our own release, written before)
    theirs = Hold(**{k: v for k, v in earlier.items() if k in Hold.__dataclass_fields__})
    _release_here(store, hold, theirs, "shared holds")
    return theirs


# (store uuid, tier url) -> shared hold object key -> (version tag, origin, active) as last
# read: what a sync need not read again.
_versions: dict[tuple[str, str], dict[str, tuple[str, str, bool]]] = {}


def sync(store: Store, by: str = "hold-sync") -> HoldSyncResult:
    """Exchange holds with the bucket ([tier] url): write this store's holds the bucket
    lacks (or whose release it lacks), bring in the holds other stores placed, and take
    releases written in the bucket, then make the object legal holds of the footage those
    holds cover match (put on for a hold brought in, lifted for a release, else the deleter
    could never purge released footage). Nothing when no [tier] url is set."""
    res = HoldSyncResult()
    tier = _shared_tier(store)
    if tier is None:
        return res
    mine = {hold_origin(store, h): h for h in list_holds(store, include_released=True)}
    try:
        objects = list(tier.list_prefix(layout.SHARED_HOLDS_PREFIX + "/"))
    except VstoreError as exc:
        res.errors.append(f"the shared holds could not be read ({exc}); those brought in "
                          "before still bind")  # fmt: skip
        return res
    seen: set[str] = set()
    changed: list[Hold] = []  # brought in or released here: their objects' holds follow
    known = _versions.setdefault((store.uuid, tier.url), {})
    for obj in objects:
        # An object read before, unchanged since (its listed version tag), whose state here
        # agrees: nothing to do, and nothing to read (a city's holds are read every 30 s).
        was = known.get(obj.key) if obj.etag is not None else None
        if was is not None and was[0] == obj.etag:
            local = mine.get(was[1])
            if local is not None and local.active == was[2]:
                seen.add(was[1])
                continue
        try:
            doc = json.loads(tier.get(obj.key))
            origin = str(doc["origin"])
            theirs = Hold(**{k: v for k, v in doc.items() if k in Hold.__dataclass_fields__})
        except (VstoreError, ValueError, KeyError, TypeError) as exc:
            res.errors.append(f"{tier.url}/{obj.key}: not a shared hold ({exc})")
            continue
        res.read += 1
        if obj.etag is not None:
            known[obj.key] = (obj.etag, origin, theirs.active)
        seen.add(origin)
        local = mine.get(origin)
        if local is None:
            _bring_in(store, theirs, origin, by)
            res.brought_in += 1
            changed.append(theirs)
        elif local.active and not theirs.active:
            _release_here(store, local, theirs, by)
            res.released += 1
            changed.append(local)
        elif not local.active and theirs.active:
            share(store, local)  # released here, and that never reached the bucket
            res.shared += 1
    for origin, h in mine.items():
        if origin not in seen and not h.origin:  # this store's, not in the bucket yet
            try:
                share(store, h)
                res.shared += 1
            except VstoreError as exc:
                res.errors.append(str(exc))
    for h in changed:
        got = sync_object_holds(store, h.camera, h.from_ns, h.to_ns)
        res.objects.held += got.held
        res.objects.lifted += got.lifted
        res.objects.unsupported += got.unsupported
        res.objects.errors += got.errors
    return res


def _bring_in(store: Store, theirs: Hold, origin: str, by: str) -> None:
    with store.retention_lock:
        hold = replace(theirs, id=store.index.new_hold_id(), origin=origin)
        b = Batch()
        b.put(layout.hold_key(hold.id), hold.record())
        store.index.audit("hold_add", by, {**to_jsonable(hold), "via": "shared holds"},
                          store.clock.wall_ns(), batch=b)  # fmt: skip
        store.index.commit(b, sync=True)


def _release_here(store: Store, local: Hold, theirs: Hold, by: str) -> None:
    done = replace(
        local,
        released_ns=theirs.released_ns,
        released_by=theirs.released_by,
        release_reason=theirs.release_reason,
    )
    b = Batch()
    b.put(layout.hold_key(local.id), done.record())
    store.index.audit("hold_release", by, {**to_jsonable(done), "via": "shared holds"},
                      store.clock.wall_ns(), batch=b)  # fmt: skip
    store.index.commit(b, sync=True)
