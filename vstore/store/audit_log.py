"""Reading the store's audit log: the records that match a query (camera, actions, principal,
time), oldest or newest first, for `vstore audit` and the node's API alike; and what the
log's own retention says it removed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from vstore.store.store import Store


def query(
    store: Store,
    *,
    camera: str | None = None,
    actions: Iterable[str] = (),
    by: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    newest_first: bool = False,
) -> Iterator[dict[str, Any]]:
    """Records about ``camera``, of one of ``actions`` (all when empty), made by ``by``, in
    [since_ns, until_ns)."""
    wanted = frozenset(actions)
    recs = store.index.audit_records()
    for r in reversed(recs) if newest_first else recs:
        if camera is not None and camera not in cameras_of(r):
            continue
        if wanted and r["action"] not in wanted:
            continue
        if by is not None and r["by"] != by:
            continue
        if since_ns is not None and r["at_ns"] < since_ns:
            continue
        if until_ns is not None and r["at_ns"] >= until_ns:
            continue
        yield r


def cameras_of(record: dict[str, Any]) -> list[str]:
    """The cameras an audit record is about: its ``camera``, each clip's of an export, or
    those it lists (a package's download)."""
    detail = record.get("detail")
    if not isinstance(detail, dict):
        return []
    out = [detail["camera"]] if isinstance(detail.get("camera"), str) else []
    named = [c.get("camera") if isinstance(c, dict) else None for c in detail.get("clips") or []]
    for cam in [*named, *(detail.get("cameras") or [])]:
        if isinstance(cam, str) and cam not in out:
            out.append(cam)
    return out


# The record of the audit log's own retention (evidence/audit_retention.py).
PRUNE_ACTION = "audit_prune"


def pruned_state(records: Iterable[tuple[int, dict[str, Any]]]) -> tuple[set[int], dict[str, Any]]:
    """From the audit records (number, record): every number an ``audit_prune`` record says
    it removed, and the newest chain bases (camera -> {seq, link})."""
    pruned: set[int] = set()
    bases: dict[str, Any] = {}
    for _seq, rec in records:
        if rec.get("action") != PRUNE_ACTION:
            continue
        d = rec.get("detail") or {}
        for a, b in d.get("ranges", []):
            pruned.update(range(int(a), int(b) + 1))
        bases = dict(d.get("chain_bases") or {})
    return pruned, bases
