"""Each camera's recording chain: the sealed segments of a camera, in the order they were
sealed, linked by hashes, and the signed head of that chain.

Link ``n`` of a camera is the SHA-256 of its canonical statement (camera, link number,
segment id, start, end, size, the segment's content hash, and link ``n-1``'s hash), so a
segment removed, replaced or edited out of band breaks every link after it. The row of the
segment holds its link number, the hash of the link before it and, when the recording key
was at hand, an Ed25519 signature of its statement (what travels with a tiered object). The
camera's head record (``R`` cam) names the newest link, signed again periodically with the
time of signing. Verification is ``verify_chain``; docs/design/evidence.md has the layout.
"""

import base64
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from vstore.base.jsonio import dumps_compact, loads_dict

FORMAT = "vstore-chain/1"
ZERO_LINK = "00" * 32  # the link "before" a camera's first segment


class LinkSigner(Protocol):
    """What signs links and heads: the store's current ``recording`` key."""

    key_id: str

    def sign(self, data: bytes) -> bytes: ...


# (key id) -> verifies (signature, data); None when the key is not one of the store's.
KeyLookup = Callable[[str], Callable[[bytes, bytes], bool] | None]


class ChainLink(NamedTuple):
    """A sealed segment's place in its camera's chain, as its row stores it."""

    seq: int  # 1 for a camera's first chained segment
    prev: str  # hex SHA-256 of link seq-1 (ZERO_LINK for the first)
    key_id: str = ""  # the recording key that signed the statement ("" when unsigned)
    signature: str = ""  # base64 Ed25519 over statement()

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"seq": self.seq, "prev": self.prev}
        if self.signature:
            d["key_id"] = self.key_id
            d["sig"] = self.signature
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ChainLink":
        return cls(int(d["seq"]), str(d["prev"]), str(d.get("key_id", "")), str(d.get("sig", "")))


def statement(
    camera: str,
    seq: int,
    prev: str,
    segment_id: int,
    start_ns: int,
    end_ns: int,
    size_bytes: int,
    sha256: str,
) -> bytes:
    """The exact bytes a link hashes and signs (canonical JSON: sorted keys, no spaces)."""
    return dumps_compact(
        {
            "format": FORMAT,
            "camera": camera,
            "seq": seq,
            "prev": prev,
            "segment_id": segment_id,
            "start_ns": start_ns,
            "end_ns": end_ns,
            "size_bytes": size_bytes,
            "sha256": sha256,
        },
        sort_keys=True,
    )


def row_statement(camera: str, row: Any, link: ChainLink) -> bytes:
    """The statement of a segment row (index.time_index.SegmentRow) at its link."""
    return statement(
        camera,
        link.seq,
        link.prev,
        row.segment_id,
        row.start_ns,
        row.end_ns,
        row.size_bytes,
        row.sha256,
    )


def link_hash(stmt: bytes) -> str:
    import hashlib  # (on use: a read that checks no chain never loads OpenSSL)

    return hashlib.sha256(stmt).hexdigest()


def signed_link(signer: LinkSigner | None, seq: int, prev: str, stmt: bytes) -> ChainLink:
    if signer is None:
        return ChainLink(seq, prev)
    return ChainLink(seq, prev, signer.key_id, base64.b64encode(signer.sign(stmt)).decode())


class ChainHead(NamedTuple):
    """A camera's newest link, and the signature that vouches for it (and so for every link
    before it) at ``signed_at_ns``."""

    camera: str
    seq: int
    link: str
    signed_at_ns: int = 0
    key_id: str = ""
    signature: str = ""  # base64 Ed25519 over head_statement(); "" when unsigned

    def head_statement(self) -> bytes:
        return dumps_compact(
            {
                "format": FORMAT,
                "head": True,
                "camera": self.camera,
                "seq": self.seq,
                "link": self.link,
                "signed_at_ns": self.signed_at_ns,
            },
            sort_keys=True,
        )

    def signed(self, signer: LinkSigner | None, at_ns: int) -> "ChainHead":
        if signer is None:
            return self._replace(signed_at_ns=0, key_id="", signature="")
        head = self._replace(signed_at_ns=at_ns, key_id=signer.key_id)
        return head._replace(
            signature=base64.b64encode(signer.sign(head.head_statement())).decode()
        )

    def value(self) -> bytes:
        return dumps_compact(self._asdict(), sort_keys=True)

    @classmethod
    def decode(cls, raw: bytes) -> "ChainHead":
        return cls(**loads_dict(raw))


class ChainReport:
    """What verifying one camera's chain found (filled in as it goes: a plain class, so the
    index's readers need not load the dataclasses module)."""

    __slots__ = (
        "accounted",
        "camera",
        "head_signed_at_ns",
        "links",
        "present",
        "problems",
        "signed_links",
    )

    def __init__(self, camera: str, problems: list[str] | None = None) -> None:
        self.camera = camera
        self.links = 0  # links from 1 to the head
        self.present = 0  # ... whose segment is indexed
        self.accounted = 0  # ... whose segment's removal an audit record accounts for
        self.signed_links = 0
        self.head_signed_at_ns = 0
        self.problems = problems

    def __repr__(self) -> str:
        return f"ChainReport({self.as_json()!r})"

    def as_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "links": self.links,
            "present": self.present,
            "accounted": self.accounted,
            "signed_links": self.signed_links,
            "head_signed_at_ns": self.head_signed_at_ns,
            "problems": self.problems or [],
        }


class Witness(NamedTuple):
    """A camera's head as a signed audit digest recorded it."""

    seq: int
    link: str
    where: str  # "audit digest #7 (2026-12-03T10:00:00+00:00)"


class Removal(NamedTuple):
    """An audit record's account of a chained segment leaving the index (retention, trim)."""

    seq: int
    prev: str
    link: str
    action: str
    audit_seq: int


def verify_chain(
    camera: str,
    rows: Sequence[Any],
    head: ChainHead | None,
    removals: Iterable[Removal],
    keys: KeyLookup,
    witness: Witness | None = None,
    base: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk a camera's chain from link 1 to its head. Each link is a chained row of this
    store, or a removal an audit record accounts for; every link must follow the one before
    it, the head must name the last, and each signature present must verify under one of the
    store's recording keys. The first break of the walk is named; later ones follow from it
    and are not repeated. ``witness``: a link the newest audit digest saw, which the chain
    must still reach, with the same hash. ``base``: (link number, hash) below which the
    audit log's retention folded every link away (all their segments gone): the walk starts
    after it."""
    rep = ChainReport(camera, problems=[])
    problems: list[str] = rep.problems  # type: ignore[assignment]
    by_seq: dict[int, Any] = {}
    for r in rows:
        if r.chain is None:
            continue
        if r.chain.seq in by_seq:
            problems.append(
                f"link #{r.chain.seq} is claimed by segments {by_seq[r.chain.seq].segment_id} "
                f"and {r.segment_id}: a segment was added out of band"
            )
            return rep
        by_seq[r.chain.seq] = r
    gone = {x.seq: x for x in removals}
    top = max([*by_seq, *gone], default=0)
    if head is None:
        rep.links = top
        if top:
            problems.append(f"no chain head, yet {top} link(s) exist: the head was removed")
        return rep
    rep.links = head.seq
    rep.head_signed_at_ns = head.signed_at_ns
    if top > head.seq:
        problems.append(
            f"link #{top} lies past the head (#{head.seq}): a segment was added out of band"
        )
        return rep
    if witness is not None and witness.seq > head.seq:
        problems.append(
            f"the chain ends at link #{head.seq}, yet {witness.where} saw link #{witness.seq}: "
            "its newest segments were removed and an older head put back"
        )
        return rep
    first, prev = (base[0] + 1, base[1]) if base is not None else (1, ZERO_LINK)
    low = [n for n in by_seq if n < first]
    if low:
        problems.append(
            f"link #{min(low)} lies below the chain base (#{first - 1}), whose segments were "
            "all deleted: a segment was added out of band"
        )
        return rep
    rep.accounted += first - 1
    for seq in range(first, head.seq + 1):
        if witness is not None and seq == witness.seq + 1 and prev != witness.link:
            problems.append(
                f"link #{witness.seq} is not the one {witness.where} saw: a segment was "
                "replaced out of band"
            )
            return rep
        row = by_seq.get(seq)
        if row is not None:
            if row.chain.prev != prev:
                problems.append(
                    f"link #{seq} (segment {row.segment_id}) does not follow link #{seq - 1}: "
                    f"the segment before it was changed or replaced out of band"
                )
                return rep
            stmt = row_statement(camera, row, row.chain)
            if row.chain.signature:
                if keys(row.chain.key_id) is None:
                    problems.append(
                        f"link #{seq} (segment {row.segment_id}) is signed by key "
                        f"{row.chain.key_id}, which is not one of the store's recording keys "
                        "(its key ring lost it, or the row was signed elsewhere)"
                    )
                    return rep
                if not _verifies(keys, row.chain.key_id, row.chain.signature, stmt):
                    problems.append(
                        f"link #{seq} (segment {row.segment_id}): its signature does not "
                        "verify: the segment's row was edited after sealing"
                    )
                    return rep
                rep.signed_links += 1
            prev = link_hash(stmt)
            rep.present += 1
            continue
        rm = gone.get(seq)
        if rm is None:
            problems.append(
                f"link #{seq} is missing: its segment left the index with no audit record "
                "of a deletion or trim (removed out of band)"
            )
            return rep
        if rm.prev != prev:
            problems.append(
                f"link #{seq} (removed by {rm.action}, audit record #{rm.audit_seq}) does not "
                f"follow link #{seq - 1}"
            )
            return rep
        prev = rm.link
        rep.accounted += 1
    if witness is not None and witness.seq == head.seq and prev != witness.link:
        problems.append(
            f"link #{witness.seq} is not the one {witness.where} saw: a segment was replaced "
            "out of band"
        )
        return rep
    if head.link != prev:
        problems.append(
            f"the head names link #{head.seq} with another hash: the newest segment was "
            "changed or replaced out of band"
        )
        return rep
    if not head.signature:
        problems.append(f"the head (link #{head.seq}) is not signed")
    elif keys(head.key_id) is None:
        problems.append(
            f"the head (link #{head.seq}) is signed by key {head.key_id}, which is not one of "
            "the store's recording keys"
        )
    elif not _verifies(keys, head.key_id, head.signature, head.head_statement()):
        problems.append(f"the head's signature (link #{head.seq}) does not verify")
    return rep


def _verifies(keys: KeyLookup, key_id: str, signature_b64: str, data: bytes) -> bool:
    check = keys(key_id)
    if check is None:
        return False
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    return check(sig, data)


def removal_detail(camera: str, row: Any) -> dict[str, Any]:
    """What the audit record of a chained segment's deletion or trim says of its link, so
    that the chain is still whole without it (``{}`` for a segment outside any chain)."""
    if row.chain is None:
        return {}
    stmt = row_statement(camera, row, row.chain)
    return {"chain": {"seq": row.chain.seq, "prev": row.chain.prev, "link": link_hash(stmt)}}


def removal_of(audit_seq: int, action: str, detail: dict[str, Any]) -> Removal | None:
    """The chain link an audit record's detail accounts for, if any."""
    c = detail.get("chain")
    if not isinstance(c, dict):
        return None
    try:
        return Removal(int(c["seq"]), str(c["prev"]), str(c["link"]), action, audit_seq)
    except (KeyError, TypeError, ValueError):
        return None


# The object metadata a tiered segment carries its link in (S3 user metadata).
OBJECT_METADATA_KEY = "vstore-chain"


def object_metadata(camera: str, row: Any) -> dict[str, str]:
    """The metadata that makes a tiered segment carry its link and signature: with the
    object's own bytes (segment id, start, end, size, content hash) it is the whole signed
    statement, checkable from the bucket alone."""
    if row.chain is None:
        return {}
    doc = {"camera": camera, **row.chain.as_json()}
    return {OBJECT_METADATA_KEY: dumps_compact(doc, sort_keys=True).decode()}


def link_of_object(metadata: dict[str, str] | None) -> tuple[str, ChainLink] | None:
    """(camera, link) from a tiered segment's metadata; None when it carries none."""
    raw = (metadata or {}).get(OBJECT_METADATA_KEY)
    if not raw:
        return None
    try:
        d = loads_dict(raw)
        return str(d["camera"]), ChainLink.from_json(d)
    except (ValueError, KeyError, TypeError):
        return None
