"""The audit log's own retention: records older than ``[audit] max_age`` leave the log once a
signed digest covers them, and the pruning is itself an audit record that is never pruned.

A pruning run (1) writes a digest, so that every record it may remove has its hash signed;
(2) for each camera, folds the records that account for its deleted footage (``delete`` and
``trim`` records carrying a chain link) into a *chain base*, the longest run of links from
the camera's first whose every segment is gone: such records are pruned, the base (link
number and hash) taking their place, while a removal record above a link that still stands
is kept; (3) removes the other old records and writes an ``audit_prune`` record holding the
ranges removed and every camera's base (cumulative), in the same write; (4) writes a digest
again, which covers that record. ``audit_chain.verify`` takes the pruned numbers as pruned,
not deleted; `vstore check` starts each camera's chain at its base.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from vstore.base import layout
from vstore.base.timebase import format_time
from vstore.evidence.audit_chain import write_digest
from vstore.index.segment_chain import removal_of
from vstore.index.time_index import Batch
from vstore.store.audit_log import PRUNE_ACTION, sign_prune, store_pruned_state
from vstore.store.keys import KeyRing
from vstore.store.store import Store


class PruneReport(NamedTuple):
    pruned: int  # records removed
    kept_for_chains: int  # old records kept: they account for links above a standing one
    before: str  # the cut-off (ISO 8601): records made before it were old enough
    first_digest: int  # the digest that covered them before they went
    last_digest: int  # the digest that covers the audit_prune record


def prune_audit(store: Store, ring: KeyRing, now_ns: int, by: str) -> PruneReport | None:
    """Prune records older than ``[audit] max_age``; None when the log is kept forever."""
    max_age_ns = store.config.audit_max_age_ns
    if max_age_ns is None:
        return None
    first = write_digest(store, ring, now_ns)
    cutoff_ns = now_ns - max_age_ns
    raws = store.index.audit_items(1)
    _done, bases = store_pruned_state(store, raws)
    items = [(seq, json.loads(raw)) for seq, raw in raws]
    old = [
        (seq, rec)
        for seq, rec in items
        if seq <= first.last_seq and rec["at_ns"] < cutoff_ns and rec["action"] != PRUNE_ACTION
    ]
    # Links each camera's old removal records account for: link number -> (record, hash).
    gone: dict[str, dict[int, tuple[int, str]]] = {}
    for seq, rec in old:
        detail = rec.get("detail") or {}
        rm = removal_of(seq, rec["action"], detail)
        if rm is not None and rec["action"] in ("delete", "trim"):
            gone.setdefault(str(detail.get("camera")), {})[rm.seq] = (seq, rm.link)
    keep: set[int] = set()
    for cam, links in gone.items():
        base = bases.get(cam) or {"seq": 0, "link": ""}
        k, link = int(base["seq"]), str(base["link"])
        while k + 1 in links:
            k += 1
            link = links[k][1]
        if k > int(base["seq"]):
            bases[cam] = {"seq": k, "link": link}
        keep.update(rec_seq for n, (rec_seq, _h) in links.items() if n > k)
    doomed = [seq for seq, _rec in old if seq not in keep]
    if not doomed:
        return PruneReport(0, len(keep), format_time(cutoff_ns), first.seq, first.seq)
    b = Batch()
    for seq in doomed:
        b.delete(layout.audit_key(seq))
    detail = {
        "before": format_time(cutoff_ns),
        "max_age_s": max_age_ns // 10**9,
        "records": len(doomed),
        "ranges": _ranges(doomed),
        "kept_for_chains": len(keep),
        "covered_by_digest": first.seq,
        "chain_bases": bases,
    }
    signer = ring.signer("audit")
    sign_prune(detail, signer.info.key_id, signer.sign)
    store.index.audit(PRUNE_ACTION, by, detail, now_ns, batch=b)
    store.index.commit(b, sync=True)
    last = write_digest(store, ring, now_ns)
    return PruneReport(len(doomed), len(keep), format_time(cutoff_ns), first.seq, last.seq)


def _ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out
