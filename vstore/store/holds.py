"""Legal holds: recorded in the index (the authority, audited), mirrored onto
S3 object legal holds, and consulted by every deletion (lifecycle H1-H3)."""

from __future__ import annotations

import dataclasses
import json
import socket
from dataclasses import dataclass, field, replace

from vstore.base import layout
from vstore.base.errors import NotFound, TierError, UsageError, VstoreError
from vstore.base.free_text import checked_text
from vstore.base.jsonio import dumps_compact, to_jsonable
from vstore.base.timebase import TimeRange, WallNs, check_time_ns, format_time
from vstore.index.time_index import Batch
from vstore.store.store import Store


@dataclass(frozen=True)
class Hold:
    """A legal hold: footage of one camera in [from_ns, to_ns) that nothing may delete."""

    id: int
    camera: str
    from_ns: WallNs
    to_ns: WallNs
    reason: str
    by: str
    created_ns: WallNs
    released_ns: WallNs | None = None
    released_by: str | None = None
    release_reason: str | None = None  # holds released before it was stored have None
    # STORE#ID when another store placed it (brought in from the shared bucket by
    # shared_holds.sync); "" when placed here.
    origin: str = ""
    # The node (its cluster member name, else its host name) it was placed through, when
    # brought in: hold numbers are each node's own, so a list names where #ID is (origin).
    placed_via: str = ""

    JSON_EXTRA = ("active",)

    @property
    def active(self) -> bool:
        return self.released_ns is None

    def covers(self, camera: str, start_ns: int, end_ns: int) -> bool:
        return (
            self.active
            and camera == self.camera
            and start_ns < self.to_ns
            and end_ns > self.from_ns
        )

    def record(self) -> bytes:
        """The hold as the index stores it: its fields, times as integers."""
        return dumps_compact(dataclasses.asdict(self))


def list_holds(store: Store, include_released: bool = False) -> list[Hold]:
    holds = [Hold(**h) for h in store.index.holds()]
    return holds if include_released else [h for h in holds if h.active]


def node_name(store: Store) -> str:
    """What the holds placed through this store are named after across the cluster: its
    member name, else its host name."""
    return store.config.cluster.member or socket.gethostname()


def hold_origin(store: Store, hold: Hold) -> str:
    """STORE#ID: which store placed a hold, and its id there."""
    return hold.origin or f"{store.uuid}#{hold.id}"


def placed_via(store: Store, hold: Hold) -> str:
    """The node a hold was placed through (this one, for a hold placed here)."""
    return hold.placed_via or node_name(store)


def hold_name(store: Store, hold: Hold) -> str:
    """NODE:N, the node a hold was placed through and its number there: the same on every
    node of the bucket (a hold's number is each node's own)."""
    if not hold.origin:
        return f"{node_name(store)}:{hold.id}"
    where = hold.placed_via or f"store-{hold.origin.split('-')[0]}"
    return f"{where}:{hold.origin.rpartition('#')[2]}"


def hold_doc(store: Store, hold: Hold) -> dict[str, object]:
    """A hold as JSON, with its name (NODE:N) where holds are shared with the other stores
    of a bucket (a lone store's holds go by their numbers)."""
    doc = to_jsonable(hold)
    if store.config.tier.url:
        doc["name"] = hold_name(store, hold)
        # (where it was placed: as the other nodes, which brought it in, say it)
        doc["origin"], doc["placed_via"] = hold_origin(store, hold), placed_via(store, hold)
    return doc


def holds_by_ref(store: Store, ref: int | str | None) -> list[Hold]:
    """The holds (released ones too) that go by ``ref``: a number here (one at most), or a
    name NODE:N (more than one only when two nodes share a name)."""
    text = _ref_text(ref)
    if _is_number(text):
        num = int(text)
        # An id no hold can have (hold ids count up from 1 in 8 bytes) is simply not found.
        raw = store.index.get(layout.hold_key(num)) if 0 < num < 1 << 64 else None
        return [Hold(**json.loads(raw))] if raw is not None else []
    return [h for h in list_holds(store, True) if hold_name(store, h) == text]


def _ref_text(ref: int | str | None) -> str:
    """A hold's number or name as given, without a leading "#" (#3 as hold lists say it);
    UsageError when none is given."""
    text = "" if ref is None else str(ref).strip().lstrip("#")
    if not text:
        raise UsageError('give the hold to release: its number here or its name NODE:N ("id")')
    return text


def _is_number(text: str) -> bool:
    return text.lstrip("+-").isdigit() and text.count("-") + text.count("+") <= 1


def one_hold(ref: int | str | None, found: list[Hold]) -> Hold:
    """The one hold of ``found`` (those that go by ``ref``): NotFound for none, UsageError
    for several."""
    text = _ref_text(ref)
    if not found:
        raise NotFound(
            f"no hold #{text}" if _is_number(text) else f"no hold {text!r} (NODE:N, its name)"
        )
    if len(found) > 1:
        raise UsageError(
            f"{len(found)} holds go by {text!r} (nodes of the same name): give its "
            f"number here, one of {', '.join(f'#{h.id}' for h in found)}"
        )
    return found[0]


def find_hold(store: Store, ref: int | str | None) -> Hold:
    """A hold (released ones too) by its number here or its name anywhere (NODE:N)."""
    return one_hold(ref, holds_by_ref(store, ref))


def covering_holds(store: Store, camera: str, start_ns: int, end_ns: int) -> list[Hold]:
    """The active holds that overlap [start_ns, end_ns) of a camera."""
    return [h for h in list_holds(store) if h.covers(camera, start_ns, end_ns)]


@dataclass
class ObjectHoldResult:
    """What mirroring vstore holds onto S3 object legal holds did (lifecycle H4)."""

    held: int = 0  # objects now under an object legal hold
    lifted: int = 0  # objects whose hold was lifted (no active vstore hold covers them)
    unsupported: int = 0  # objects on tiers without object lock (the index hold still binds)
    errors: list[str] = field(default_factory=list)


def sync_object_holds(
    store: Store, camera: str | None = None, from_ns: int = 0, to_ns: int = 2**63 - 1
) -> ObjectHoldResult:
    """Make the object legal holds of tiered segments in a range match the active vstore
    holds: ON where a hold covers the segment, OFF where none does. The index hold is the
    authority; this is a second lock that the object store itself enforces. Idempotent."""
    out = ObjectHoldResult()
    if not store.config.tier.legal_hold:
        return out
    holds = list_holds(store)
    for cam, num in store.index.cameras():
        if camera is not None and cam != camera:
            continue
        for r in store.index.segments(num, from_ns, to_ns):
            if r.location == "local" or not (r.start_ns < to_ns and r.end_ns > from_ns):
                continue
            if r.foreign:
                continue  # another store's object: its holds are that store's to set (D6)
            want = any(h.covers(cam, r.start_ns, r.end_ns) for h in holds)
            try:
                if not store.tier(r.location).set_legal_hold(r.path, want):
                    out.unsupported += 1
                elif want:
                    out.held += 1
                else:
                    out.lifted += 1
            except VstoreError as exc:
                out.errors.append(f"{r.location}/{r.path}: {exc}")
    return out


def _mirror(store: Store, hold: Hold, what: str) -> None:
    res = sync_object_holds(store, hold.camera, hold.from_ns, hold.to_ns)
    if res.errors:
        err = TierError(
            f"hold #{hold.id} is {what} in the index, but {len(res.errors)} tiered object(s) "
            f"could not be updated ({res.errors[0]}); run `vstore hold sync` when the object "
            "store is reachable"
        )
        err.hold = hold  # type: ignore[attr-defined]
        raise err


def add_hold(
    store: Store,
    camera: str,
    from_ns: int,
    to_ns: int,
    reason: str,
    by: str,
    *,
    mirror: bool = True,
) -> Hold:
    """Record a hold (synced, audited), then put S3 object legal holds on the tiered
    segments it overlaps (mirror; a TierError then means the hold is recorded but some
    objects could not be held: `sync_object_holds` retries)."""
    TimeRange(from_ns, to_ns)
    check_time_ns(from_ns)  # (the instants vstore stores, as any time a command is given)
    check_time_ns(to_ns - 1)
    layout.validate_camera_id(camera)
    if not reason.strip():
        raise UsageError("a hold needs a reason")
    if not by.strip():
        raise UsageError("a hold needs the name of who places it (--by)")
    checked_text(reason, "the hold's reason")
    checked_text(by, "who places the hold (--by)")
    with store.retention_lock:  # never between a retention run's plan and its deletions
        hold = Hold(
            store.index.new_hold_id(),
            camera,
            from_ns,
            to_ns,
            reason.strip(),
            by.strip(),
            store.clock.wall_ns(),
        )
        b = Batch()
        b.put(layout.hold_key(hold.id), hold.record())
        store.index.audit("hold_add", hold.by, to_jsonable(hold), hold.created_ns, batch=b)
        store.index.commit(b, sync=True)
    if mirror:
        _mirror(store, hold, "recorded")
    return hold


def release_hold(
    store: Store,
    ref: int | str | None,
    by: str,
    reason: str = "",
    *,
    mirror: bool = True,
    camera: str | None = None,
) -> Hold:
    """Release a hold, by its number here or its name (NODE:N) anywhere (synced, audited);
    object legal holds that no other active hold needs are lifted (mirror). ``camera``: the
    camera the releaser means the hold to be of; a hold of another camera is refused (a
    number is each store's own: #3 on one node of a cluster is not #3 on the next)."""
    if not by.strip():
        raise UsageError("releasing a hold needs the name of who releases it (--by)")
    checked_text(by, "who releases the hold (--by)")
    if reason:
        checked_text(reason, "the release's reason")
    hold = find_hold(store, ref)
    name = hold_name(store, hold)
    if camera is not None and camera != hold.camera:
        raise UsageError(
            f"hold #{hold.id} here ({name}) is of camera {hold.camera!r} ({hold.reason}), "
            f"not {camera!r}: nothing released (a number is each node's own; a name NODE:N "
            "is the same on every node: `vstore hold list`)"
        )
    if not hold.active:
        raise UsageError(
            f"hold #{hold.id} ({name}) was already released by {hold.released_by} at "
            f"{format_time(hold.released_ns or 0)}"
        )

    done = replace(
        hold, released_ns=store.clock.wall_ns(), released_by=by.strip(), release_reason=reason
    )
    b = Batch()
    b.put(layout.hold_key(hold.id), done.record())
    store.index.audit(
        "hold_release",
        done.released_by or "",
        to_jsonable(done),
        done.released_ns or 0,
        batch=b,
    )
    store.index.commit(b, sync=True)
    if mirror:
        _mirror(store, done, "released")
    return done
