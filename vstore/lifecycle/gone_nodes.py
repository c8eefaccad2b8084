"""Nodes declared gone: a node that will never come back is declared so in the bucket, its
card put aside (readers stop asking it), and the footage it recorded and never tiered is
shown as lost in what readers of the bucket see, where the timeline would otherwise only
show a gap.

A declaration is ``_nodes_gone/STORE.json`` (``layout.node_gone_key``): the node's last
card, who declared it and when. Readers of the bucket (``mark_lost``) put a ``lost`` event
on each gap of a camera that follows footage of a gone store: from the end of what it
tiered to the next footage of the camera, or to the declaration when nothing follows. A
node declared gone that starts again takes the declaration back (``publish_card``): what it
had not tiered is tiered at its next run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vstore.base import actor, layout
from vstore.base.errors import NotFound, UsageError
from vstore.base.timebase import format_time
from vstore.index.time_index import Batch, Event
from vstore.store.store import Store
from vstore.tier.base import BlobTier

GONE_FORMAT = "vstore-node-gone"
MAX_DECLARATION_BYTES = 64 << 10


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


def mark_lost(
    view: Store, bucket: BlobTier, cameras: list[str], start_ns: int, end_ns: int
) -> list[str]:
    """Put a ``lost`` event into a bucket view's index (``shared_catalog.open_bucket``) on
    each gap of ``cameras`` in [start_ns, end_ns) that follows footage of a store declared
    gone; returns a note for each. The declarations are read only when a gap follows
    another store's footage than the one after it, or ends the range."""
    candidates: dict[int, list[tuple[str, int, int]]] = {}  # camera num -> gaps
    names: dict[int, str] = {}
    for cam in cameras:
        num = view.index.camera_num(cam)
        if num is None:
            continue
        rows = sorted(view.index.segments(num, start_ns, end_ns), key=lambda r: r.start_ns)
        for i, row in enumerate(rows):
            after = rows[i + 1] if i + 1 < len(rows) else None
            gap_end = after.start_ns if after is not None else end_ns
            if gap_end <= row.end_ns or (after is not None and after.owner == row.owner):
                continue
            candidates.setdefault(num, []).append((row.owner, row.end_ns, gap_end))
            names[num] = cam
    if not candidates:
        return []
    gone = gone_stores(bucket)
    notes = []
    for num, gaps in candidates.items():
        cam = names[num]
        b = Batch()
        for seq, (owner, from_ns, to_ns) in enumerate(gaps):
            doc = gone.get(owner)
            if doc is None:
                continue
            to_ns = min(to_ns, max(from_ns, int(doc.get("declared_ns", to_ns))))
            if to_ns <= from_ns:
                continue
            who = doc.get("member") or doc.get("node") or owner
            detail = {"from_ns": from_ns, "to_ns": to_ns, "reason": "node declared gone",
                      "node": who, "store": owner, "declared_ns": doc.get("declared_ns")}  # fmt: skip
            ev = Event(num, from_ns, seq, "lost", detail)
            b.put(ev.key(), ev.value())
            notes.append(
                f"{cam}: {format_time(from_ns)} .. {format_time(to_ns)} is lost: node {who} "
                "was declared gone before it tiered it"
            )
        view.index.commit(b, sync=False)
    return notes
