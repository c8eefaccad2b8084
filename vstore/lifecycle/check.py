"""`vstore check`: verifies the lifecycle invariants between the index and the segment files.

Checks (docs/design/lifecycle.md): C1 every chunk row's bytes exist and match its checksum;
C2 every sealed segment row's file exists with the recorded size and SHA-256; C3 no segment is
left open by a dead writer; C4 no orphan segment files; C5 chunk rows of a camera do not
overlap and start in time order; C6 tiered footage under an active hold also carries an S3
object legal hold where the bucket supports them (H4); C7 no pending deletion (garbage mark)
is of footage indexed again or held where nothing else holds it (D5); C8 no import left
unfinished by a process that is gone (F1-F5); C9 each camera's recording chain is whole from
its first link to its signed head, every missing link accounted for by an audit record of a
deletion or trim (evidence.md); C10 a sealed segment's GOP table is its chunk rows' GOPs;
C11 each shared catalog hour in the object store lists exactly the store's tiered segments
of that hour, or is marked to be written (lifecycle/shared_catalog.py).
``repair`` fixes what it can without deleting
footage: it seals open segments (recovery) and adopts orphan files into the index from their
own bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstore.base import layout
from vstore.base.errors import CorruptSegment, NotFound, TierError, VstoreError
from vstore.base.jsonio import loads_dict
from vstore.base.layout import parse_segment_name
from vstore.base.ratelimit import RateLimiter
from vstore.base.timebase import format_time
from vstore.index import gop_table
from vstore.index.segment_chain import (
    ChainReport,
    Removal,
    Witness,
    link_of_object,
    removal_of,
    verify_chain,
)
from vstore.index.time_index import Batch, ChunkRow, SegmentRow, TimeIndex
from vstore.lifecycle import shared_catalog
from vstore.lifecycle.bucket_retention import catch_up
from vstore.segment import format as fmt
from vstore.segment.reader import FileSource, SegmentReader
from vstore.store import imports
from vstore.store.audit_log import store_pruned_state
from vstore.store.garbage import cancel_mark, mark_conflict
from vstore.store.holds import list_holds
from vstore.store.recovery import quarantine_chunks, recover
from vstore.store.store import Store


@dataclass
class Problem:
    code: str
    path: str
    message: str
    repaired: bool = False


@dataclass
class CheckReport:
    segments: int = 0
    chunks: int = 0
    bytes_verified: int = 0
    problems: list[Problem] = field(default_factory=list)
    chains: list[ChainReport] = field(default_factory=list)

    JSON_EXTRA = ("ok",)

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)


def check_store(
    store: Store,
    *,
    repair: bool = False,
    verify_hashes: bool = True,
    progress: Callable[[int, int], None] | None = None,
    rate: RateLimiter | None = None,
) -> CheckReport:
    """Verify the invariants (C1-C5) over the whole store; ``rate`` paces the bytes read
    back, so a check beside live recording leaves it the disk."""
    rep = CheckReport()
    pace = rate.consume if rate is not None else None
    if repair:
        if store.read_only:
            raise VstoreError("--repair needs the store opened for writing")
        # In a process that records (a node running this as a job), open segments are its
        # cameras' live ones: R1-R4 are for writers that are gone (lifecycle R7).
        with store.writers_held_off() as recording:
            r = recover(store, open_segments=not recording)
        for m in r.messages:
            rep.problems.append(Problem("C3", m.split(":")[0], "open segment " + m, True))
    idx = store.index
    # Open segments are normal while a recorder runs (here, or in the process that holds the
    # index lock); only those of a writer that is gone break invariant I3.
    live = store.recording_elsewhere() or store.writing_here()
    for seg_id, marker in idx.open_segments():
        if not live:
            rep.problems.append(
                Problem(
                    "C3",
                    marker.get("path", "?"),
                    f"segment {seg_id} left open by a writer that is gone (run check --repair, "
                    "or open the store for writing, to seal it)",
                )
            )
    # An import that never reported done: beside another holder it may be running there; in
    # the holding process (a node's check job) it is running only while a writer of its
    # camera is open here.
    elsewhere = store.recording_elsewhere()
    busy = store.writing_cameras()
    for imp in imports.unfinished(store) if not elsewhere else ():
        if imp.camera in busy:
            continue
        rep.problems.append(
            Problem(
                "C8",
                imp.file,
                f"the import of {imp.file} into camera {imp.camera!r} at "
                f"{format_time(imp.start_ns)} (begun {format_time(imp.started_ns)}) never "
                f"reported done; its {len(imp.segment_ids)} segment(s) stay until the same "
                "import is run again, which replaces them, or it is given up "
                f"(vstore import --abandon keep|discard --camera {imp.camera} --start "
                f"{format_time(imp.start_ns)})",
            )
        )
    # Segment ids are unique per store (another store's objects are indexed under fresh
    # ones): chunk rows name their segment by id. Two rows of one id (another store's
    # object indexed before that was so) would mix their chunks up: said, not guessed at.
    segments: dict[tuple[int, int], SegmentRow] = {}
    for row in idx.all_segment_rows():
        twin = segments.setdefault((row.camera_num, row.segment_id), row)
        if twin is not row:
            rep.problems.append(
                Problem(
                    "C1",
                    row.path,
                    f"segment id {row.segment_id} of camera #{row.camera_num} names two "
                    f"segments ({twin.location}/{twin.path} too): their chunks cannot be told "
                    "apart; take the other store's out of this index (a fresh rebuild-index)",
                )
            )
    rows = list(segments.values())
    total = len(rows)
    chunk_rows: dict[tuple[int, int], list[ChunkRow]] = {}
    prev: ChunkRow | None = None
    for c in idx.all_chunk_rows():
        rep.chunks += 1
        chunk_rows.setdefault((c.camera_num, c.segment_id), []).append(c)
        if prev is not None and prev.camera_num == c.camera_num and c.start_ns < prev.end_ns:
            rep.problems.append(
                Problem(
                    "C5",
                    "",
                    f"camera #{c.camera_num}: chunk at {c.start_ns} overlaps the one "
                    f"before it (ends {prev.end_ns})",
                )
            )
        prev = c
    for c_seg, c_rows in chunk_rows.items():
        if c_seg not in segments:
            rep.problems.append(
                Problem(
                    "C1",
                    "",
                    f"{len(c_rows)} chunk rows name segment {c_seg}, which has no catalog row",
                )
            )

    holds = list_holds(store)
    names = {num: cam for cam, num in idx.cameras()}
    indexed_paths = set()
    for i, row in enumerate(rows):
        if progress is not None:
            progress(i, total)
        rep.segments += 1
        if row.location != "local":
            cam = names.get(row.camera_num, "")
            _check_tiered(
                store,
                row,
                cam,
                chunk_rows.get((row.camera_num, row.segment_id), []),
                verify_hashes,
                rep,
                [h for h in holds if h.covers(cam, row.start_ns, row.end_ns)],
                repair,
                pace,
            )
            continue
        indexed_paths.add(row.path)
        path = store.layout.path(row.path)
        if not path.exists():
            if _still_local(store, row):
                rep.problems.append(Problem("C2", row.path, "segment file is missing"))
            continue
        try:
            with SegmentReader(FileSource(path), row.path) as rd:
                if row.state == "sealed":
                    whole = _whole_file(rd, path, row)
                    if whole is not None and not _known_cut(path, row):
                        raise CorruptSegment(whole)
                    if verify_hashes and not row.damaged:
                        rd.verify(pace)
                        rep.bytes_verified += row.size_bytes
                    elif row.damaged:
                        # R6: known damage, recorded and out of the index: the content hash
                        # cannot match; every indexed chunk is still checked below.
                        rep.problems.append(
                            Problem(
                                "C2",
                                row.path,
                                f"{len(row.damaged)} damaged chunk(s) kept in the file, out of "
                                "the index (recorded by check --repair)"
                                + (f"; and {whole}" if whole is not None else ""),
                                repaired=True,
                            )
                        )
                for c in chunk_rows.get((row.camera_num, row.segment_id), []):
                    if pace is not None and not (verify_hashes and row.state == "sealed"):
                        pace(c.length)  # (after verify, a sealed segment's are in the cache)
                    rd.read_chunk(c.offset, c.length, c.crc32)
                    if row.state != "sealed":
                        rep.bytes_verified += c.length
        except FileNotFoundError:
            # Deleted while checked (retention or the space keeper of a live store), or
            # tiered: gone from the index too by now, or moved, or it is a missing file.
            if _still_local(store, row):
                rep.problems.append(Problem("C2", row.path, "segment file is missing"))
            continue
        except (CorruptSegment, NotFound) as exc:
            problem = Problem("C1" if row.state != "sealed" else "C2", row.path, str(exc))
            rep.problems.append(problem)
            if repair and row.state == "sealed" and isinstance(exc, CorruptSegment):
                _quarantine_damaged_chunks(store, row, problem)
    if progress is not None:
        progress(total, total)
    _check_chains(store, rep)
    _check_gop_tables(store, rows, chunk_rows, rep, repair)
    _check_catalog(store, rep, repair)

    pending_delete = set()
    for sid, rec in idx.garbage():
        why = mark_conflict(store, sid, rec, holds)
        if why is None:
            if "location" not in rec:
                pending_delete.add(rec["path"])
            continue
        # C7 (D5): a pending deletion of footage that the index or a hold claims again.
        where = rec["path"] if "location" not in rec else f"{rec['location']}/{rec['path']}"
        problem = Problem("C7", where, f"pending deletion of footage {why}")
        rep.problems.append(problem)
        if repair and not store.read_only:
            cancel_mark(store, sid, rec, why)
            problem.repaired = True
            problem.message += "; deletion cancelled, the bytes are kept"
        elif "location" not in rec:
            pending_delete.add(rec["path"])  # (reported as C7, not again as an orphan)
    orphans = [
        rel
        for rel in store.layout.iter_segment_files()
        # (pending deletions are finished by the next writable open, D4)
        if rel not in indexed_paths and rel not in pending_delete
    ]
    for rel in _orphans_still(store, orphans):
        problem = Problem("C4", rel, "segment file not in the index (orphan)")
        rep.problems.append(problem)
        if repair:
            try:
                adopt_orphan(store, rel)
                problem.repaired = True
                problem.message += "; adopted into the index"
            except VstoreError as exc:
                problem.message += f"; not adopted: {exc}"
    return rep


def _still_local(store: Store, row: SegmentRow) -> bool:
    """Whether the index still names this local file for the segment, now: beside a running
    node, a segment read a moment ago may have been deleted or tiered since (its row gone,
    or pointing at the tier), which is no missing file."""
    raw = store.index.get(row.key())
    if raw is None:
        return False
    now = SegmentRow.decode(row.key(), raw)
    return now.location == "local" and now.path == row.path


def _check_catalog(store: Store, rep: CheckReport, repair: bool) -> None:
    """C11: each shared catalog hour lists exactly this store's tiered segments of the hour,
    or is marked to be written. Repair writes it again from the index."""
    names = {num: cam for cam, num in store.index.cameras()}
    found = shared_catalog.catalog_problems(store)
    for num, hour, url, what in found:
        where = f"{url}/{layout.catalog_object_key(names.get(num, '?'), hour)}"
        problem = Problem("C11", where, f"the shared catalog hour {what}")
        rep.problems.append(problem)
    if repair and found and not store.read_only:
        for url in sorted({url for _num, _hour, url, _w in found}):
            # The cluster's deleter's decisions first (E5): rows it deleted leave the index.
            catch_up(store, store.tier(url), "check --repair")
        shared_catalog.mark_hours(store, [(num, hour, url) for num, hour, url, _w in found])
        res = shared_catalog.publish_pending(store)
        for (num, hour, url, _w), p in zip(found, rep.problems[-len(found) :], strict=True):
            why = res.failed.get((num, hour, url))
            p.repaired = why is None
            p.message += "; written again" if why is None else f"; not written: {why}"


def _check_gop_tables(
    store: Store,
    rows: list[SegmentRow],
    chunk_rows: dict[tuple[int, int], list[ChunkRow]],
    rep: CheckReport,
    repair: bool,
) -> None:
    """C10: a sealed segment's GOP table (what playlists read) is its chunk rows' GOPs."""
    for row in rows:
        if row.state != "sealed" or not row.gops or row.damaged:
            continue
        want = gop_table.gop_bounds(chunk_rows.get((row.camera_num, row.segment_id), []))
        try:
            got = tuple(a.tolist() for a in gop_table.decode(row.gops))
        except ValueError:
            got = ([], [])
        if got == want or store.index.get(row.key()) != row.value():
            continue  # (or changed since it was read: retention, a trim)
        problem = Problem("C10", row.path, "its GOP table differs from its chunk rows")
        rep.problems.append(problem)
        if repair and not store.read_only:
            fixed = row._replace(gops=gop_table.encode(
                chunk_rows.get((row.camera_num, row.segment_id), [])))  # fmt: skip
            store.index.put_sync(row.key(), fixed.value())
            problem.repaired = True
            problem.message += "; rebuilt from them"


def _check_chains(store: Store, rep: CheckReport) -> None:
    """C9: every camera's chain of sealed segments, from link 1 to its signed head.

    A live store keeps sealing and deleting while this runs, so each camera is read in an
    order that cannot show a legitimate change as a break: the newest audit digest, then
    its head, its rows, its head again (read anew when a seal came between), and only then
    the audit records (a deletion commits its record with the row's removal, so a row gone
    by then has its record)."""
    try:
        verifiers = store.keys.ed25519_verifiers("recording")
    except VstoreError as exc:
        rep.problems.append(Problem("C9", "", f"the recording keys cannot be read: {exc}"))
        return
    # The newest digest first: a head only grows, so one read after it is never behind.
    witnesses: dict[str, Witness] = {}
    digests = store.index.audit_digests()
    if digests:
        dseq, raw = digests[-1]
        d = loads_dict(raw)
        where = f"audit digest #{dseq} ({format_time(int(d.get('to_ns', 0)))})"
        for cam, h in (d.get("chain_heads") or {}).items():
            witnesses[cam] = Witness(int(h["seq"]), str(h["link"]), where)
    inputs: dict[str, tuple[Any, list[SegmentRow]]] = {}
    for cam, num in store.index.cameras():
        for _attempt in range(5):
            head = store.index.chain_head(num)
            own = [r for r in store.index.segments(num) if r.state == "sealed" and not r.foreign]
            if store.index.chain_head(num) == head:
                break
        inputs[cam] = (head, own)
    removals: dict[str, list[Removal]] = {}
    raws = store.index.audit_items()
    _pruned, bases = store_pruned_state(store, raws)
    items = [(seq, loads_dict(raw)) for seq, raw in raws]
    for seq, rec in items:
        if rec.get("action") not in ("delete", "trim"):
            continue
        detail = rec.get("detail") or {}
        rm = removal_of(seq, str(rec["action"]), detail)
        if rm is not None:
            removals.setdefault(str(detail.get("camera")), []).append(rm)
    for cam, (head, own) in inputs.items():
        result = verify_chain(
            cam,
            own,
            head,
            removals.get(cam, []),
            verifiers.get,
            witnesses.get(cam),
            (int(bases[cam]["seq"]), str(bases[cam]["link"])) if cam in bases else None,
        )
        rep.chains.append(result)
        for msg in result.problems or []:
            rep.problems.append(Problem("C9", cam, f"camera {cam}: recording chain: {msg}"))


def _whole_file(rd: SegmentReader, path: Path, row: SegmentRow) -> str | None:
    """None when a sealed segment's file is the one the index sealed (its size, its
    trailer's hash); else how it differs."""
    size = path.stat().st_size
    if size != row.size_bytes:
        return f"size {size} != indexed {row.size_bytes}"
    try:
        if rd.trailer().sha256.hex() != row.sha256:
            return "trailer hash differs from the index"
    except CorruptSegment as exc:
        return str(exc)
    return None


def _known_cut(path: Path, row: SegmentRow) -> bool:
    """A sealed file cut short whose lost end --repair recorded as damage (its trailer went
    with it): anything else about a file not whole stays a problem."""
    size = path.stat().st_size
    return size < row.size_bytes and any(off + n > size for off, n in row.damaged)


def _forget_foreign(store: Store, row: SegmentRow, camera: str, chunks: list[ChunkRow]) -> None:
    """Take another store's segment whose object is gone out of this index (a view of it:
    nothing of this store's is deleted, D6), audited."""
    b = Batch()
    for c in chunks:
        b.delete(c.key())
    b.delete(row.key())
    store.index.audit(
        "forget",
        "check",
        {
            "camera": camera,
            "segment_id": row.segment_id,
            "from": format_time(row.start_ns),
            "to": format_time(row.end_ns),
            "location": f"{row.location}/{row.path}",
            "written_by_store": row.owner,
            "reason": "another store's object, gone from the bucket",
        },
        store.clock.wall_ns(),
        batch=b,
    )
    store.index.commit(b, sync=True)


def _quarantine_damaged_chunks(store: Store, row: SegmentRow, problem: Problem) -> None:
    """--repair of a sealed segment whose chunks do not all verify (R6): those leave the
    index, their bytes stay and are recorded; the rest of the segment stays served. A file
    cut short (its trailer gone: its own directory unreadable) is checked chunk by chunk as
    the index names them; the file is kept as it is. Any other change to its trailer is no
    damage of its chunks: not repaired, and still reported."""
    bad: list[fmt.DirEntry] = []
    path = store.layout.path(row.path)
    try:
        with SegmentReader.open(path) as rd:
            whole = _whole_file(rd, path, row)
            if whole is None:
                entries = rd.directory()
            elif path.stat().st_size >= row.size_bytes:
                problem.message += (
                    "; not repaired: its trailer or size differs from the index (the damage is "
                    "outside its chunks; the file is kept as it is for examination)"
                )
                return
            else:  # cut short: its own directory went with its end
                entries = [fmt.DirEntry(c.offset, c.length, c.start_ns, c.end_ns, c.packet_count,
                                        c.crc32, c.flags)
                           for c in store.index.segment_chunks(row)]  # fmt: skip
            for e in entries:
                try:
                    rd.read_chunk(e.offset, e.length, e.crc32)
                except CorruptSegment:
                    bad.append(e)
    except (CorruptSegment, NotFound) as exc:
        problem.message += f"; not repaired: {exc}"
        return
    if not bad:
        problem.message += (
            "; every indexed chunk verifies (the damage is outside them): not repaired, the "
            "file is kept as it is for examination"
        )
        return
    quarantine_chunks(store, row, bad)
    problem.repaired = True
    problem.message += (
        f"; {len(bad)} damaged chunk(s) left out of the index, their bytes kept and recorded "
        "(a `damaged` event and a quarantine audit record); the rest stays served"
    )


def _check_tiered(
    store: Store,
    row: SegmentRow,
    camera: str,
    chunks: list[ChunkRow],
    verify_hashes: bool,
    rep: CheckReport,
    holds: list[Any],  # the active holds that cover this segment
    repair: bool,
    pace: Callable[[int], None] | None = None,
) -> None:
    """I2 for a tiered segment: the object exists with the indexed size and trailer hash;
    unless --quick, its bytes are read back (ranged GETs) and verified too."""
    where = f"{row.location}/{row.path}"
    try:
        info = store.tier(row.location).head(row.path)
        if info is None:
            raise NotFound("object is missing")
        if info.size_bytes != row.size_bytes:
            raise CorruptSegment(f"object size {info.size_bytes} != indexed {row.size_bytes}")
        # Past the read cache: the object's own bytes are what is checked.
        with store.segment_reader(row, cached=False) as rd:
            writer = rd.meta.store_uuid
            if rd.trailer().sha256.hex() != row.sha256:
                raise CorruptSegment("trailer hash differs from the index")
            if verify_hashes:
                rd.verify(pace, damaged=row.damaged_offsets)
                for c in chunks:
                    rd.read_chunk(c.offset, c.length, c.crc32)
                rep.bytes_verified += row.size_bytes
        if row.damaged:  # (tiered with its recorded damage, as it was on the disk: R6)
            rep.problems.append(
                Problem(
                    "C2",
                    where,
                    f"{len(row.damaged)} damaged chunk(s) kept in the object, out of the index "
                    "(recorded by check --repair)",
                    repaired=True,
                )
            )
    except (CorruptSegment, NotFound, TierError) as exc:
        problem = Problem("C2", where, str(exc))
        rep.problems.append(problem)
        if repair and row.foreign and isinstance(exc, NotFound) and not store.read_only:
            _forget_foreign(store, row, camera, chunks)
            problem.repaired = True
            problem.message += (
                "; another store's footage, gone from the bucket (its owner's to delete): "
                "left out of this index"
            )
        return
    carried = link_of_object(info.metadata)
    # (an object another store wrote carries a link of that store's chain, adopted or not)
    ours = not row.foreign and writer in ("", store.uuid)
    if ours and carried is not None and carried[1] != row.chain:
        rep.problems.append(
            Problem(
                "C9",
                where,
                f"the object carries chain link #{carried[1].seq}, the index "
                f"{'none' if row.chain is None else f'link #{row.chain.seq}'}: one of them "
                "was changed",
            )
        )
    if not store.config.tier.legal_hold or not holds or row.foreign:
        return  # (another store's object holds are that store's to set: D6)
    tier = store.tier(row.location)
    try:
        state = tier.legal_hold(row.path)
    except TierError as exc:
        rep.problems.append(Problem("C6", where, f"object legal hold unknown: {exc}"))
        return
    if state is False:
        problem = Problem(
            "C6", where, "footage under a hold lacks its S3 object legal hold (vstore hold sync)"
        )
        rep.problems.append(problem)
        if repair:
            try:
                problem.repaired = tier.set_legal_hold(row.path, True)
                problem.message += (
                    "; object legal hold set"
                    if problem.repaired
                    else "; not repaired: the bucket has no S3 Object Lock"
                )
            except TierError as exc:
                problem.message += f"; not repaired: {exc}"


def _orphans_still(store: Store, candidates: list[str]) -> list[str]:
    """The files of ``candidates`` that the index does not know even now. A writer indexes
    a segment (its open marker and row) before its file exists (W0), and a deletion marks
    a file in the index before it removes it (D1): a file that a live writer opened, or a
    retention run deleted, while the check read the index is in it now. Read from the live
    index, or, opened read-only beside the node that writes, from a fresh read-only view;
    never adopted or reported otherwise (adopting a live writer's file would recover it
    under the writer: lifecycle R7)."""
    if not candidates:
        return []
    fresh = TimeIndex(store.layout.index_dir, read_only=True) if store.read_only else None
    idx = fresh if fresh is not None else store.index
    try:
        known = {row.path for row in idx.all_segment_rows()}
        known.update(str(m.get("path", "")) for _sid, m in idx.open_segments())
        known.update(str(rec.get("path", "")) for _sid, rec in idx.garbage())
    finally:
        if fresh is not None:
            fresh.close()
    # (a file deleted since it was listed is no orphan either)
    return [rel for rel in candidates if rel not in known and store.layout.path(rel).exists()]


def adopt_orphan(store: Store, relpath: str) -> None:
    """Index an orphan segment file from its own bytes (its header names the camera)."""
    name = relpath.rsplit("/", 1)[-1]
    parsed = parse_segment_name(name)
    if parsed is None:
        raise VstoreError("file name is not a segment name")
    start_ns, seg_id = parsed
    with SegmentReader.open(store.layout.path(relpath)) as rd:
        _check_orphan_identity(store, relpath, rd.meta, start_ns, seg_id)
        camera = rd.meta.camera
        try:
            rd.trailer()
        except CorruptSegment:
            pass  # unsealed: recovery seals it
        else:
            entries = rd.directory()
            if not entries or entries[0].start_ns != start_ns:
                raise VstoreError("its name's start time is not its first chunk's")
    # Registered as an open segment, recovery indexes it as it would after a crash: an
    # unsealed file is sealed at its last whole chunk, a sealed one has its chunks
    # verified, and only chunks that verify are indexed, the rest recorded as damage.
    cam = store.index.camera_num(camera, create=True)
    assert cam is not None
    b = Batch()
    b.put_open_marker(seg_id, camera, cam, relpath, start_ns)
    store.index.commit(b)
    recover(store, only_segments={seg_id})  # (never the open segments of cameras recording)


def _check_orphan_identity(
    store: Store, relpath: str, meta: Any, start_ns: int, seg_id: int
) -> None:
    """Refuse to adopt a file whose name, place and header disagree (a copy, or a file moved
    or renamed by hand): indexed under its name, it would give a camera footage it does not
    have, or a second row for footage already indexed. A file that agrees sits at the one
    path its camera, start and id allow, so an indexed segment is never adopted twice; a
    foreign store's file may repeat an id (check_store's catalog allows for that)."""
    if meta.segment_id != seg_id:
        raise VstoreError(f"its header names segment {meta.segment_id}, its file name {seg_id}")
    try:
        layout.validate_camera_id(meta.camera)
    except VstoreError:
        raise VstoreError(f"its header names an invalid camera {meta.camera!r}") from None
    expected = store.layout.segment_relpath(meta.camera, start_ns, seg_id)
    if relpath != expected:
        raise VstoreError(
            f"a segment of camera {meta.camera!r} with its name belongs at {expected}"
        )
