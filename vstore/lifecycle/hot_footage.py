"""Footage not tiered yet, from the nodes that recorded it: each node's card in the bucket
(where its API answers), what a node lists of a camera's own segments in a range (catalog
entries; the segment being written included, up to its last durable chunk), and the bucket
reader's part: asking the bucket's nodes for the rest of a camera's range, with the
reader's token, and indexing what they hold beside what the catalog lists.

A card is the bucket's word, and whoever may write the bucket could name any URL in one: the
reader sends its token only to the nodes it names itself (VSTORE_NODES: origins, or a
domain for its https hosts), and never over plain HTTP beyond loopback. A node answers
only for cameras the token may see (another's is a 404, audited there as any other
request) and records each listing; a node that does not answer in time, refuses the
token, or lists what is not its own is named in the reader's notes, and its footage is
then missing from what the reader shows, as a gap, never silently."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from vstore.base import layout
from vstore.base.errors import NotFound, TierError, VstoreError
from vstore.base.loopback import is_loopback
from vstore.base.timebase import format_time
from vstore.index.time_index import Batch, SegmentRow
from vstore.lifecycle.gone_nodes import mark_lost, node_cameras, take_back
from vstore.lifecycle.shared_catalog import pack_chunks, put_entry
from vstore.tier.base import BlobTier
from vstore.tier.node_api import NodeTier, camera_segments_url, error_text, node_request

if TYPE_CHECKING:
    from vstore.store.store import Store

CARD_FORMAT = 1
ASK_THREADS = 8  # nodes asked at once
ASK_DEADLINE_S = 30.0  # every node's listing, or it is named as not answering
MAX_CARD_BYTES = 64 << 10
MAX_LISTING_BYTES = 64 << 20


def publish_card(store: Store, tier: BlobTier, api_url: str) -> None:
    """Say in the bucket where this node's API answers (at each start: the address may
    change)."""
    card = {
        "format": CARD_FORMAT,
        "store": store.uuid,
        "api": api_url,
        "node": socket.gethostname(),
        "member": store.config.cluster.member,
        "at_ns": time.time_ns(),
    }
    tier.put_bytes(layout.node_card_key(store.uuid), json.dumps(card).encode())
    take_back(tier, store.uuid)  # (declared gone, and back: what it holds is tiered again)


def read_cards(tier: BlobTier) -> list[dict[str, Any]]:
    """Every node card of the bucket that reads as one (others, and any over MAX_CARD_BYTES,
    are skipped)."""
    return [
        card
        for card in tier.json_objects(layout.NODE_CARD_PREFIX + "/", MAX_CARD_BYTES)
        if card.get("format") == CARD_FORMAT
        and isinstance(card.get("api"), str)
        and isinstance(card.get("store"), str)
        and card["api"]
        and card["store"]
    ]


def local_entries(store: Store, camera: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """This store's own segments of ``camera`` overlapping [start_ns, end_ns), as catalog
    entries (as the shared catalog lists tiered ones); a segment being written, as far as
    its chunks are durable."""
    num = store.index.camera_num(camera)
    if num is None:
        return []
    out = []
    for row in store.index.segments(num, start_ns, end_ns):
        if row.foreign:
            continue
        open_end = None if row.state == "sealed" else max(end_ns, row.start_ns + 1)
        chunks = store.index.segment_chunks(row, open_end)
        if not chunks:
            continue  # (a segment just opened: nothing durable yet)
        d = json.loads(row.value())
        if row.state != "sealed":
            last = chunks[-1]
            d.update(
                end_ns=last.end_ns,
                size_bytes=last.offset + last.length,
                chunk_count=len(chunks),
                packet_count=sum(c.packet_count for c in chunks),
            )
        out.append({"store": store.uuid, "row": d, "chunks": pack_chunks(chunks)})
    return out


def local_segment(store: Store, camera: str, name: str) -> tuple[SegmentRow, int]:
    """One of this store's own segments of ``camera``, by the name its entry gave it, and
    how many of its bytes may be read (a segment being written: those of its durable
    chunks). NotFound for any other."""
    where = layout.parse_node_segment_path(name)
    num = store.index.camera_num(camera)
    if where is None or num is None:
        raise NotFound(f"camera {camera} has no segment {name!r} here")
    key = layout.segment_key(num, *where)
    raw = store.index.get(key)
    if raw is None:
        raise NotFound(f"camera {camera} has no segment {name!r} here")
    row = SegmentRow.decode(key, raw)
    if row.foreign:
        raise NotFound(f"camera {camera}'s segment {name!r} is another store's")
    if row.state == "sealed":
        return row, row.size_bytes
    chunks = store.index.segment_chunks(row, 2**63 - 1)
    return row, (chunks[-1].offset + chunks[-1].length) if chunks else 0


def trusted(api: str, allowed: list[str]) -> bool:
    """Whether the reader trusts ``api`` with its token: named in ``allowed`` (as given in
    VSTORE_NODES) by its origin (``https://node1.city.example:8480``), or under a domain
    given with a leading dot (``.city.example``: its https hosts), and never plain HTTP
    beyond loopback."""
    try:
        parts = urlsplit(api)
        port = parts.port
    except ValueError:
        return False
    if not _safe_for_token(api):
        return False
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    host = (parts.hostname or "").lower()
    for item in (a.strip().lower().rstrip("/") for a in allowed):
        if not item:
            continue
        if item.startswith("."):
            if parts.scheme == "https" and host.endswith(item):
                return True
        elif item == origin or (port is None and item == f"{parts.scheme}://{host}"):
            return True
    return False


def _maybe_held(
    bucket: BlobTier, cards: list[dict[str, Any]], cameras: list[str], start_ns: int, end_ns: int
) -> list[str]:
    """Those of ``cameras`` some node of the bucket may hold untiered footage of in
    [start_ns, end_ns): by what each node last said of its cameras (the untiered spans it
    holds, what it records and since when). All of them when a node with a card said
    nothing yet."""
    said = node_cameras(bucket)
    if any(c["store"] not in said for c in cards):
        return cameras

    def held(cam: str) -> bool:
        for nc in said.values():
            since = nc.since.get(cam)
            if since is not None and since < end_ns:
                return True
            if any(a < end_ns and b > start_ns for a, b in nc.untiered.get(cam, [])):
                return True
        return False

    return [c for c in cameras if held(c)]


def from_nodes(
    cameras: list[str] | None,
    start_ns: int | None,
    end_ns: int | None,
    token: str | None,
    notes: list[str],
    allowed: list[str] | None = None,
    purpose: str = "",
) -> Callable[[Store, BlobTier, set[tuple[str, int]], Callable[[], int]], None]:
    """What a bucket reader adds beside the catalog (shared_catalog.open_bucket's ``more``):
    the footage of ``cameras`` in [start_ns, end_ns) that the bucket's nodes have not tiered
    yet, asked with ``token`` of those nodes whose API the reader trusts (``allowed``,
    see ``trusted``), giving ``purpose`` for their audit. What could not be had goes into
    ``notes``."""

    def more(
        store: Store, bucket: BlobTier, seen: set[tuple[str, int]], next_id: Callable[[], int]
    ) -> None:
        if not cameras:
            return  # (a listing of the bucket's cameras: nothing to fetch or to mark)
        if start_ns is not None and end_ns is not None:  # (asked for a camera's range only)
            fetch(store, bucket, seen, next_id, cameras, start_ns, end_ns)
        # What is still missing after a node declared gone is lost, and said so.
        lo = start_ns if start_ns is not None else -(2**63)
        hi = end_ns if end_ns is not None else time.time_ns()
        notes.extend(mark_lost(store, bucket, cameras, lo, hi))

    def fetch(
        store: Store,
        bucket: BlobTier,
        seen: set[tuple[str, int]],
        next_id: Callable[[], int],
        cameras: list[str],
        start_ns: int,
        end_ns: int,
    ) -> None:
        late = [c for c in cameras if _covered_until(store, c) < end_ns]
        if not late:
            return  # (the catalog covers the range: nothing is left to ask the nodes)
        cards = read_cards(bucket)
        if not cards:
            return
        late = _maybe_held(bucket, cards, late, start_ns, end_ns)
        if not late:
            return  # (no node says it holds any of it: nothing to ask, nothing to say)
        if token is None:
            none = [c for c in late if store.index.camera_num(c) is None]
            ends = [c for c in late if c not in none]
            parts = []
            if ends:
                parts.append(
                    f"the catalog's footage of {', '.join(ends)} ends before the range does"
                )
            if none:
                parts.append(f"the catalog has no footage of {', '.join(none)} in that range")
            said = "; ".join(parts)
            notes.append(
                f"{said}; footage the bucket's {len(cards)} node(s) have not tiered yet is "
                "not included: set VSTORE_TOKEN (and VSTORE_NODES) to fetch it from them"
            )
            return
        asked = [c for c in cards if trusted(c["api"], allowed or [])]
        if len(asked) < len(cards):
            names = ", ".join(sorted(c["api"] for c in cards if c not in asked)[:8])
            notes.append(
                f"{len(cards) - len(asked)} node(s) of the bucket were not asked, their API "
                f"not in VSTORE_NODES (or not https): {names}; footage they have not tiered "
                "is missing (VSTORE_NODES names the nodes trusted with the token: "
                "https://HOST:PORT, or .DOMAIN for its https hosts)"
            )
        asks = [(cam, card) for cam in late for card in asked]
        for (cam, card), (entries, note) in zip(asks, _ask_all(asks, start_ns, end_ns,
                                                              token, purpose), strict=True):  # fmt: skip
            if note:
                notes.append(note)
            fresh = [e for e in entries if _identity(e) not in seen]
            if not fresh:
                continue
            num = store.index.camera_num(cam, create=True)
            assert num is not None
            url = camera_segments_url(card["api"], cam)
            said: set[str] = set()

            def failed(why: str, card: dict[str, Any] = card, said: set[str] = said) -> None:
                if why not in said:  # (a clip planned again reads the same chunk again)
                    said.add(why)
                    notes.append(f"{_where(card)} failed after listing its footage ({why}): "
                                 "what could not be read from it is a gap")  # fmt: skip

            store.use_tier(NodeTier(url, token, failed))
            b = Batch()
            for e in fresh:
                row = e["row"]
                path = layout.node_segment_path(int(row["start_ns"]), int(row["segment_id"]))
                try:
                    put_entry(b, e, num, next_id(), owner=str(e["store"]), location=url,
                              path=path)  # fmt: skip
                except VstoreError as exc:
                    notes.append(f"{_where(card)} listed a segment this vstore cannot read "
                                 f"({exc}); it is left out")  # fmt: skip
                    continue
                seen.add(_identity(e))
            store.index.commit(b, sync=False)

    return more


def _ask_all(
    asks: list[tuple[str, dict[str, Any]]], start_ns: int, end_ns: int, token: str, purpose: str
) -> list[tuple[list[dict[str, Any]], str]]:
    """Every (camera, card) asked at once, each on a daemon thread, all given at most
    ASK_DEADLINE_S: a node that trickles its answer neither holds the reader past that nor
    keeps Ctrl-C from ending it."""
    out: list[tuple[list[dict[str, Any]], str] | None] = [None] * len(asks)
    sem = threading.Semaphore(ASK_THREADS)

    def one(i: int, cam: str, card: dict[str, Any]) -> None:
        with sem:
            try:
                out[i] = _ask(card, cam, start_ns, end_ns, token, purpose)
            except Exception as exc:  # noqa: BLE001 (one node's failure is a note, not the end)
                out[i] = ([], f"{_where(card)}: {exc}")

    threads = [threading.Thread(target=one, args=(i, cam, card), daemon=True)
               for i, (cam, card) in enumerate(asks)]  # fmt: skip
    for t in threads:
        t.start()
    deadline = time.monotonic() + ASK_DEADLINE_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [
        r if r is not None
        else ([], (f"{_where(card)} did not answer within {ASK_DEADLINE_S:g} s: footage "
                   "it has not tiered is missing"))
        for r, (_cam, card) in zip(out, asks, strict=True)
    ]  # fmt: skip


def _safe_for_token(api: str) -> bool:
    """Whether a bearer token may go to ``api`` at all: over HTTPS, or plain HTTP on loopback
    (a node serves plain HTTP beyond loopback only behind a TLS proxy, whose URL is https)."""
    try:
        parts = urlsplit(api)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and bool(host) and is_loopback(host)


def _where(card: dict[str, Any]) -> str:
    return f"node {card.get('node') or card['store']} ({card['api']})"


def _identity(entry: dict[str, Any]) -> tuple[str, int]:
    return str(entry["store"]), int(entry["row"]["segment_id"])


def _covered_until(store: Store, camera: str) -> int:
    """The end of the camera's last indexed footage (its start of time when none)."""
    num = store.index.camera_num(camera)
    if num is None:
        return -(2**63)
    last = None
    for last in store.index.segments(num):  # noqa: B007 (the newest is the last)
        pass
    return last.end_ns if last is not None else -(2**63)


def _ask(
    card: dict[str, Any], camera: str, start_ns: int, end_ns: int, token: str, purpose: str
) -> tuple[list[dict[str, Any]], str]:
    """(entries, note) of one node for one camera's range: only entries of the card's own
    store, each checked to read as one."""
    where = _where(card)
    query = f"from={quote(format_time(start_ns))}&to={quote(format_time(end_ns))}"
    if purpose:
        query += f"&purpose={quote(purpose)}"
    url = f"{camera_segments_url(card['api'], camera)}?{query}"
    try:
        status, body = node_request(url, token, max_bytes=MAX_LISTING_BYTES)
    except TierError as exc:
        return [], f"{where} did not answer ({exc}): footage it has not tiered is missing"
    if status == 404:
        return [], ""  # (it has none of that camera's footage, or the token may not see it)
    if status != 200:
        return [], (
            f"{where} answered {status} ({error_text(body)}): footage it has not tiered is missing"
        )
    try:
        listed = json.loads(body)["segments"]
        if not isinstance(listed, list):
            raise TypeError("segments is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        return [], f"{where} sent a listing this vstore cannot read ({exc})"
    entries, bad = [], 0
    for e in listed:
        try:
            row = e["row"]
            ok = (
                e["store"] == card["store"]
                and isinstance(e["chunks"], str)
                and 0 <= int(row["start_ns"]) < 2**63
                and 0 < int(row["segment_id"]) < 2**64
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if ok:
            entries.append(e)
        else:
            bad += 1
    note = (
        f"{where} listed {bad} segment(s) not of its own store or not readable; they are left out"
        if bad
        else ""
    )
    return entries, note
