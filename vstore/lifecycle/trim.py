"""Trimming a held segment to its held chunks: verify, copy, re-point, delete
(lifecycle P1-P4)."""

from __future__ import annotations

from typing import Any

from vstore.base import layout
from vstore.base.errors import CorruptSegment, VstoreError
from vstore.base.jsonio import loads_dict
from vstore.base.timebase import format_time
from vstore.index.segment_chain import removal_detail
from vstore.index.time_index import Batch, ChunkRow, SegmentRow
from vstore.lifecycle.retention_plan import SegmentInfo
from vstore.segment import format as fmt
from vstore.segment.reader import SegmentReader, parse_chunk
from vstore.segment.writer import SegmentFile
from vstore.store.garbage import garbage_record, remove_marked, unlink_durably
from vstore.store.holds import Hold
from vstore.store.store import Store


def trim_segment(store: Store, seg: SegmentInfo, holds: list[Hold], by: str) -> int:
    """Keep only the chunks of a segment that active holds cover (with the chunks back to
    their GOP start); delete the rest. Returns the bytes freed.

    Protocol (lifecycle P1-P4): P4 first: the original is verified whole (every chunk
    against its directory CRC, the content against the trailer's SHA-256, which must be the
    index's) and each kept chunk against its index row; on any mismatch CorruptSegment is
    raised and nothing changes. P1 an open marker for the copy, then the copy is written and
    fsynced (chunk bytes verbatim, a new header naming the original's hash and chunk CRCs,
    footer and hash) and read back and verified; P2 one synced batch indexes the copy,
    re-points the held chunk rows, drops the old rows, marks the old file as garbage and
    audits; P3 the old file is removed. After a crash in P1, recovery seals and indexes the
    copy (R4) and the next run finds the held chunks already copied.
    """
    row = current_row(store, seg)
    if row is None:
        return 0
    row_key = row.key()
    mine = [h for h in holds if h.active and h.camera == seg.camera]
    where = f"{row.location}/{row.path}" if row.location != "local" else row.path
    # A tiered segment is trimmed through ranged reads; its held chunks become a new local
    # segment (which tiers again in its time) and the old object is deleted.
    with store.segment_reader(row) as rd:
        entries = rd.directory()
        keep = _kept_chunks(entries, mine)
        if all(keep):
            return 0
        # Damaged bytes kept in the file by recovery (R5) lie between the directory's chunks;
        # where a hold covers their time, the file is kept whole: they are held evidence too.
        prev_end, prev_ns = rd.header_len, row.start_ns
        footer = rd.trailer().footer_offset
        for e in [*entries, None]:
            at = e.offset if e is not None else footer
            until_ns = e.start_ns if e is not None else 2**63 - 1
            if at > prev_end and any(h.from_ns < until_ns and h.to_ns > prev_ns for h in mine):
                raise CorruptSegment(
                    f"{where}: damaged bytes a hold covers lie between its chunks "
                    f"(from {format_time(prev_ns)})"
                )
            if e is not None:
                prev_end, prev_ns = e.offset + e.length, e.end_ns
        # P4: what is kept must be what was recorded, or it would leave here certified.
        if rd.trailer().sha256.hex() != row.sha256:
            raise CorruptSegment(f"{where}: its trailer's hash is not the one indexed")
        rd.verify()
        current = {
            c.start_ns: c for c in store.index.chunks(seg.camera_num, row.start_ns, row.end_ns)
        }
        # Held chunks whose rows already point elsewhere were copied by an earlier attempt.
        to_copy = [
            e
            for e, k in zip(entries, keep, strict=True)
            if k
            and current.get(e.start_ns) is not None
            and current[e.start_ns].segment_id == seg.segment_id
        ]
        for e in to_copy:
            c = current[e.start_ns]
            if (c.offset, c.length, c.crc32) != (e.offset, e.length, e.crc32):
                raise CorruptSegment(
                    f"{where}: the chunk at {format_time(e.start_ns)} differs from its index row"
                )
        b = Batch()
        new_row = None
        if to_copy:
            new_id = store.index.new_segment_id()
            relpath = store.layout.segment_relpath(seg.camera, to_copy[0].start_ns, new_id)
            marker = Batch()
            marker.put_open_marker(new_id, seg.camera, seg.camera_num, relpath, to_copy[0].start_ns)
            store.index.commit(marker, sync=True)
            # Provenance: the copy's header names the original's content hash and the CRCs
            # of the chunks it keeps (verbatim, so the same), earlier trims' first.
            origin = {
                "segment_id": seg.segment_id,
                "sha256": row.sha256,
                "size_bytes": row.size_bytes,
                "chunks": [[e.start_ns, e.crc32] for e in to_copy],
            }
            chain = [*rd.meta.extra.get("trimmed_from", []), origin]
            meta = rd.meta._replace(
                segment_id=new_id,
                created_ns=store.clock.wall_ns(),
                extra={**rd.meta.extra, "trimmed_from": chain},
            )
            sf = SegmentFile(store.fs, store.layout.root, relpath, meta)
            try:
                moved = []
                for e in to_copy:
                    raw = rd.src.read(e.offset, e.length)
                    # The bytes copied are checked themselves (verify() read them before).
                    parse_chunk(raw, current[e.start_ns].crc32, f"{where}@{e.offset}: ")
                    moved.append(sf.append_raw_chunk(raw, e))
                size, sha = sf.seal(moved[-1].end_ns)
                with SegmentReader.open(store.layout.path(relpath)) as copy:
                    copy.verify()
                    if [(e.start_ns, e.crc32) for e in copy.directory()] != [
                        (e.start_ns, e.crc32) for e in to_copy
                    ]:
                        raise CorruptSegment(f"{relpath}: the copy does not hold the kept chunks")
            except CorruptSegment:
                # A copy that does not verify is ours, not evidence: it goes, with its marker
                # (recovery would otherwise index it), and the original stays whole.
                sf.abandon()
                _discard_copy(store, new_id, relpath)
                raise
            except VstoreError:
                sf.abandon()
                raise
            new_row = SegmentRow.sealed(
                seg.camera_num,
                new_id,
                moved,
                location="local",
                path=relpath,
                size_bytes=size,
                sha256=sha,
                codecs=row.codecs,
            )
            b.put_sealed(new_row)
            b.delete(layout.open_key(new_id))
            for e in moved:
                c = ChunkRow.from_entry(seg.camera_num, new_id, e)
                b.put(c.key(), c.value())
    kept_starts = {e.start_ns for e, k in zip(entries, keep, strict=True) if k}
    for e in entries:
        c = current.get(e.start_ns)
        if c is not None and c.segment_id == seg.segment_id and e.start_ns not in kept_starts:
            b.delete(c.key())
    b.delete(row_key)
    rec = garbage_record(row.path, seg.camera, seg.start_ns, row.end_ns, row.location)
    b.put(layout.garbage_key(seg.segment_id), rec)
    freed = row.size_bytes - (new_row.size_bytes if new_row is not None else 0)
    store.index.audit(
        "trim",
        by,
        {
            "camera": seg.camera,
            "segment_id": seg.segment_id,
            "from": format_time(row.start_ns),
            "to": format_time(row.end_ns),
            "kept_chunks": len(kept_starts),
            "kept_segment_id": new_row.segment_id if new_row is not None else None,
            "kept_sha256": new_row.sha256 if new_row is not None else None,
            "bytes": freed,
            "reason": "retention (held chunks kept)",
            "sha256": row.sha256,
            "verified": True,
            **removal_detail(seg.camera, row),
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)
    remove_marked(store, seg.segment_id, loads_dict(rec))
    return freed


def current_row(store: Store, seg: SegmentInfo) -> SegmentRow | None:
    """The index's row of a planned segment now (None: already gone)."""
    key = layout.segment_key(seg.camera_num, seg.start_ns, seg.segment_id)
    raw = store.index.get(key)
    return None if raw is None else SegmentRow.decode(key, raw)


def _kept_chunks(entries: list[Any], holds: list[Hold]) -> list[bool]:
    """Which chunks of a segment a trim keeps: those its camera's holds overlap, with the
    chunks back to their GOP's start (a kept continuation cannot decode without them)."""
    keep = [any(e.start_ns < h.to_ns and e.end_ns > h.from_ns for h in holds) for e in entries]
    for i in range(len(entries) - 1, 0, -1):
        if keep[i] and entries[i].flags & fmt.CHUNK_CONTINUATION:
            keep[i - 1] = True
    return keep


def trim_gain_bytes(store: Store, seg: SegmentInfo, holds: list[Hold]) -> int:
    """The bytes a trim of ``seg`` would free (its chunks no hold keeps), from its footer."""
    row = current_row(store, seg)
    if row is None:
        return 0
    mine = [h for h in holds if h.active and h.camera == seg.camera]
    try:
        with store.segment_reader(row) as rd:
            entries = rd.directory()
    except VstoreError:
        return 0  # unreadable: the trim will refuse it and say why
    keep = _kept_chunks(entries, mine)
    return sum(e.length for e, k in zip(entries, keep, strict=True) if not k)


def _discard_copy(store: Store, segment_id: int, relpath: str) -> None:
    unlink_durably(store, store.layout.path(relpath))
    b = Batch()
    b.delete(layout.open_key(segment_id))
    store.index.commit(b, sync=True)
