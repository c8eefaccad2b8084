"""Tiering: move sealed segments older than the hot age to an object store, keeping one index.

Per segment (docs/design/lifecycle.md U1-U4): U1 upload the whole file with its SHA-256,
verified by the store and again by reading the object's trailer back; U2 one synced batch
points the segment row at the object, marks the local file as garbage and audits; U3 the
local file is removed (D2-D3). A crash before U2 leaves the local copy indexed (a rerun
uploads again, idempotently); after U2 the verified object is indexed and the next open
removes the local file. Never a local delete without a verified upload.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from vstore import format as fmt
from vstore import layout
from vstore.errors import TierError, VstoreError
from vstore.index import Batch, SegmentRow
from vstore.tier.base import BlobTier, ByteRange


@dataclass
class TierResult:
    planned: int = 0
    tiered: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped_leased: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "tiered": self.tiered,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 2),
            "skipped_leased": self.skipped_leased,
            "errors": self.errors,
        }


def plan_tiering(
    store: Any, older_than_ns: int, cameras: Iterable[str] | None = None
) -> list[SegmentRow]:
    """Sealed local segments that ended at least older_than_ns ago, oldest first."""
    cutoff = store.clock.wall_ns() - older_than_ns
    wanted = set(cameras) if cameras is not None else None
    out = []
    for cam, num in store.index.cameras():
        if wanted is not None and cam not in wanted:
            continue
        out.extend(
            r
            for r in store.index.segments(num, end_ns=cutoff)
            if r.state == "sealed" and r.location == "local" and r.end_ns <= cutoff
        )
    return sorted(out, key=lambda r: r.start_ns)


def tier_segment(
    store: Any, tier: BlobTier, row: SegmentRow, camera: str, by: str = "tiering"
) -> int:
    """U1-U3 for one segment; returns the bytes moved."""
    from vstore.segment_reader import SegmentReader
    from vstore.tier.local import file_sha256_b64

    key = layout.object_key("", camera, row.start_ns, row.segment_id)
    path = store.layout.path(row.path)
    # Only verified footage leaves the disk: every chunk CRC and the content hash must match
    # the index before the upload (the object-level SHA-256 then covers the transfer).
    with SegmentReader.open(path) as rd:
        rd.verify()
        if rd.trailer().sha256.hex() != row.sha256:
            raise TierError(f"{row.path}: content hash differs from the index; not tiered")
    info = tier.put_file(key, path, file_sha256_b64(path))  # U1 (the store checks it too)
    if info.size_bytes != row.size_bytes:
        raise TierError(f"{tier.url}/{key}: size {info.size_bytes} != {row.size_bytes}")
    trailer = fmt.unpack_trailer(
        tier.get(key, ByteRange(row.size_bytes - fmt.TRAILER_BYTES, fmt.TRAILER_BYTES))
    )
    if trailer.sha256.hex() != row.sha256:
        raise TierError(f"{tier.url}/{key}: trailer hash differs from the index")
    moved = replace(row, location=tier.url, path=key)
    b = Batch()  # U2
    b.put(moved.key(), moved.value())
    b.put(
        layout.garbage_key(row.segment_id),
        layout_json({"path": row.path, "camera": camera, "start_ns": row.start_ns}),
    )
    store.index.audit(
        "tier",
        by,
        {
            "camera": camera,
            "segment_id": row.segment_id,
            "to": f"{tier.url}/{key}",
            "bytes": row.size_bytes,
            "sha256": row.sha256,
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)
    from vstore.retention import _remove_marked

    _remove_marked(store, row.segment_id, row.path)  # U3
    return row.size_bytes


def run_tiering(
    store: Any,
    tier: BlobTier,
    older_than_ns: int,
    *,
    cameras: Iterable[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TierResult:
    if store.read_only:
        raise VstoreError("tiering needs the store opened for writing")
    names = {num: cam for cam, num in store.index.cameras()}
    rows = plan_tiering(store, older_than_ns, cameras)
    res = TierResult(planned=len(rows))
    if dry_run:
        res.bytes = sum(r.size_bytes for r in rows)
        return res
    from vstore.retention import finish_garbage

    finish_garbage(store)
    leased = store.leased_segments()
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        if row.segment_id in leased:
            res.skipped_leased += 1
            continue
        res.bytes += tier_segment(store, tier, row, names[row.camera_num])
        res.tiered += 1
        if progress is not None:
            progress(i + 1, len(rows))
    res.seconds = time.perf_counter() - t0
    return res


def layout_json(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d, separators=(",", ":")).encode()


@dataclass
class RebuildResult:
    objects: int = 0
    indexed: int = 0
    already: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "indexed": self.indexed,
            "already_indexed": self.already,
            "chunks": self.chunks,
            "problems": self.problems,
        }


def rebuild_index_from_tier(
    store: Any, tier: BlobTier, progress: Callable[[int, int], None] | None = None
) -> RebuildResult:
    """Index every segment object of a tier from the objects alone (their headers, footers and
    trailers, read with ranged GETs): a replaced node, or a second one, serves clips from S3."""
    from vstore.index import ChunkRow
    from vstore.layout import parse_segment_name
    from vstore.segment_reader import SegmentReader, TierSource

    out = RebuildResult()
    objs = [o for o in tier.list_prefix("") if o.key.endswith(layout.SEGMENT_SUFFIX)]
    out.objects = len(objs)
    max_id = 0
    for i, obj in enumerate(objs):
        parsed = parse_segment_name(obj.key.rsplit("/", 1)[-1])
        if parsed is None:
            out.problems.append(f"{obj.key}: not a segment name")
            continue
        start_ns, seg_id = parsed
        max_id = max(max_id, seg_id)
        try:
            with SegmentReader(TierSource(tier, obj.key, obj.size_bytes), obj.key) as rd:
                meta, entries, trailer = rd.meta, rd.directory(), rd.trailer()
        except VstoreError as exc:
            out.problems.append(f"{obj.key}: {exc}")
            continue
        cam = store.index.camera_num(meta.camera, create=True)
        key = layout.segment_key(cam, start_ns, seg_id)
        if store.index.get(key) is not None:
            out.already += 1
            continue
        row = SegmentRow(
            cam,
            seg_id,
            start_ns,
            entries[-1].end_ns,
            "sealed",
            tier.url,
            obj.key,
            obj.size_bytes,
            trailer.sha256.hex(),
            len(entries),
            sum(e.packet_count for e in entries),
            tuple(t.codec for t in meta.tracks),
        )
        b = Batch()
        b.put(row.key(), row.value())
        for e in entries:
            c = ChunkRow.from_entry(cam, seg_id, e)
            b.put(c.key(), c.value())
        store.index.audit(
            "rebuild_index",
            "rebuild",
            {"camera": meta.camera, "segment_id": seg_id, "from": f"{tier.url}/{obj.key}"},
            store.clock.wall_ns(),
            batch=b,
        )
        store.index.commit(b, sync=False)
        out.indexed += 1
        out.chunks += len(entries)
        if progress is not None:
            progress(i + 1, len(objs))
    # New segments must not reuse ids that objects already carry.
    store.index.reserve_segment_ids(max_id)
    return out
