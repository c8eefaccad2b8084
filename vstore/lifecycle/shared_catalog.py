"""The shared catalog in the object store: for every camera and hour, one object listing
the segments tiered there with their index rows (segment row and chunk rows), so that any
node, or the CLI given only the bucket, finds and reads any camera's tiered footage with no
index of its own to build and no GET per segment.

Each catalog object is written by the camera's owner only, with conditional writes: read
with its ETag, merged, written back only if nobody wrote it since (``If-Match``; created with
``If-None-Match: *``). It names the owner's fencing epoch and since when it has owned the
camera. A writer whose epoch is below it (a former owner: paused, partitioned, replaced, or
back after a failure) may still list what it recorded before that owner took over, and
nothing after (``Fenced`` says what was refused), so it never overwrites or extends what a
newer owner wrote. A store's own entries are replaced as a whole from its index at each
publish; other stores' entries in the same hour are kept.

What is behind is marked in the index (``P`` rows, written in the same batch as the tiering
or deletion they follow), so a crash between the two leaves the hour to publish again.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstore.base import layout
from vstore.base.errors import NotFound, VstoreError
from vstore.base.jsonio import dumps_compact
from vstore.base.logger import get_logger
from vstore.base.timebase import GAP_TOLERANCE_NS
from vstore.index.time_index import Batch, ChunkRow, Event, SegmentRow
from vstore.segment import format as fmt
from vstore.store.opening import open_store
from vstore.store.store import CameraSummary, Store
from vstore.tier.base import BlobTier
from vstore.tier.factory import open_tier

log = get_logger(__name__)

FORMAT = "vstore-catalog-hour"
VERSION = 1
# An hour's entries the cluster's deleter took out of its list (bucket_retention.py): no
# writer lists them again. An entry it put back (a hold came) says so under RESTORED, and
# its store's writes keep it until the store's index has its row again.
DELETED = "deleted"
RESTORED = "restored"


class Fenced(VstoreError):
    """A newer owner of the camera writes its catalog: this writer's lease is gone, and it
    must not write the camera's shared state again."""


@dataclass
class PublishResult:
    hours: int = 0
    segments: int = 0
    errors: list[str] = field(default_factory=list)
    # (camera_num, hour_ns, tier URL) -> why that hour was not written (in full)
    failed: dict[tuple[int, int, str], str] = field(default_factory=dict)


def pack_chunks(rows: Iterable[ChunkRow]) -> str:
    """Chunk rows as the segment footer's own directory entries (format.DIR_ENTRY)."""
    raw = b"".join(
        fmt.DIR_ENTRY.pack(
            c.offset, c.length, c.start_ns, c.end_ns, c.packet_count, c.crc32, c.flags
        )
        for c in rows
    )
    return base64.b64encode(raw).decode("ascii")


def unpack_chunks(text: str) -> list[fmt.DirEntry]:
    raw = base64.b64decode(text)
    if len(raw) % fmt.DIR_ENTRY.size:
        raise VstoreError("a catalog entry's chunk table is truncated")
    return [fmt.DirEntry(*v) for v in fmt.DIR_ENTRY.iter_unpack(raw)]


def _entries(store: Store, tier_url: str, camera_num: int, hour_ns: int) -> list[dict[str, Any]]:
    """This store's own tiered segments of the hour, as catalog entries."""
    out = []
    end = hour_ns + layout.HOUR_NS
    for row in store.index.segments(camera_num, hour_ns, end):
        if not (hour_ns <= row.start_ns < end) or row.state != "sealed":
            continue
        if row.location != tier_url or row.foreign:
            continue
        chunks = store.index.segment_chunks(row)
        out.append(
            {
                "store": store.uuid,
                "row": json.loads(row.value()),
                "chunks": pack_chunks(chunks),
            }
        )
    return out


def _merge(
    doc: dict[str, Any] | None,
    camera: str,
    hour_ns: int,
    store_uuid: str,
    mine: list[dict[str, Any]],
    owner: dict[str, Any],
) -> dict[str, Any]:
    doc = doc or {}
    have = {str(e["row"]["path"]) for e in mine}
    # An object is listed once, by the store whose row owns it: one this store adopted
    # (rebuild-index --adopt) leaves its writer's entry for this store's.
    theirs = [
        e
        for e in doc.get("segments", [])
        if e["row"]["path"] not in have and (e.get("store") != store_uuid or e.get(RESTORED))
    ]
    segs = sorted(theirs + mine, key=lambda e: (e["row"]["start_ns"], e["store"]))
    out = {
        "format": FORMAT,
        "version": VERSION,
        "camera": camera,
        "hour_ns": hour_ns,
        "owner": owner,
        "segments": segs,
    }
    for k in ("deleter", DELETED):  # (the deleter's, kept as it wrote them)
        if k in doc:
            out[k] = doc[k]
    return out


def deleted_paths(doc: dict[str, Any] | None) -> set[str]:
    """The object paths an hour's DELETED list names (the deleter's: never listed again)."""
    return {str(e["row"]["path"]) for e in (doc or {}).get(DELETED, [])}


def read_doc(tier: BlobTier, key: str) -> dict[str, Any] | None:
    got = tier.get_versioned(key)
    return parse_doc(tier, key, got[0] if got is not None else None)


def parse_doc(
    tier: BlobTier, key: str, data: bytes | None, newest: int = VERSION
) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise VstoreError(f"{tier.url}/{key}: not a catalog object ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VstoreError(f"{tier.url}/{key}: not a catalog object")
    if doc.get("version", 0) > newest:
        raise VstoreError(f"{tier.url}/{key}: catalog version {doc['version']} is newer")
    return doc


def publish_hour(
    store: Store,
    tier: BlobTier,
    camera: str,
    hour_ns: int,
    *,
    epoch: int = 0,
    since_ns: int = 0,
    member: str = "",
) -> int:
    """Write one catalog hour of ``camera`` from this store's index, as the owner of fencing
    epoch ``epoch`` since ``since_ns`` (0, 0: no cluster, or a camera this store does not
    own now); the number of this store's segments it lists. When a newer owner wrote the
    hour, only this store's segments that end by the time that owner took over are listed,
    and Fenced (raised after the write) says how many were refused; this store's own earlier
    claim, still named in the hour after the camera moved on, fences nothing."""
    num = store.index.camera_num(camera)
    mine = _entries(store, tier.url, num, hour_ns) if num is not None else []
    key = layout.catalog_object_key(camera, hour_ns)
    me = {"store": store.uuid, "member": member, "epoch": epoch, "since_ns": since_ns}
    last: dict[str, Any] = {}

    def change(data: bytes | None) -> bytes:
        doc = parse_doc(tier, key, data)
        prior = (doc or {}).get("owner") or {}
        gone = deleted_paths(doc)
        alive = [e for e in mine if e["row"]["path"] not in gone]  # (never listed again)
        listed, owner = alive, me
        if int(prior.get("epoch", 0)) > epoch:
            owner = prior
            if prior.get("store") != store.uuid:
                until = int(prior.get("since_ns", 0))
                listed = [e for e in alive if int(e["row"]["end_ns"]) <= until]
            # (else the newer claim is this store's own, from before the camera moved on:
            # all it lists it recorded as an owner, and its recording was fenced by its lease)
        merged = _merge(doc, camera, hour_ns, store.uuid, listed, owner)
        # (what the write that landed was)
        last.update(listed=listed, alive=alive, prior=prior, doc=merged)
        return dumps_compact(merged)

    tier.update(key, change)
    summarize(tier, camera, hour_ns, last["doc"])
    listed, alive, prior = last["listed"], last["alive"], last["prior"]
    if len(listed) < len(alive):
        raise Fenced(
            f"camera {camera}: {len(alive) - len(listed)} segment(s) of {key} were recorded "
            f"after member {prior.get('member') or prior.get('store')!r} took it over "
            f"(epoch {prior.get('epoch')} > {epoch}): a stale owner's, not listed"
        )
    return len(listed)


def _hour_stats(doc: dict[str, Any]) -> dict[str, int] | None:
    """What a camera's summary keeps of one catalog hour (None: the hour lists nothing)."""
    rows = sorted(
        (int(e["row"]["start_ns"]), int(e["row"]["end_ns"]), int(e["row"]["size_bytes"]))
        for e in doc.get("segments", [])
    )
    if not rows:
        return None
    return {
        "segments": len(rows),
        "bytes": sum(r[2] for r in rows),
        "first_ns": rows[0][0],
        "last_ns": max(r[1] for r in rows),
        "last_end_ns": rows[-1][1],  # (the end of its last segment by start: gaps across hours)
        "recorded_ns": sum(r[1] - r[0] for r in rows),
        "gaps": sum(1 for a, b in itertools.pairwise(rows) if b[0] - a[1] > GAP_TOLERANCE_NS),
    }


# A camera's summary keeps a line per catalog hour. Written as a table (SUMMARY_VERSION 2):
# HOUR_COLUMNS, each as little-endian int64 differences from the hour before (the first from
# 0), column after column, zstd-compressed, in base64 under "hour_table": a year of lines is
# a few kB read in microseconds, where the JSON objects of version 1 ("hours", still read)
# cost a reader of a city's summaries most of its time.
SUMMARY_VERSION = 2
HOUR_COLUMNS = (
    "hour_ns", "segments", "bytes", "first_ns", "last_ns", "last_end_ns", "recorded_ns", "gaps",
)  # fmt: skip


class HourTable:
    """A summary's lines, hours ascending: read from either form, written as the table."""

    def __init__(self, rows: Any = None) -> None:
        import numpy as np  # (loaded with the first summary, never by a clip)

        self.rows = np.zeros((0, len(HOUR_COLUMNS)), np.int64) if rows is None else rows

    @classmethod
    def of(cls, summary: dict[str, Any] | None) -> HourTable:
        import numpy as np

        summary = summary or {}
        blob = summary.get("hour_table")
        if isinstance(blob, str):
            import zstandard

            try:
                raw = zstandard.ZstdDecompressor().decompress(base64.b64decode(blob))
                cols = np.frombuffer(raw, "<i8").reshape(len(HOUR_COLUMNS), -1)
            except (ValueError, zstandard.ZstdError) as exc:
                raise VstoreError(f"a catalog summary's hour table is damaged ({exc})") from None
            return cls(np.cumsum(cols, axis=1, dtype=np.int64).T.copy())
        lines = sorted(summary.get("hours", {}).items(), key=lambda kv: int(kv[0]))
        rows = [[int(h), *(int(line[c]) for c in HOUR_COLUMNS[1:])] for h, line in lines]
        return cls(np.array(rows, np.int64).reshape(-1, len(HOUR_COLUMNS)))

    def __len__(self) -> int:
        return len(self.rows)

    def hours(self) -> list[int]:
        return [int(h) for h in self.rows[:, 0]]

    def _find(self, hour_ns: int) -> tuple[int, bool]:
        i = int(self.rows[:, 0].searchsorted(hour_ns))
        return i, i < len(self.rows) and int(self.rows[i, 0]) == hour_ns

    def line(self, hour_ns: int) -> dict[str, int] | None:
        i, there = self._find(hour_ns)
        return self._line(self.rows[i]) if there else None

    def lines(self) -> list[dict[str, int]]:
        return [self._line(r) for r in self.rows]

    @staticmethod
    def _line(row: Any) -> dict[str, int]:
        return {c: int(v) for c, v in zip(HOUR_COLUMNS[1:], row[1:], strict=True)}

    def set(self, hour_ns: int, stats: dict[str, int] | None) -> bool:
        """Set (None: remove) an hour's line; whether that changed it."""
        import numpy as np

        i, there = self._find(hour_ns)
        if stats is None:
            if there:
                self.rows = np.delete(self.rows, i, axis=0)
            return there
        row = np.array([hour_ns, *(int(stats[c]) for c in HOUR_COLUMNS[1:])], np.int64)
        if there:
            if (self.rows[i] == row).all():
                return False
            self.rows[i] = row
        else:
            self.rows = np.insert(self.rows, i, row, axis=0)
        return True

    def store(self, summary: dict[str, Any]) -> None:
        """Write the table into ``summary`` (as version 2: the old form goes)."""
        import numpy as np
        import zstandard

        cols = np.diff(self.rows.T, axis=1, prepend=0).astype("<i8")
        summary.pop("hours", None)
        summary["version"] = SUMMARY_VERSION
        summary["hour_columns"] = list(HOUR_COLUMNS)
        summary["hour_table"] = base64.b64encode(
            zstandard.ZstdCompressor(level=3).compress(cols.tobytes())
        ).decode("ascii")


def read_summary(tier: BlobTier, camera: str) -> dict[str, Any] | None:
    """A camera's catalog summary (either form), or None."""
    got = tier.get_versioned(layout.catalog_summary_key(camera))
    return parse_summary(tier, camera, got[0] if got is not None else None)


def parse_summary(tier: BlobTier, camera: str, data: bytes | None) -> dict[str, Any] | None:
    return parse_doc(tier, layout.catalog_summary_key(camera), data, newest=SUMMARY_VERSION)


def new_summary(camera: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": SUMMARY_VERSION, "camera": camera}


def summarize(
    tier: BlobTier,
    camera: str,
    hour_ns: int,
    doc: dict[str, Any],
    also: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Set the hour's line of the camera's summary from the hour as written (each write of
    an hour writes its line again, so a line a crash left stale is mended by the next).
    ``also(summary)`` changes more of it in the same write (True: it changed something)."""
    key = layout.catalog_summary_key(camera)
    stats = _hour_stats(doc)

    def change(data: bytes | None) -> bytes | None:
        summary = parse_summary(tier, camera, data) or new_summary(camera)
        table = HourTable.of(summary)
        more = also(summary) if also is not None else False
        if not table.set(hour_ns, stats) and not more and "hours" not in summary:
            return None  # (as it is)
        table.store(summary)
        return dumps_compact(summary)

    tier.update(key, change)


def bucket_cameras(url: str) -> list[CameraSummary]:
    """Every camera of the bucket at ``url`` with what `vstore ls` shows of it, from each
    camera's summary (one listing of the catalog's cameras and one read per camera, not
    one per hour). A camera whose hours were written before summaries were is summed from
    its hours."""
    tier = open_tier(url)
    cams = sorted(tier.list_dirs(layout.CATALOG_OBJECT_PREFIX + "/"))
    if not cams:
        raise NotFound(_no_catalog(tier.url))

    def one(cam: str) -> CameraSummary:
        doc = read_summary(tier, cam)
        lines = HourTable.of(doc).lines()
        if doc is None:  # (no summary yet: each hour read once)
            lines = [
                s for _c, _h, k in hours(tier, cam) if (s := _hour_stats(read_doc(tier, k) or {}))
            ]
        return _camera_line(cam, lines)

    with ThreadPoolExecutor(16) as pool:
        return [c for c in pool.map(one, cams) if c.segments]


def _no_catalog(url: str) -> str:
    return (
        f"no vstore catalog under {url}: nothing was tiered there yet, or the prefix is not "
        "the one the stores tier to (their [tier] url)"
    )


def _camera_line(camera: str, hours_: list[dict[str, int]]) -> CameraSummary:
    gaps = sum(h["gaps"] for h in hours_)
    gaps += sum(
        1
        for a, b in itertools.pairwise(hours_)
        if b["first_ns"] - a["last_end_ns"] > GAP_TOLERANCE_NS
    )
    size = sum(h["bytes"] for h in hours_)
    return CameraSummary(
        camera,
        hours_[0]["first_ns"] if hours_ else None,
        max((h["last_ns"] for h in hours_), default=None),
        size,
        sum(h["segments"] for h in hours_),
        0,
        gaps,
        sum(h["recorded_ns"] for h in hours_),
        size,
    )


def pending(store: Store) -> list[tuple[int, int, str]]:
    """(camera_num, hour_ns, tier URL) of every catalog hour this store has yet to write."""
    return [(cam, hour, url) for cam, hour, url, _mark in _marks(store)]


def _marks(store: Store) -> list[tuple[int, int, str, bytes]]:
    out = []
    for key, value in store.index.scan(layout.CATALOG_PENDING_PREFIX):
        cam, hour = layout.decode_time_key(key)
        mark = bytes(value)
        out.append((cam, hour, mark.decode().split("\n", 1)[0], mark))
    return out


def publish_pending(
    store: Store,
    owner_of: Callable[[str], tuple[int, int]] | None = None,
    member: str = "",
) -> PublishResult:
    """Write every catalog hour this store has marked, then clear each mark (a mark set
    again meanwhile stays, as its value is compared). ``owner_of(camera)``: this member's
    (epoch, since_ns) for the camera (default: the store's ``catalog_epoch``; none: 0, 0).
    Segments a newer owner's hour refuses are reported, and not tried again."""
    res = PublishResult()
    owner_of = owner_of or store.catalog_epoch
    member = member or store.config.cluster.member
    names = {num: cam for cam, num in store.index.cameras()}
    for num, hour, url, mark in _marks(store):
        cam = names.get(num)
        if cam is None:
            continue
        key = layout.catalog_pending_key(num, hour)
        epoch, since_ns = owner_of(cam) if owner_of else (0, 0)
        try:
            res.segments += publish_hour(
                store, store.tier(url), cam, hour, epoch=epoch, since_ns=since_ns, member=member
            )
        except Fenced as exc:
            res.errors.append(str(exc))  # (written as far as allowed: the mark is done)
            res.failed[(num, hour, url)] = str(exc)
            log.warning("shared catalog: %s", exc)
        except VstoreError as exc:
            res.errors.append(str(exc))
            res.failed[(num, hour, url)] = str(exc)
            log.warning("shared catalog: %s (written again at the next run)", exc)
            continue
        if store.index.get(key) == mark:  # (marked again meanwhile: written again next time)
            b = Batch()
            b.delete(key)
            store.index.commit(b, sync=False)
        res.hours += 1
    return res


def catalog_problems(store: Store) -> list[tuple[int, int, str, str]]:
    """(camera_num, hour_ns, tier URL, what differs) of every catalog hour that does not list
    exactly this store's tiered segments of that hour, and is not marked to be written."""
    marked = {(cam, hour) for cam, hour, _url, _mark in _marks(store)}
    want: dict[tuple[int, int, str], set[tuple[int, int, str]]] = {}
    names = dict(store.index.cameras())
    for num in names.values():
        for row in store.index.segments(num):
            if row.state == "sealed" and row.location != "local" and not row.foreign:
                group = (num, layout.catalog_hour_ns(row.start_ns), row.location)
                want.setdefault(group, set()).add((row.start_ns, row.size_bytes, row.sha256))
    # Hours that list this store's segments the index no longer has count too.
    for url in {g[2] for g in want}:
        tier = store.tier(url)
        for cam, num in names.items():
            for _cam, hour, _key in hours(tier, cam):
                want.setdefault((num, hour, url), set())
    cams = {num: cam for cam, num in names.items()}
    out = []
    for (num, hour, url), rows in sorted(want.items()):
        if (num, hour) in marked:
            continue
        try:
            doc = read_doc(store.tier(url), layout.catalog_object_key(cams[num], hour))
        except VstoreError as exc:
            out.append((num, hour, url, str(exc)))
            continue
        listed = {
            _identity(e)
            for e in (doc or {}).get("segments", [])
            if e.get("store") == store.uuid and not (e.get(RESTORED) and _identity(e) not in rows)
        }  # (one the deleter put back is taken back into the index by the next retention run)
        owner = (doc or {}).get("owner") or {}
        if owner.get("store") not in (None, store.uuid) and int(owner.get("epoch", 0)) > 0:
            # Another member owns the camera now: it lists what this store recorded before.
            ends = _ends_of(store, num, hour, url)
            rows = {r for r in rows if ends.get(r, 0) <= int(owner.get("since_ns", 0))}
        # What the cluster's deleter took out is the next retention run's to drop from the
        # index (E5); a problem only once its object is gone: then the index points at nothing.
        deleted = {
            _identity(e): e for e in (doc or {}).get(DELETED, []) if e.get("store") == store.uuid
        }
        purged = [r for r in rows if r in deleted and "purged_ns" in deleted[r]]
        if purged:
            what = (
                f"names {len(purged)} segment(s) the cluster's deleter deleted, whose objects "
                "are gone, that the index still has (a retention run drops them)"
            )
            out.append((num, hour, url, what))
        rows = {r for r in rows if r not in deleted}
        if listed != rows:
            missing, extra = len(rows - listed), len(listed - rows)
            what = f"lists {extra} segment(s) the index no longer has and lacks {missing} it has"
            out.append((num, hour, url, what))
    return out


def _identity(entry: dict[str, Any]) -> tuple[int, int, str]:
    row = entry["row"]
    return int(row["start_ns"]), int(row["size_bytes"]), str(row["sha256"])


def _ends_of(store: Store, num: int, hour: int, url: str) -> dict[tuple[int, int, str], int]:
    end = hour + layout.HOUR_NS
    return {
        (r.start_ns, r.size_bytes, r.sha256): r.end_ns
        for r in store.index.segments(num, hour, end)
        if r.location == url and hour <= r.start_ns < end
    }


def mark_hours(store: Store, hours_: Iterable[tuple[int, int, str]]) -> None:
    """Mark catalog hours to be written again (check --repair)."""
    b = Batch()
    for num, hour, url in hours_:
        b.put_catalog_behind(num, hour, url)
    store.index.commit(b, sync=True)


def hours(tier: BlobTier, camera: str | None = None) -> Iterator[tuple[str, int, str]]:
    """(camera, hour_ns, key) of the catalog objects (of one camera), in key order."""
    prefix = layout.catalog_camera_prefix(camera) if camera else layout.CATALOG_OBJECT_PREFIX + "/"
    for info in tier.list_prefix(prefix):
        parsed = layout.parse_catalog_object_key(info.key)
        if parsed is not None:
            yield parsed[0], parsed[1], info.key


def index_hour(
    store: Store,
    tier: BlobTier,
    key: str,
    next_id: Callable[[], int],
    seen: set[tuple[str, int]] | None = None,
) -> int:
    """Index one catalog object's segments in ``store`` (a reader's scratch index), each as
    foreign (its writer's to keep or delete) and under a fresh local segment id (ids are
    per store, and a camera's hours may come from several); each one's (store, its own
    segment id) goes into ``seen``. The segments indexed."""
    doc = read_doc(tier, key)
    if doc is None:
        return 0
    cam = store.index.camera_num(str(doc["camera"]), create=True)
    assert cam is not None
    b = Batch()
    n = 0
    for e in doc.get("segments", []):
        try:
            put_entry(b, e, cam, next_id(), owner=str(e["store"]), location=tier.url)
            if seen is not None:
                seen.add((str(e["store"]), int(e["row"]["segment_id"])))
        except (VstoreError, KeyError, TypeError, ValueError) as exc:
            raise VstoreError(f"{tier.url}/{key}: {exc}") from None
        n += 1
    for ev in _deletions(cam, doc.get(DELETED, [])):
        b.put(ev.key(), ev.value())
    store.index.commit(b, sync=False)
    return n


def _deletions(camera_num: int, deleted: list[Any]) -> list[Event]:
    """A ``deleted`` timeline event for each run of an hour's footage that the cluster's
    deleter took out in one pass: a reader sees why the bucket has no footage there (its
    retention), not a bare gap."""
    runs: list[dict[str, Any]] = []
    for e in sorted(deleted, key=lambda e: int(e.get("row", {}).get("start_ns", 0))):
        try:
            a, z = int(e["row"]["start_ns"]), int(e["row"]["end_ns"])
            when = int(e["deleted_ns"])
        except (KeyError, TypeError, ValueError):
            continue  # (not what a deleter wrote)
        last = runs[-1] if runs else None
        if (
            last is not None
            and last["deleted_ns"] == when
            and a - last["to_ns"] <= GAP_TOLERANCE_NS
        ):
            last["to_ns"] = max(last["to_ns"], z)
            continue
        who = e.get("deleter") if isinstance(e.get("deleter"), dict) else {}
        runs.append({"from_ns": a, "to_ns": z, "reason": "retention", "deleted_ns": when,
                     "by": str(who.get("member", ""))})  # fmt: skip
    # (runs are disjoint: their start is key enough, whatever a later pass adds beside them)
    return [Event(camera_num, r["from_ns"], 0, "deleted", r) for r in runs]


def put_entry(b: Batch, entry: dict[str, Any], camera_num: int, segment_id: int,
              **row_fields: Any) -> SegmentRow:  # fmt: skip
    """Put a catalog entry's segment row (as ``segment_id``, ``row_fields`` replacing its
    own) and its chunk rows into ``b``; the row. VstoreError for a damaged entry."""
    try:
        d = {**entry["row"], **row_fields, "segment_id": segment_id}
        row = SegmentRow.decode(layout.segment_key(camera_num, int(d["start_ns"]), segment_id),
                                dumps_compact(d))  # fmt: skip
        entries = unpack_chunks(str(entry["chunks"]))
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise VstoreError(f"a damaged catalog entry ({exc})") from None
    b.put(row.key(), row.value())
    for de in entries:
        c = ChunkRow.from_entry(camera_num, segment_id, de)
        b.put(c.key(), c.value())
    return row


# Ranges of one camera spanning at most this many catalog hours are read by key, not listed.
DIRECT_HOURS = 4

# What a bucket reader adds beside the catalog: (scratch store, bucket, indexed, next id).
MoreFootage = Callable[[Store, BlobTier, set[tuple[str, int]], Callable[[], int]], None]


@contextmanager
def open_bucket(
    url: str,
    cameras: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    more: MoreFootage | None = None,
) -> Iterator[Store]:
    """A read-only view of the tiered footage of the bucket at ``url`` (``s3://BUCKET/PREFIX``)
    from its shared catalog alone: a scratch index of the catalog hours that may hold
    [start_ns, end_ns) of ``cameras`` (all when None), removed on exit. Footage is read from
    the bucket as it is asked for. ``more`` then indexes footage from elsewhere (the nodes'
    not tiered yet: hot_footage.py), given the scratch store, the bucket, the segments
    indexed so far (by their writer and own id) and the id counter."""
    tier = open_tier(url)
    wanted = set(cameras) if cameras is not None else None
    # A segment is filed under the hour it starts in and lasts at most an hour.
    lo = None if start_ns is None else layout.catalog_hour_ns(start_ns) - layout.HOUR_NS
    hi = end_ns
    one = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    if (
        one is not None
        and lo is not None
        and hi is not None
        and hi - lo <= DIRECT_HOURS * layout.HOUR_NS
    ):
        # A short range of one camera: its hours' keys are known, so they are read straight
        # away (a missing one is simply absent), with no listing of the camera's catalog.
        keys = [layout.catalog_object_key(one, h) for h in range(lo, hi, layout.HOUR_NS)]
    else:
        keys = [
            key
            for cam, hour, key in hours(tier, one)
            if (wanted is None or cam in wanted)
            and (lo is None or hour >= lo)
            and (hi is None or hour < hi)
        ]
    scratch = Path(tempfile.mkdtemp(prefix="vstore-bucket-"))
    try:
        (scratch / "vstore.toml").write_text(f"[tier]\nurl = {json.dumps(tier.url)}\n")
        store = open_store(scratch)
        try:
            counter = iter(range(1, 2**62))
            view = store.use_tier(tier)  # (one client: making another costs more than a read)
            seen: set[tuple[str, int]] = set()
            for key in keys:
                index_hour(store, view, key, counter.__next__, seen)
            if more is not None:
                more(store, view, seen, counter.__next__)
            if not keys or any(store.index.camera_num(c) is None for c in wanted or ()):
                # A camera asked for with no footage in the range is still one the bucket
                # knows ("no footage between ...", as a store says), and an unknown one's
                # error names those it does know: every camera of the catalog is listed.
                known = sorted(view.list_dirs(layout.CATALOG_OBJECT_PREFIX + "/"))
                if not known and not store.index.cameras():
                    raise NotFound(_no_catalog(tier.url))
                for cam in known:
                    store.index.camera_num(cam, create=True)
            store.read_only = True  # a view: nothing here may change what it shows
            yield store
        finally:
            store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
