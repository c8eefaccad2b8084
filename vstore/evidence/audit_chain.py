"""The audit log made tamper-evident: signed digests, chained to each other, that fix the hash
of every audit record.

A digest covers the records written since the one before it (their sequence numbers are
consecutive: a number is given only when its record is written, so a missing number is a
deleted record). It holds each record's SHA-256 (of the record's stored bytes), the running
chain ``chain = SHA-256(chain_before || record_hash)`` over every record since the first, the
SHA-256 of the previous digest's stored bytes, the period it closes, and an Ed25519
signature by the node's audit key over all of that. The node writes one every hour (one for
an hour with no records too, so a missing hour is provable) and when it stops.

When the store has a tier, every digest is also copied to the object store
(``_audit/UUID/digest-N.json``) under an S3 legal hold where the bucket has Object Lock: a
copy nobody can delete or change, which ``verify`` compares with the digests kept here.

``verify`` recomputes all of it from the records and names what does not match: an edited,
deleted, inserted or reordered record (by sequence number), a digest missing, replaced or
not signed by a known audit key. Records after the last digest are not yet covered; the
report says how many.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, NamedTuple

from vstore.base import layout
from vstore.base.errors import TierError
from vstore.base.timebase import format_time
from vstore.store.audit_log import audit_keys, canonical_json, pruned_state, signed_hashes
from vstore.store.keys import KeyRing, key_id_of, load_public_pem, verify_ed25519
from vstore.store.store import Store

GENESIS = bytes(32)  # the chain before the first record
_ABSENT = bytes(32)  # a record hash never stored: the record was deleted before its digest


def _link(chain: bytes, record_hash: bytes) -> bytes:
    return hashlib.sha256(chain + record_hash).digest()


class DigestReport(NamedTuple):
    seq: int
    first_seq: int
    last_seq: int
    from_ns: int
    to_ns: int
    key_id: str
    copies: CopyReport | None = None  # None: the store has no tier to copy digests to


class CopyReport(NamedTuple):
    """What copying the digests to the object store did."""

    copied: int  # digests copied now (every one the object store lacked)
    locked: bool  # whether the copies carry an S3 legal hold (a bucket with Object Lock)
    error: str = ""  # why copying stopped (the next digest copies what is left)


def write_digest(store: Store, ring: KeyRing, now_ns: int) -> DigestReport:
    """Close the period since the last digest: sign and store a digest of the records written
    since (none is fine). Raises ConfigError when there is no audit key."""
    signer = ring.signer("audit")
    digests = store.index.audit_digests()
    prev_raw = digests[-1][1] if digests else None
    prev = json.loads(prev_raw) if prev_raw is not None else None
    first = prev["last_seq"] + 1 if prev else 1
    chain = bytes.fromhex(prev["chain"]) if prev else GENESIS
    hashes: list[bytes] = []
    last = first - 1
    items = store.index.audit_items(first)
    start_ns = prev["to_ns"] if prev else (json.loads(items[0][1])["at_ns"] if items else now_ns)
    for seq, raw in items:
        while last + 1 < seq:  # (never happens unless records were deleted out of band)
            hashes.append(_ABSENT)
            chain = _link(chain, _ABSENT)
            last += 1
        h = hashlib.sha256(raw).digest()
        hashes.append(h)
        chain = _link(chain, h)
        last = seq
    body = {
        "seq": prev["seq"] + 1 if prev else 1,
        "store_uuid": store.uuid,
        "from_ns": start_ns,
        "to_ns": max(now_ns, start_ns),
        "first_seq": first,
        "last_seq": last,
        "hashes": base64.b64encode(b"".join(hashes)).decode(),
        "chain": chain.hex(),
        "prev_digest": hashlib.sha256(prev_raw).hexdigest() if prev_raw is not None else "",
        "algorithm": "Ed25519",
        "key_id": signer.info.key_id,
        # Each camera's recording-chain head as the digest saw it: a later rollback of a
        # head (the newest segments removed, an older signed head put back) falls short of it.
        "chain_heads": chain_heads(store),
    }
    body["signature"] = base64.b64encode(signer.sign(canonical_json(body))).decode()
    store.index.put_audit_digest(body["seq"], canonical_json(body))
    return DigestReport(
        body["seq"],
        first,
        last,
        body["from_ns"],
        body["to_ns"],
        signer.info.key_id,
        copy_digests(store),
    )


def copy_digests(store: Store) -> CopyReport | None:
    """Copy to the store's tier every digest it does not hold yet, each under a legal hold
    where the bucket allows one; None when the store has no tier."""
    url = store.config.tier.url
    if not url:
        return None
    copied, locked = 0, True
    try:
        tier = store.tier(url)
        have = _copies(tier, store.uuid)
        for seq, raw in store.index.audit_digests():
            if seq in have:
                continue
            key = layout.audit_digest_object_key(store.uuid, seq)
            tmp = store.layout.tmp_dir / f"audit-digest-{seq}.{os.getpid()}.json"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(raw)
            try:
                tier.put_file(key, tmp, base64.b64encode(hashlib.sha256(raw).digest()).decode())
            finally:
                tmp.unlink(missing_ok=True)
            locked = tier.set_legal_hold(key, True) and locked
            copied += 1
    except (TierError, OSError) as exc:
        return CopyReport(copied, locked and copied > 0, str(exc))
    return CopyReport(copied, locked and copied > 0)


def _copies(tier: Any, store_uuid: str) -> dict[int, str]:
    out = {}
    for o in tier.list_prefix(layout.audit_digest_object_prefix(store_uuid)):
        seq = layout.parse_audit_digest_object_key(o.key)
        if seq is not None:
            out[seq] = o.key
    return out


def verify_copies(store: Store) -> list[Finding]:
    """Each digest against its copy in the object store (when the store has a tier): a copy
    that differs, a digest gone here that its copy still holds, and a copy missing where a
    later one exists (copies go in order: a hole is a deletion) are named."""
    url = store.config.tier.url
    if not url:
        return []
    try:
        tier = store.tier(url)
        copies = _copies(tier, store.uuid)
    except TierError as exc:
        return [Finding(False, "copy", url, f"the digests' copies cannot be listed: {exc}")]
    local = dict(store.index.audit_digests())
    out: list[Finding] = []
    newest_copy = max(copies, default=0)
    for seq in sorted(set(local) | set(copies)):
        where = f"digest #{seq}"
        if seq not in copies:
            if seq < newest_copy:
                out.append(Finding(False, "copy", where, f"its copy in {url} was deleted"))
            else:
                out.append(Finding(True, "copy", where, f"not yet copied to {url}"))
            continue
        try:
            held = tier.get(copies[seq])
        except (TierError, OSError) as exc:
            out.append(Finding(False, "copy", where, f"its copy cannot be read: {exc}"))
            continue
        if seq not in local:
            out.append(Finding(False, "copy", where, f"missing here; its copy in {url} holds it"))
        elif held != local[seq]:
            out.append(
                Finding(False, "copy", where, f"differs from its copy in {url}: one was replaced")
            )
    if copies and all(f.ok for f in out):
        out.append(Finding(True, "copy", url, f"{len(copies)} digest copies match"))
    return out


def chain_heads(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for cam, num in store.index.cameras():
        head = store.index.chain_head(num)
        if head is not None:
            out[cam] = {"seq": head.seq, "link": head.link}
    return out


class Finding(NamedTuple):
    ok: bool
    what: str  # "record" | "digest" | "coverage"
    where: str  # "record #12", "digest #3 (2026-12-03T10:00 .. 11:00)"
    detail: str


class AuditReport(NamedTuple):
    records: int
    digests: int
    uncovered: int  # records after the last digest
    findings: list[Finding]
    pruned: int = 0  # records the log's own retention removed (their hashes still signed)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)


def verify(
    store: Store, keys: dict[str, Any] | None = None, key_pem: bytes | None = None
) -> AuditReport:
    """Check every record against the digests and every digest against its predecessor and
    its signature. ``keys``: key id -> public key (default: the store's key ring, current
    and retired audit keys); ``key_pem``: check every digest against this key instead."""
    if key_pem is not None:
        given = load_public_pem(key_pem, "--key")
        known: dict[str, Any] | None = None
    else:
        given = None
        known = keys if keys is not None else audit_keys(store)
    records = dict(store.index.audit_items(1))
    digests = store.index.audit_digests()

    def key_for(kid: str) -> Any:
        return given if given is not None else (known or {}).get(kid)

    pruned, _bases = pruned_state(records.items(), signed_hashes(digests, key_for), key_for)
    gone_by_retention = 0
    findings: list[Finding] = []
    add = findings.append
    chain = GENESIS
    prev_raw: bytes | None = None
    prev: dict[str, Any] | None = None
    covered = 0
    for dseq, raw in digests:
        try:
            d = json.loads(raw)
            sig = base64.b64decode(d["signature"])
            body = {k: v for k, v in d.items() if k != "signature"}
            hashes = base64.b64decode(d["hashes"])
        except (ValueError, KeyError, TypeError) as exc:
            add(Finding(False, "digest", f"digest #{dseq}", f"unreadable ({exc})"))
            return AuditReport(len(records), len(digests), 0, findings)
        where = f"digest #{dseq} ({format_time(d['from_ns'])} .. {format_time(d['to_ns'])})"
        expected_seq = prev["seq"] + 1 if prev else 1
        if d["seq"] != dseq or dseq != expected_seq:
            add(Finding(False, "digest", where, f"digest #{expected_seq} is missing"))
        if d["prev_digest"] != (hashlib.sha256(prev_raw).hexdigest() if prev_raw else ""):
            add(Finding(False, "digest", where, "does not follow the digest before it: that one "
                        "was replaced or removed"))  # fmt: skip
        key = given if given is not None else (known or {}).get(d.get("key_id", ""))
        if key is None:
            add(
                Finding(
                    False, "digest", where, f"signed by {d.get('key_id')}, not a known audit key"
                )
            )
        elif not verify_ed25519(key, sig, canonical_json(body)):
            if given is not None and d.get("key_id") != key_id_of(given):
                what = f"signed by {d.get('key_id')}, not by the key given ({key_id_of(given)})"
            else:
                what = "signature does not verify: the digest was edited"
            add(Finding(False, "digest", where, what))
        want_first = prev["last_seq"] + 1 if prev else 1
        if d["first_seq"] != want_first:
            add(Finding(False, "digest", where, f"starts at record #{d['first_seq']}, not "
                        f"#{want_first}"))  # fmt: skip
        n = d["last_seq"] - d["first_seq"] + 1
        if len(hashes) != 32 * n:
            add(Finding(False, "digest", where, "its record hashes do not match its range"))
            n = min(n, len(hashes) // 32)
        bad = 0
        for i in range(n):
            seq = d["first_seq"] + i
            h_signed = hashes[32 * i : 32 * i + 32]
            raw_rec = records.get(seq)
            h_now = hashlib.sha256(raw_rec).digest() if raw_rec is not None else _ABSENT
            chain = _link(chain, h_signed)
            if h_now == h_signed:
                continue
            if raw_rec is None and seq in pruned:
                gone_by_retention += 1  # its hash was signed; the log's retention removed it
                continue
            bad += 1
            if raw_rec is None:
                what = "deleted (its digest holds its hash)"
            elif h_signed == _ABSENT:
                what = "inserted after its digest was signed"
            else:
                moved = [s for s in range(d["first_seq"], d["first_seq"] + n)
                         if s != seq and records.get(s) is not None
                         and hashlib.sha256(records[s]).digest() == h_signed]  # fmt: skip
                what = (f"holds record #{moved[0]}'s content: records reordered" if moved
                        else "edited after its digest was signed")  # fmt: skip
            add(Finding(False, "record", f"record #{seq}", what))
        if chain.hex() != d["chain"]:
            add(Finding(False, "digest", where, "its chain does not follow from the digests "
                        "before it"))  # fmt: skip
            chain = bytes.fromhex(d["chain"])
        if not bad:
            add(Finding(True, "digest", where, f"records #{d['first_seq']}..#{d['last_seq']} "
                        f"({n}) as signed by {d.get('key_id')}"))  # fmt: skip
        covered = max(covered, d["last_seq"])
        prev_raw, prev = raw, d
    extra = sorted(s for s in records if s > covered)
    nxt = covered + 1
    for s in extra:
        if s != nxt:
            add(Finding(False, "record", f"record #{nxt}", "missing (after the last digest)"))
        nxt = s + 1
    if not digests and records:
        add(Finding(False, "coverage", "audit log", "no digest yet: nothing proves the records"))
    findings.extend(_counter_findings(store, records, digests, covered))
    findings.extend(verify_copies(store))
    return AuditReport(len(records), len(digests), len(extra), findings, gone_by_retention)


def _counter_findings(
    store: Store, records: dict[int, bytes], digests: list[tuple[int, bytes]], covered: int
) -> list[Finding]:
    """What the counters say of the log's end, which no digest covers yet: a record's or a
    digest's number is given in the same write as it, so numbers given but not found were
    removed, and records at or past the next number were put in by hand. Every store's log
    begins with a record (``audit_start``) when the store is first opened, so an empty log
    was wiped. (Whoever can rewrite the counters too is caught by the digests' copies in
    the object store, ``verify_copies``.)"""
    out: list[Finding] = []
    next_rec, next_dig = store.index.audit_counters()
    last = max([*records, covered], default=0)
    if next_rec is None:
        if not records and not digests:
            out.append(Finding(False, "coverage", "audit log", "empty, and its counter gone: "
                               "a store's log begins when the store is first opened, so this "
                               "one was wiped"))  # fmt: skip
        elif records:
            out.append(Finding(False, "coverage", "audit log", "its counter is gone"))
    else:
        if next_rec - 1 > last:
            out.append(Finding(False, "record", f"records #{last + 1}..#{next_rec - 1}",
                               "missing: numbers given, records gone (the log's end was cut "
                               "off)"))  # fmt: skip
        beyond = sorted(s for s in records if s >= next_rec)
        if beyond:
            out.append(Finding(False, "record", f"record #{beyond[0]}", "put in by hand: past "
                               f"the last number given (#{next_rec - 1})"))  # fmt: skip
        if not records and not digests:
            out.append(Finding(False, "coverage", "audit log", "empty: it was wiped"))
    newest = digests[-1][0] if digests else 0
    if next_dig is not None and next_dig - 1 > newest:
        out.append(Finding(False, "digest", f"digest #{newest + 1}..#{next_dig - 1}",
                           "missing: the newest digests were removed"))  # fmt: skip
    return out
