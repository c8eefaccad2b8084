"""Footage not tiered yet, from the nodes that recorded it: each node's card in the bucket
(where its API answers), what a node lists of a camera's own segments in a range (catalog
entries; the segment being written included, up to its last durable chunk), and the bucket
reader's part: asking every node of the bucket for a camera's range, with the reader's
token, and indexing what they hold beside what the catalog lists.

A node is asked with the reader's own bearer token, so it answers only for cameras that
token may see (another's is a 404, audited there as any other request), and records the
access. A node that does not answer, or refuses the token, is named in the reader's notes:
its footage is then missing from what the reader shows, as a gap, never silently. The token
goes only to an https URL or to plain HTTP on loopback: a card is the bucket's word, and
whoever may write the bucket could otherwise have readers send their tokens anywhere in
clear."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from vstore.base import layout
from vstore.base.errors import NotFound, TierError, VstoreError
from vstore.base.timebase import format_time
from vstore.index.time_index import Batch, SegmentRow
from vstore.lifecycle.shared_catalog import pack_chunks, put_entry
from vstore.tier.base import BlobTier
from vstore.tier.node_api import NodeTier, camera_segments_url, error_text, node_request

if TYPE_CHECKING:
    from vstore.store.store import Store

CARD_FORMAT = 1
ASK_THREADS = 8  # nodes asked at once


def publish_card(store: Store, tier: BlobTier, api_url: str) -> None:
    """Say in the bucket where this node's API answers (at each start: the address may
    change)."""
    card = {
        "format": CARD_FORMAT,
        "store": store.uuid,
        "api": api_url,
        "node": socket.gethostname(),
        "at_ns": time.time_ns(),
    }
    tier.put_bytes(layout.node_card_key(store.uuid), json.dumps(card).encode())


def read_cards(tier: BlobTier) -> list[dict[str, Any]]:
    """Every node card of the bucket that reads as one (others are skipped)."""
    out = []
    for info in tier.list_prefix(layout.NODE_CARD_PREFIX + "/"):
        try:
            card = json.loads(tier.get(info.key))
            if card.get("format") == CARD_FORMAT and card["api"] and card["store"]:
                out.append(card)
        except (VstoreError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


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
        hi = row.end_ns if row.state == "sealed" else max(end_ns, row.start_ns + 1)
        chunks = [
            c for c in store.index.chunks(num, row.start_ns, hi) if c.segment_id == row.segment_id
        ]
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
    chunks = [c for c in store.index.chunks(num, row.start_ns, 2**63 - 1)
              if c.segment_id == row.segment_id]  # fmt: skip
    return row, (chunks[-1].offset + chunks[-1].length) if chunks else 0


def from_nodes(
    cameras: list[str] | None,
    start_ns: int | None,
    end_ns: int | None,
    token: str | None,
    notes: list[str],
) -> Callable[[Store, BlobTier, set[tuple[str, int]], Callable[[], int]], None]:
    """What a bucket reader adds beside the catalog (shared_catalog.open_bucket's ``more``):
    the footage of ``cameras`` in [start_ns, end_ns) that the bucket's nodes have not tiered
    yet, asked of each with ``token``. What could not be had goes into ``notes``."""

    def more(
        store: Store, bucket: BlobTier, seen: set[tuple[str, int]], next_id: Callable[[], int]
    ) -> None:
        if not cameras or start_ns is None or end_ns is None:
            return  # (footage not tiered yet is asked for a camera's range only)
        cards = read_cards(bucket)
        if not cards:
            return
        if token is None:
            late = [c for c in cameras if _covered_until(store, c) < end_ns]
            if late:
                notes.append(
                    f"the catalog's footage of {', '.join(late)} ends before the range does; "
                    f"footage the bucket's {len(cards)} node(s) have not tiered yet is not "
                    "included: set VSTORE_TOKEN to a token of theirs to fetch it"
                )
            return
        asks = [(cam, card) for cam in cameras for card in cards]
        with ThreadPoolExecutor(min(ASK_THREADS, len(asks))) as pool:
            answers = list(pool.map(lambda a: _ask(a[1], a[0], start_ns, end_ns, token), asks))
        for (cam, card), (entries, note) in zip(asks, answers, strict=True):
            if note:
                notes.append(note)
            fresh = [e for e in entries if _identity(e) not in seen]
            if not fresh:
                continue
            num = store.index.camera_num(cam, create=True)
            assert num is not None
            url = camera_segments_url(card["api"], cam)
            store.use_tier(NodeTier(url, token))
            b = Batch()
            for e in fresh:
                row = e["row"]
                path = layout.node_segment_path(int(row["start_ns"]), int(row["segment_id"]))
                put_entry(b, e, num, next_id(), owner=str(e["store"]), location=url, path=path)
                seen.add(_identity(e))
            store.index.commit(b, sync=False)

    return more


def _safe_for_token(api: str) -> bool:
    """Whether a bearer token may go to ``api``: over HTTPS, or plain HTTP on loopback (a
    node serves plain HTTP beyond loopback only behind a TLS proxy, whose URL is https)."""
    parts = urlsplit(api)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


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
    card: dict[str, Any], camera: str, start_ns: int, end_ns: int, token: str
) -> tuple[list[dict[str, Any]], str]:
    """(entries, note) of one node for one camera's range."""
    where = f"node {card.get('node') or card['store']} ({card['api']})"
    if not _safe_for_token(str(card["api"])):
        return [], (
            f"{where} is named in the bucket with plain HTTP beyond this machine: the token "
            'is not sent there (give the node [service] url = "https://...")'
        )
    url = (
        f"{camera_segments_url(card['api'], camera)}?from={quote(format_time(start_ns))}"
        f"&to={quote(format_time(end_ns))}"
    )
    try:
        status, body = node_request(url, token)
    except TierError as exc:
        return [], f"{where} did not answer ({exc}): footage it has not tiered is missing"
    if status == 404:
        return [], ""  # (it has none of that camera's footage, or the token may not see it)
    if status != 200:
        return [], (
            f"{where} answered {status} ({error_text(body)}): footage it has not tiered is missing"
        )
    try:
        doc = json.loads(body)
        entries = [e for e in doc["segments"] if isinstance(e, dict)]
        for e in entries:
            _identity(e)
    except (ValueError, KeyError, TypeError) as exc:
        return [], f"{where} sent a listing this vstore cannot read ({exc})"
    return entries, ""
