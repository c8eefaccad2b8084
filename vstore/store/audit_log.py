"""Reading the store's audit log: the records that match a query (camera, actions, principal,
time), oldest or newest first, for `vstore audit` and the node's API alike; the record hashes
its signed digests vouch for; and what the log's own retention, in records those digests
signed, says it removed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from vstore.store.keys import load_public_pem, verify_ed25519
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


def canonical_json(body: dict[str, Any]) -> bytes:
    """A digest's stored bytes, and what its signature covers (the body less ``signature``)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def audit_keys(store: Store) -> dict[str, Any]:
    """Key id -> public key, for the store's audit keys (current and retired)."""
    out: dict[str, Any] = {}
    for k in store.keys.all_keys():
        if k.purpose == "audit":
            pub = load_public_pem(k.public_pem.encode(), "key ring")
            if isinstance(pub, ed25519.Ed25519PublicKey):
                out[k.key_id] = pub
    return out


def signed_hashes(
    digests: Iterable[tuple[int, bytes]], key_for: Callable[[str], Any | None]
) -> dict[int, bytes]:
    """Record number -> the SHA-256 a digest signed for it, from the digests whose signature
    verifies with ``key_for(key_id)`` (a digest edited or signed by another key vouches for
    nothing)."""
    out: dict[int, bytes] = {}
    for _dseq, raw in digests:
        try:
            d = json.loads(raw)
            sig = base64.b64decode(d["signature"])
            hashes = base64.b64decode(d["hashes"])
            first, last = int(d["first_seq"]), int(d["last_seq"])
            key = key_for(str(d.get("key_id", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        body = {k: v for k, v in d.items() if k != "signature"}
        if key is None or not verify_ed25519(key, sig, canonical_json(body)):
            continue
        for i in range(min(last - first + 1, len(hashes) // 32)):
            out[first + i] = hashes[32 * i : 32 * i + 32]
    return out


def sign_prune(detail: dict[str, Any], key_id: str, sign: Callable[[bytes], bytes]) -> None:
    """Sign an ``audit_prune`` record's detail with the store's audit key (in place): the
    record is the log's word that the records it names went by its own retention, which
    nobody without the key may put in (a digest signs whatever records it finds)."""
    detail["key_id"] = key_id
    detail["signature"] = base64.b64encode(sign(canonical_json(detail))).decode()


def _prune_signed(detail: dict[str, Any], key_for: Callable[[str], Any | None]) -> bool:
    try:
        key = key_for(str(detail["key_id"]))
        sig = base64.b64decode(detail["signature"])
    except (KeyError, TypeError, ValueError):
        return False
    body = {k: v for k, v in detail.items() if k != "signature"}
    return key is not None and verify_ed25519(key, sig, canonical_json(body))


def store_pruned_state(
    store: Store, records: Iterable[tuple[int, bytes]]
) -> tuple[set[int], dict[str, Any]]:
    """``pruned_state`` of ``records`` under the store's own audit keys and digests."""
    keys = audit_keys(store)
    return pruned_state(records, signed_hashes(store.index.audit_digests(), keys.get), keys.get)


def pruned_state(
    records: Iterable[tuple[int, bytes]],
    signed: dict[int, bytes],
    key_for: Callable[[str], Any | None],
) -> tuple[set[int], dict[str, Any]]:
    """From the audit records (number, stored bytes): every number an ``audit_prune`` record
    says it removed, and the newest chain bases (camera -> {seq, link}). Only a prune record
    signed by an audit key (``sign_prune``: the prune job's own) counts, and only for
    numbers below its own whose hashes a verified digest signed before they went (``signed``):
    one put in by hand would otherwise pass deleted records, and the segments they accounted
    for, as the log's own retention."""
    pruned: set[int] = set()
    bases: dict[str, Any] = {}
    for seq, raw in records:
        if PRUNE_ACTION.encode() not in raw:
            continue
        rec = json.loads(raw)
        d = rec.get("detail") or {}
        if rec.get("action") != PRUNE_ACTION or not _prune_signed(d, key_for):
            continue
        for a, b in d.get("ranges", []):
            pruned.update(n for n in range(max(1, int(a)), min(int(b), seq - 1) + 1) if n in signed)
        bases = dict(d.get("chain_bases") or {})
    return pruned, bases
