"""Nodes declared gone: a node that will never come back is declared so in the bucket, its
card put aside (readers stop asking it), and the footage it recorded and never tiered is
shown as lost in what readers of the bucket see, where the timeline would otherwise only
show a gap.

A declaration is ``_nodes_gone/STORE.json`` (``layout.node_gone_key``): the node's last
card, who declared it and when. Each node also keeps ``_nodes_cameras/STORE.json`` current:
the cameras it records, each with since when, and the spans of every camera's footage it
holds untiered (``publish_cameras``, at every change of its cameras, once a minute, and at
its stop; ``UntieredSpans``).
Readers of the bucket (``mark_lost``) put a ``lost`` event on what of a camera's range no
footage covers, where a gone store recorded it: the untiered spans it last listed (cameras
it handed over too), after the end of what it tiered, and from when it took up a camera its
list names, to the declaration or to when another node took the camera up, whichever is
first. A node declared gone that starts again takes the declaration back
(``publish_card``): what it had not tiered is tiered at its next run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from vstore.base import actor, layout
from vstore.base.errors import NotFound, UsageError
from vstore.base.timebase import GAP_TOLERANCE_NS, format_time
from vstore.index.time_index import Batch, Event, SegmentRow
from vstore.store.store import Store
from vstore.tier.base import BlobTier

GONE_FORMAT = "vstore-node-gone"
MAX_DECLARATION_BYTES = 64 << 10
CAMERAS_FORMAT = "vstore-node-cameras"
MAX_CAMERAS_BYTES = 16 << 20  # (a node of 100,000 cameras' list is a few megabytes)


def declare_gone(
    tier: BlobTier,
    name: str,
    cards: list[dict[str, Any]],
    now_ns: int,
    answers: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Declare the node ``name`` (its cluster member name, or its host name) gone: each of
    its ``cards`` is replaced by a declaration. Returns the declarations. NotFound when no
    card names it; UsageError when one of its APIs still ``answers`` (it runs: not gone)."""
    if not name.strip():
        raise UsageError("give the node's [cluster] name, or its host name")
    mine = [c for c in cards if c.get("member") == name]
    if not mine:  # (a node outside a cluster is known by its host name)
        mine = [c for c in cards if c.get("node") == name]
        if len(mine) > 1:
            raise UsageError(
                f"{len(mine)} stores of the bucket are on host {name!r}: give the node's "
                "[cluster] name"
            )
    if not mine:
        gone = [d for d in gone_stores(tier).values() if name in (d.get("member"), d.get("node"))]
        if gone:
            d = gone[0]
            raise NotFound(
                f"node {name!r} was declared gone already, at "
                f"{format_time(int(d.get('declared_ns', 0)))} by {_who(d.get('by'))}"
            )
        if not cards:
            raise NotFound(
                f"the bucket {tier.url} holds no node cards (is it the bucket the nodes' "
                "[tier] url names?)"
            )
        known = sorted({str(c.get("member") or c.get("node")) for c in cards})
        raise NotFound(f"no node {name!r} has a card in the bucket (nodes: {', '.join(known)})")
    answers = answers or api_answers
    for card in mine:
        if card.get("api") and answers(str(card["api"])):
            raise UsageError(
                f"node {name!r} answers at {card['api']}: it is running, not gone (stop it, "
                "or drain it, first)"
            )
    out = []
    for card in mine:
        doc = {
            "format": GONE_FORMAT,
            "store": card["store"],
            "node": card.get("node", ""),
            "member": card.get("member", ""),
            "api": card.get("api", ""),
            "declared_ns": now_ns,
            "by": actor.current(),
        }
        # The declaration first: a reader never sees neither (the node as still there).
        tier.put_bytes(layout.node_gone_key(card["store"]), json.dumps(doc).encode())
        tier.delete(layout.node_card_key(card["store"]))
        out.append(doc)
    return out


def api_answers(api: str) -> bool:
    """Whether a node's API answers its liveness check (``/livez``) now, within 3 s."""
    import urllib.error
    import urllib.request

    if not api.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/livez", timeout=3) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _who(by: Any) -> str:
    if isinstance(by, dict):
        return f"{by.get('user', '?')}@{by.get('host', '?')}"
    return "?"


def take_back(tier: BlobTier, store_uuid: str) -> None:
    """A node declared gone is back (it starts): its declaration goes."""
    tier.delete(layout.node_gone_key(store_uuid))


def gone_stores(tier: BlobTier) -> dict[str, dict[str, Any]]:
    """store uuid -> its declaration, for every store of the bucket declared gone (what does
    not read as one is skipped)."""
    return {
        doc["store"]: doc
        for doc in tier.json_objects(layout.NODE_GONE_PREFIX + "/", MAX_DECLARATION_BYTES)
        if doc.get("format") == GONE_FORMAT and isinstance(doc.get("store"), str)
    }


# Every this many reads, UntieredSpans reads every camera's segment rows whole (once an hour
# at a read a minute: the cost of a tiering run's own plan); in between only what changed.
FULL_READ_EVERY = 60


class UntieredSpans:
    """What a store holds untiered, camera by camera, kept up to date at little cost: each
    camera's segment rows are read whole at the first read and every FULL_READ_EVERY-th;
    in between only what was written since (newer than the newest it holds; for a camera
    it held nothing of, its newest untiered ones: tiering goes oldest first), and what was
    tiered or deleted since is dropped from the oldest end. So a segment left untiered
    behind tiered footage (a backfill imported after it, one whose tiering keeps failing)
    is seen at the next whole read."""

    def __init__(self, full_every: int = FULL_READ_EVERY) -> None:
        self._local: dict[int, dict[int, int]] = {}  # camera num -> {start_ns: end_ns}
        self._full_every = max(1, full_every)
        self._reads = 0

    def read(self, store: Store) -> dict[str, list[list[int]]]:
        """camera -> the [from_ns, to_ns] spans of its footage the store holds untiered,
        oldest first (a segment being written counts to its last chunk)."""
        whole = self._reads % self._full_every == 0
        self._reads += 1
        out: dict[str, list[list[int]]] = {}
        for cam, num in store.index.cameras():
            local = self._local.setdefault(num, {})
            if whole:
                local.clear()
                local.update((r.start_ns, _end(store, r)) for r in store.index.segments(num)
                             if r.location == "local")  # fmt: skip
            elif not local:  # (all of it tiered since: its newest untiered ones, if any)
                local.update((r.start_ns, _end(store, r))
                             for r in store.index.untiered_tail(num, 2**62))  # fmt: skip
            else:
                for r in store.index.segments(num, max(local)):  # (written since)
                    if r.location == "local":
                        local[r.start_ns] = _end(store, r)
                    else:
                        local.pop(r.start_ns, None)
                for start in sorted(local):  # (oldest first: tiered or gone since?)
                    row = next((r for r in store.index.segments(num, start, start + 1)
                                if r.start_ns == start), None)  # fmt: skip
                    if row is not None and row.location == "local":
                        break
                    del local[start]
            spans: list[list[int]] = []
            for start in sorted(local):
                end = local[start]
                if spans and start - spans[-1][1] <= GAP_TOLERANCE_NS:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
            if spans:
                out[cam] = spans
        return out


def _end(store: Store, row: SegmentRow) -> int:
    """A segment's end; of one being written, its last chunk's."""
    if row.state != "open":
        return row.end_ns
    last = store.index.last_chunk(row.camera_num)
    return max(row.start_ns, last.end_ns if last is not None else row.start_ns)


def untiered_spans(store: Store) -> dict[str, list[list[int]]]:
    """``UntieredSpans.read`` once."""
    return UntieredSpans().read(store)


def publish_cameras(
    store: Store,
    tier: BlobTier,
    since_ns: dict[str, int],
    untiered: dict[str, list[list[int]]],
    now_ns: int,
) -> None:
    """Say in the bucket which cameras this node records now, each with since when (wall
    ns), and what of every camera it holds untiered (``untiered_spans``): should it be
    declared gone, readers know what it recorded and never tiered (``mark_lost``)."""
    doc = {
        "format": CAMERAS_FORMAT,
        "store": store.uuid,
        "member": store.config.cluster.member,
        "at_ns": now_ns,
        "cameras": dict(sorted(since_ns.items())),
        "untiered": untiered,
    }
    tier.put_bytes(layout.node_cameras_key(store.uuid), json.dumps(doc).encode())


class NodeCameras(NamedTuple):
    """What a node last said of its cameras (``publish_cameras``)."""

    since: dict[str, int]  # camera -> since when it records it
    untiered: dict[str, list[tuple[int, int]]]  # camera -> spans it held untiered


def node_cameras(tier: BlobTier) -> dict[str, NodeCameras]:
    """store uuid -> what its node last said of its cameras, for every node that said it
    (what does not read as such a list is skipped)."""
    out = {}
    for doc in tier.json_objects(layout.NODE_CAMERAS_PREFIX + "/", MAX_CAMERAS_BYTES):
        cams, spans = doc.get("cameras"), doc.get("untiered", {})
        if doc.get("format") != CAMERAS_FORMAT or not isinstance(doc.get("store"), str):
            continue
        if not isinstance(cams, dict) or not isinstance(spans, dict):
            continue
        out[doc["store"]] = NodeCameras(
            {str(c): int(v) for c, v in cams.items() if isinstance(v, int)},
            {
                str(c): [
                    (int(a), int(b)) for a, b in v if isinstance(a, int) and isinstance(b, int)
                ]
                for c, v in spans.items()
                if isinstance(v, list) and all(isinstance(x, list) and len(x) == 2 for x in v)
            },
        )
    return out


def mark_lost(
    view: Store, bucket: BlobTier, cameras: list[str], start_ns: int, end_ns: int
) -> list[str]:
    """Put a ``lost`` event into a bucket view's index (``shared_catalog.open_bucket``) on
    what of ``cameras`` in [start_ns, end_ns) no footage covers where a store declared gone
    recorded it, up to its declaration: after its last footage there, and from when it
    took up a camera its list names; returns a note for each. The declarations are listed
    only when a camera's range has a gap, and a node's camera list read only when it was
    declared gone."""
    spans: dict[int, list[tuple[str, int, int]]] = {}  # camera num -> (owner, start, end)
    names: dict[int, str] = {}
    for cam in cameras:
        num = view.index.camera_num(cam)
        if num is None:
            continue
        rows = sorted(view.index.segments(num, start_ns, end_ns), key=lambda r: r.start_ns)
        covered = start_ns
        for r in rows:
            if r.start_ns > covered:
                break
            covered = max(covered, r.end_ns)
        if covered < end_ns:  # (a gap somewhere in the range)
            spans[num] = [(r.owner, r.start_ns, r.end_ns) for r in rows]
            names[num] = cam
    if not spans:
        return []
    gone = gone_stores(bucket)
    if not gone:
        return []
    said = node_cameras(bucket)
    notes = []
    for num, rows in spans.items():
        cam = names[num]
        b = Batch()
        seq = 0
        for store, doc in gone.items():
            declared = int(doc.get("declared_ns", end_ns))

            # What it recorded after the last of its footage the bucket has (it tiers oldest
            # first), and from when it took up a camera its list names, up to the next
            # footage (another node's: the camera moved on, or it died). After its last
            # footage only while its list still named the camera: one it handed over
            # (sealed, then tiered) left a handover's gap, nothing lost.
            # Another node that took the camera up since recorded from then (its footage
            # may not be tiered yet): the gone node's part ends there.
            own = said.get(store)
            listed = own.since if own is not None else None
            taken = sorted(o.since[cam] for s, o in said.items() if s != store and cam in o.since)

            mine = [e for owner, _s, e in rows if owner == store]
            windows = list(own.untiered.get(cam, [])) if own is not None else []
            if mine and (listed is None or cam in listed):
                windows.append((max(mine), _until(rows, taken, max(mine), end_ns)))
            if listed is not None and cam in listed:
                since = max(listed[cam], max(mine, default=0))
                windows.append((since, _until(rows, taken, since, end_ns)))
            for lo, hi in _uncovered(windows, rows, max(start_ns, 0), min(end_ns, declared)):
                who = doc.get("member") or doc.get("node") or store
                detail = {"from_ns": lo, "to_ns": hi, "reason": "node declared gone",
                          "node": who, "store": store, "declared_ns": doc.get("declared_ns")}  # fmt: skip
                ev = Event(num, lo, seq, "lost", detail)
                seq += 1
                b.put(ev.key(), ev.value())
                notes.append(
                    f"{cam}: {format_time(lo)} .. {format_time(hi)} is lost: node {who} was "
                    "declared gone before it tiered it"
                )
        view.index.commit(b, sync=False)
    return notes


def _until(rows: list[tuple[str, int, int]], taken: list[int], t: int, default: int) -> int:
    """Where a gone node's part of a camera after ``t`` ends: the next footage the bucket
    has, or another node's taking the camera up (``taken``), whichever is first."""
    return min([_next_start(rows, t, default), *(x for x in taken if x > t)])


def _next_start(rows: list[tuple[str, int, int]], t: int, default: int) -> int:
    """The start of the first row that starts at ``t`` or later (``default``: none)."""
    return min((s for _o, s, _e in rows if s >= t), default=default)


def _uncovered(
    windows: list[tuple[int, int]], rows: list[tuple[str, int, int]], lo: int, hi: int
) -> list[tuple[int, int]]:
    """The parts of the union of ``windows``, within [lo, hi), that no row covers, merged."""
    marks: list[tuple[int, int]] = []
    for a, b in sorted(windows):
        a, b = max(a, lo), min(b, hi)
        if a < b:
            if marks and a <= marks[-1][1]:
                marks[-1] = (marks[-1][0], max(marks[-1][1], b))
            else:
                marks.append((a, b))
    out = []
    covers = sorted((s, e) for _o, s, e in rows)
    for a, b in marks:
        for s, e in covers:
            if e <= a or s >= b:
                continue
            if s > a:
                out.append((a, s))
            a = max(a, e)
            if a >= b:
                break
        if a < b:
            out.append((a, b))
    return out
