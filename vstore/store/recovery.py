"""Crash recovery (lifecycle R1-R6): seal every segment a crashed writer left open, keep
every whole chunk and record damaged bytes aloud, quarantine files nothing can be read from,
and finish deletions a crash interrupted."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from vstore.base import layout
from vstore.base.errors import CorruptSegment
from vstore.index import gop_table
from vstore.index.time_index import Batch, ChunkRow, Event, SegmentRow
from vstore.segment import format as fmt
from vstore.segment.reader import FileSource, SegmentReader, scan_chunks
from vstore.segment.seal import seal_file
from vstore.store.garbage import finish_garbage
from vstore.store.store import Store


class RecoveryReport:
    """What opening the store repaired (counts grow while recovery runs)."""

    __slots__ = (
        "damaged_chunks",
        "discarded_segments",
        "messages",
        "recovered_chunks",
        "recovered_segments",
        "truncated_bytes",
    )

    def __init__(self) -> None:
        self.recovered_segments = 0
        self.recovered_chunks = 0
        self.discarded_segments = 0
        self.truncated_bytes = 0
        self.damaged_chunks = 0  # whose bytes did not verify: kept in the file, unindexed
        self.messages: list[str] = []

    def __repr__(self) -> str:
        return f"RecoveryReport({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


def recover(
    st: Store, open_segments: bool = True, only_segments: Collection[int] | None = None
) -> RecoveryReport:
    """Seal every segment a crashed writer left open (lifecycle R1-R4), or only the segments
    ``only_segments``, or none when ``open_segments`` is false (they are live writers' own);
    finish interrupted deletions."""
    rep = RecoveryReport()
    for seg_id, marker in st.index.open_segments() if open_segments else ():
        if only_segments is None or seg_id in only_segments:
            _recover_one(st, seg_id, marker, rep)
    # Deletions a crash interrupted (lifecycle D4): the rows are gone, finish the files.
    n = finish_garbage(st, local_only=True)
    if n:
        rep.messages.append(f"finished {n} interrupted deletion(s)")
    return rep


def _recover_one(st: Store, seg_id: int, marker: dict[str, Any], rep: RecoveryReport) -> None:
    cam_num = int(marker["camera_num"])
    start_ns = int(marker["start_ns"])
    relpath = marker["path"]
    path = st.layout.path(relpath)
    seg_key = layout.segment_key(cam_num, start_ns, seg_id)
    raw_row = st.index.get(seg_key)
    b = Batch()
    b.delete(layout.open_key(seg_id))
    # Indexed chunk rows of this segment (they point at fsynced bytes, W2).
    indexed = [r for r in st.index.chunks(cam_num, start_ns, 2**63 - 1) if r.segment_id == seg_id]
    scan = None
    if path.exists():
        try:
            with FileSource(path) as src:
                scan = scan_chunks(src, resync=True)
        except CorruptSegment as exc:
            rep.messages.append(f"{relpath}: header unreadable ({exc})")
    if scan is None or not scan.entries:
        if indexed:
            # Indexed (fsynced) chunks that cannot be read now: the header or every chunk
            # rotted. R5: keep every byte, out of the segment tree and the index.
            why = (
                "its header is unreadable (its chunks cannot be read without it)"
                if scan is None
                else "no chunk verifies"
            )
            _quarantine_file(st, b, cam_num, seg_id, seg_key, relpath, indexed, rep, why)
            return
        if raw_row is not None:
            b.delete(seg_key)
        st.index.commit(b, sync=True)
        if path.exists():
            st.fs.unlink(path)
            st.fs.fsync_dir(path.parent)
        rep.discarded_segments += 1
        rep.messages.append(f"{relpath}: no whole chunk, discarded")
        return
    # R2: cut only the torn tail (after the last whole chunk); a damaged run between
    # whole chunks stays in the file, out of the directory (R5), and the chunks after it
    # are kept. Bytes an index row names are never cut, even after the last chunk that
    # verifies: they were acknowledged, and are kept as a damaged run. Then seal from
    # the file's own bytes.
    damaged = list(scan.damaged)
    keep_end = scan.valid_end
    if not scan.sealed and indexed:
        named_end = min(scan.file_size, max(r.offset + r.length for r in indexed))
        if named_end > keep_end:
            damaged.append((keep_end, named_end - keep_end))
            keep_end = named_end
    fd = st.fs.open_rw(path)
    try:
        if scan.sealed:
            pass  # crashed between seal and index commit: the file is already complete
        else:
            rep.truncated_bytes += scan.file_size - keep_end
            st.fs.truncate(fd, keep_end)
            seal_file(st.fs, fd, path, scan.entries, keep_end)
    finally:
        st.fs.close(fd)
    size = path.stat().st_size
    with SegmentReader.open(path) as rd:
        sha = rd.trailer().sha256.hex()
        entries = rd.directory()
    if scan.sealed:
        # Its footer was written before the crash; only chunks that verify now are
        # indexed (I1): a rotted one is recorded as damage, like any other.
        good = {(e.offset, e.crc32) for e in scan.entries}
        found = {off for off, _n in damaged}
        damaged.extend(
            (e.offset, e.length)
            for e in entries
            if (e.offset, e.crc32) not in good and e.offset not in found
        )
        entries = [e for e in entries if (e.offset, e.crc32) in good]
    known = {r.start_ns for r in indexed}
    kept = {(e.start_ns, e.offset, e.crc32) for e in entries}
    starts = {e.start_ns for e in entries}
    displaced: dict[int, set[int]] = {}
    for e in entries:
        if e.start_ns not in known:
            rep.recovered_chunks += 1
        h = ChunkRow.from_entry(cam_num, seg_id, e)
        # (a chunk this segment's rows already name needs no look)
        was = None if e.start_ns in known else st.index.get(h.key())
        owner = ChunkRow.decode(h.key(), was).segment_id if was is not None else seg_id
        if owner != seg_id:
            displaced.setdefault(owner, set()).add(e.start_ns)
        b.put(h.key(), h.value())
    # Chunk rows taken over from another segment (a trim's copy, recovered before the trim
    # switched the index to it) leave that segment: its GOP table must say so too.
    for other, gone in displaced.items():
        _drop_from_gop_table(st, b, cam_num, other, gone)
    # Rows whose bytes did not verify (R5): the index never points at bad bytes (I1).
    lost = [r for r in indexed if (r.start_ns, r.offset, r.crc32) not in kept]
    for r in lost:
        if r.start_ns not in starts:
            b.delete(r.key())
    if damaged or lost:
        _record_damage(st, b, cam_num, seg_id, relpath, damaged, lost, entries, rep)
    row = SegmentRow.sealed(
        cam_num,
        seg_id,
        entries,
        start_ns=start_ns,
        location="local",
        path=relpath,
        size_bytes=size,
        sha256=sha,
        codecs=tuple(t.codec for t in scan.meta.tracks),
        # A sealed file's content hash covers its rotted chunks too: their damage is
        # known (R6), as `check --repair` would record it.
        damaged=tuple(sorted(set(damaged))) if scan.sealed else (),
    )
    b.put_sealed(row)
    st.index.commit(b, sync=True)
    rep.recovered_segments += 1
    rep.messages.append(f"{relpath}: recovered {len(entries)} chunk(s)")


def _drop_from_gop_table(st: Store, b: Batch, cam_num: int, seg_id: int, gone: set[int]) -> None:
    row = next((r for r in st.index.segments(cam_num) if r.segment_id == seg_id), None)
    if row is None or not row.gops:
        return
    left = [
        c
        for c in st.index.chunks(cam_num, row.start_ns, row.end_ns)
        if c.segment_id == seg_id and c.start_ns not in gone
    ]
    b.put(row.key(), row._replace(gops=gop_table.encode(left)).value())


def _quarantine_file(
    st: Store,
    b: Batch,
    cam_num: int,
    seg_id: int,
    seg_key: bytes,
    relpath: str,
    indexed: list[ChunkRow],
    rep: RecoveryReport,
    why: str,
) -> None:
    """R5 for a file with no chunk that can be read: it moves whole to STORE/quarantine/
    (same relative path), its rows leave the index, and the event and audit record
    name what it held."""

    path = st.layout.path(relpath)
    dest = st.layout.quarantine_path(relpath)
    if path.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        st.fs.fsync_dir(dest.parent)
        st.fs.fsync_dir(path.parent)
    for r in indexed:
        b.delete(r.key())
    b.delete(seg_key)
    detail = {
        "segment_id": seg_id,
        "path": relpath,
        "moved_to": str(dest.relative_to(st.root)),
        "reason": why,
        "indexed_chunks": [
            {"start_ns": r.start_ns, "end_ns": r.end_ns, "crc32": r.crc32} for r in indexed
        ],
    }
    ev = Event(cam_num, indexed[0].start_ns, seg_id & 0xFFFFFFFF, "damaged", detail)
    b.put(ev.key(), ev.value())
    st.index.audit("quarantine", "recovery", detail, st.clock.wall_ns(), batch=b)
    st.index.commit(b, sync=True)
    rep.damaged_chunks += len(indexed)
    rep.messages.append(
        f"{relpath}: {why} ({len(indexed)} indexed chunk(s)); the file is kept whole in "
        f"{detail['moved_to']}, out of the index"
    )


def quarantine_chunks(st: Store, row: SegmentRow, bad: list[fmt.DirEntry]) -> RecoveryReport:
    """R6: chunks of a sealed segment that no longer verify leave the index (I1); their
    bytes stay in the file, the segment row lists them, and a ``damaged`` event and a
    ``quarantine`` audit record say what they held. The rest stays served."""
    rep = RecoveryReport()
    bad_offsets = {e.offset for e in bad}
    rows = st.index.segment_chunks(row)
    lost = [c for c in rows if c.offset in bad_offsets]
    b = Batch()
    for c in lost:
        b.delete(c.key())
    known = set(row.damaged)
    runs = [(e.offset, e.length) for e in bad if (e.offset, e.length) not in known]
    if not runs:
        return rep
    moved = row._replace(damaged=tuple(sorted(known | set(runs))))
    b.put(moved.key(), moved.value())
    _record_damage(st, b, row.camera_num, row.segment_id, row.path, runs, lost, [], rep)
    st.index.commit(b, sync=True)
    return rep


def _record_damage(
    st: Store,
    b: Batch,
    cam_num: int,
    seg_id: int,
    relpath: str,
    damaged: list[tuple[int, int]],
    lost: list[ChunkRow],
    entries: list[fmt.DirEntry],
    rep: RecoveryReport,
) -> None:
    """R5: a damaged run found while sealing is kept in the file and said aloud: a
    ``damaged`` event on the camera's timeline (where a clip shows a gap) and an audit
    record naming the bytes and the indexed chunks they held. Indexed chunks whose
    bytes are gone altogether (a file cut short) are recorded the same way."""

    beyond = [r for r in lost if not any(o <= r.offset < o + n for o, n in damaged)]
    if beyond:  # bytes no longer in the file at all: a run from the first to the last
        first = min(r.offset for r in beyond)
        damaged = [*damaged, (first, max(r.offset + r.length for r in beyond) - first)]
    for off, length in damaged:
        inside = [r for r in lost if off <= r.offset < off + length]
        before = [e for e in entries if e.offset < off]
        at_ns = inside[0].start_ns if inside else before[-1].end_ns if before else 0
        detail = {
            "segment_id": seg_id,
            "path": relpath,
            "offset": off,
            "length": length,
            "in_file": off + length <= st.layout.path(relpath).stat().st_size,
            "indexed_chunks": [
                {"start_ns": r.start_ns, "end_ns": r.end_ns, "crc32": r.crc32} for r in inside
            ],
        }
        ev = Event(cam_num, at_ns, off & 0xFFFFFFFF, "damaged", detail)
        b.put(ev.key(), ev.value())
        st.index.audit("quarantine", "recovery", detail, st.clock.wall_ns(), batch=b)
        rep.damaged_chunks += max(1, len(inside))
        rep.messages.append(
            f"{relpath}: {length} damaged byte(s) at offset {off} kept in the file, out "
            f"of the index ({len(inside)} indexed chunk(s)); the chunks after them are kept"
        )
