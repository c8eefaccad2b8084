"""Rewriting a segment as a copy of fewer of its bytes: a held segment trimmed to its held
chunks, a file cut short written again whole (lifecycle P1-P4): verify, copy, re-point,
delete."""

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
            # Provenance: the copy's header names the original's content hash and the CRCs
            # of the chunks it keeps (verbatim, so the same), earlier trims' first.
            origin = {
                "segment_id": seg.segment_id,
                "sha256": row.sha256,
                "size_bytes": row.size_bytes,
                "chunks": [[e.start_ns, e.crc32] for e in to_copy],
            }
            new_row, b = _write_copy(store, rd, row, seg.camera, list(to_copy), origin, where)
    kept_starts = {e.start_ns for e, k in zip(entries, keep, strict=True) if k}
    for e in entries:
        c = current.get(e.start_ns)
        if c is not None and c.segment_id == seg.segment_id and e.start_ns not in kept_starts:
            b.delete(c.key())
    freed = row.size_bytes - (new_row.size_bytes if new_row is not None else 0)
    rec = _retire(
        store,
        b,
        row,
        seg.camera,
        new_row,
        len(kept_starts),
        freed,
        "retention (held chunks kept)",
        by,
    )
    store.index.commit(b, sync=True)
    remove_marked(store, seg.segment_id, rec)
    return freed


def rewrite_cut_short(
    store: Store, row: SegmentRow, camera: str, chunks: list[ChunkRow], by: str
) -> SegmentRow | None:
    """A sealed file cut short, its lost end recorded as damage (R6), written again whole so
    that it can tier (an object without a footer could not be read back alone): every byte
    the disk still holds, in order (its indexed ``chunks``, each checked against its CRC,
    and what lies between and after them verbatim: damaged runs, the start of the chunk it
    lost) under a new header naming the original's indexed hash and size, and a footer
    listing those chunks. As a trim's copy (P1-P3), it takes the next link of the camera's
    chain and the original goes, audited as a trim. Returns the copy's row; None when the
    segment changed while it was copied (a retention run, a repair): the copy is discarded
    and the segment left as it is now."""
    with SegmentReader.open(store.layout.path(row.path)) as rd:
        size = rd.src.size()
        parts: list[fmt.DirEntry | tuple[int, int]] = []
        pos = rd.header_len
        for c in sorted(chunks, key=lambda c: c.offset):
            if c.offset > pos:
                parts.append((pos, c.offset - pos))
            parts.append(
                fmt.DirEntry(
                    c.offset, c.length, c.start_ns, c.end_ns, c.packet_count, c.crc32, c.flags
                )
            )
            pos = c.offset + c.length
        if size > pos:
            parts.append((pos, size - pos))
        origin = {
            "segment_id": row.segment_id,
            "sha256": row.sha256,  # (of the whole file it was: the index's word now)
            "size_bytes": row.size_bytes,
            "cut_short_bytes": size,
            "chunks": [[c.start_ns, c.crc32] for c in chunks],
        }
        new_row, b = _write_copy(store, rd, row, camera, parts, origin, row.path)
    # P2 only over the segment as it was copied (retention runs, trims and repairs change
    # segments under retention_lock).
    with store.retention_lock:
        now = store.index.get(row.key())
        unchanged = (
            now is not None
            and SegmentRow.decode(row.key(), now) == row
            and store.index.segment_chunks(row) == chunks
        )
        if unchanged:
            reason = "cut short (its lost end recorded as damage): written again whole to tier"
            rec = _retire(store, b, row, camera, new_row, len(chunks), 0, reason, by)
            store.index.commit(b, sync=True)
    if not unchanged:
        _discard_copy(store, new_row.segment_id, new_row.path)
        return None
    remove_marked(store, row.segment_id, rec)
    return current_row(store, new_row)  # (with the chain link its commit gave it)


def _retire(
    store: Store,
    b: Batch,
    row: SegmentRow,
    camera: str,
    new_row: SegmentRow | None,
    kept_chunks: int,
    freed_bytes: int,
    reason: str,
    by: str,
) -> dict[str, Any]:
    """P2's rest, into ``b``: the original's row out, a garbage mark for its file and the
    ``trim`` audit record, which accounts for its chain link. Returns the mark's record."""
    b.delete(row.key())
    rec = garbage_record(row.path, camera, row.start_ns, row.end_ns, row.location, row.damaged)
    b.put(layout.garbage_key(row.segment_id), rec)
    store.index.audit(
        "trim",
        by,
        {
            "camera": camera,
            "segment_id": row.segment_id,
            "from": format_time(row.start_ns),
            "to": format_time(row.end_ns),
            "kept_chunks": kept_chunks,
            "kept_segment_id": new_row.segment_id if new_row is not None else None,
            "kept_sha256": new_row.sha256 if new_row is not None else None,
            "bytes": freed_bytes,
            "reason": reason,
            "sha256": row.sha256,
            "verified": True,
            **removal_detail(camera, row),
        },
        store.clock.wall_ns(),
        batch=b,
    )
    return loads_dict(rec)


def _write_copy(
    store: Store,
    rd: SegmentReader,
    row: SegmentRow,
    camera: str,
    parts: list[fmt.DirEntry | tuple[int, int]],
    origin: dict[str, Any],
    where: str,
) -> tuple[SegmentRow, Batch]:
    """P1: a new local segment of ``parts`` of ``rd``'s bytes, in order: chunks (directory
    entries, each checked against its CRC as it is copied) and (offset, length) runs of
    other bytes kept verbatim, under a header naming ``origin`` after the chains of earlier
    trims. It is read back and verified. Returns its row and the batch that indexes it (its
    chunk rows re-pointed at it, its open marker cleared); a copy that does not verify goes
    with its marker, and CorruptSegment is raised."""
    chunks = [p for p in parts if isinstance(p, fmt.DirEntry)]
    new_id = store.index.new_segment_id()
    relpath = store.layout.segment_relpath(camera, chunks[0].start_ns, new_id)
    marker = Batch()
    marker.put_open_marker(new_id, camera, row.camera_num, relpath, chunks[0].start_ns)
    store.index.commit(marker, sync=True)
    chain = [*rd.meta.extra.get("trimmed_from", []), origin]
    meta = rd.meta._replace(
        segment_id=new_id,
        created_ns=store.clock.wall_ns(),
        extra={**rd.meta.extra, "trimmed_from": chain},
    )
    sf = SegmentFile(store.fs, store.layout.root, relpath, meta)
    try:
        moved = []
        for part in parts:
            if isinstance(part, fmt.DirEntry):
                raw = rd.src.read(part.offset, part.length)
                # The bytes copied are checked themselves, whatever was read before.
                parse_chunk(raw, part.crc32, f"{where}@{part.offset}: ")
                moved.append(sf.append_raw_chunk(raw, part))
            else:
                sf.append_bytes(rd.src.read(*part))
        size, sha = sf.seal(moved[-1].end_ns)
        with SegmentReader.open(store.layout.path(relpath)) as copy:
            copy.verify()
            if [(e.start_ns, e.crc32) for e in copy.directory()] != [
                (e.start_ns, e.crc32) for e in chunks
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
        row.camera_num,
        new_id,
        moved,
        location="local",
        path=relpath,
        size_bytes=size,
        sha256=sha,
        codecs=row.codecs,
    )
    b = Batch()
    b.put_sealed(new_row)
    b.delete(layout.open_key(new_id))
    for e in moved:
        c = ChunkRow.from_entry(row.camera_num, new_id, e)
        b.put(c.key(), c.value())
    return new_row, b


def current_row(store: Store, seg: SegmentInfo | SegmentRow) -> SegmentRow | None:
    """The index's row of a planned (or earlier read) segment now (None: already gone)."""
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
