"""Clip planning: a camera and a wall-clock range resolved through the index (one seek to
the GOP start that decoding needs, then a forward scan) into segments, chunks and byte ranges,
with the gaps, damage and timeline events inside the range. No payload is read."""

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from vstore.base.errors import CorruptSegment, NotFound, UsageError, VstoreError
from vstore.base.timebase import (
    GAP_TOLERANCE_NS,
    NS_PER_S,
    TimeRange,
    format_time,
    merge_ranges,
    subtract_ranges,
)
from vstore.index.time_index import ChunkRow, SegmentRow
from vstore.segment import format as fmt
from vstore.store.store import Store, damaged_ranges, lost_ranges

FORMATS = ("mp4", "fmp4", "ts", "mov")

MAX_CLIP_NS = 7 * 86400 * NS_PER_S  # a limit on everything: one request, at most a week


class DamagedChunks(Exception):
    """Chunks of a plan that do not verify, found before anything was written: the clip is
    built again without them (``ClipPlan.without``)."""

    def __init__(self, chunks: list[ChunkRow]) -> None:
        super().__init__(f"{len(chunks)} damaged chunk(s)")
        self.chunks = chunks


# The shortest gap at a clip's ends that is named (printed times keep milliseconds).
EDGE_GAP_MIN_NS = 1_000_000


class ClipPart(NamedTuple):
    """Consecutive chunks of one segment that the clip reads."""

    segment: SegmentRow
    chunks: tuple[ChunkRow, ...]

    @property
    def bytes(self) -> int:
        return sum(c.length for c in self.chunks)


class ClipPlan:
    """What a clip will contain, resolved from the index without reading payloads. Building
    the clip may shorten it (``end_ns``) and add ``notes``."""

    def __init__(
        self,
        camera: str,
        requested: TimeRange,
        start_ns: int,
        end_ns: int,
        preroll_ns: int,
        parts: list[ClipPart],
        gaps: list[tuple[int, int]],
        events: list[dict[str, Any]],
        notes: list[str] | None = None,
    ) -> None:
        self.camera = camera
        self.requested = requested
        self.start_ns = start_ns  # first frame shown (>= requested start if footage is later)
        self.end_ns = end_ns  # end of the last frame included (<= requested end)
        self.preroll_ns = preroll_ns  # keyframe the decoder starts from (<= start_ns)
        self.parts = parts
        self.gaps = gaps
        self.events = events
        self.notes = notes if notes is not None else []
        # Ranges left out because their chunks do not verify (the clip shows a gap there).
        self.damaged: list[tuple[int, int]] = []
        # The chunk before the first (clip_plan.chunk_before) in its segment, read for its
        # sound only.
        self.lead: ClipPart | None = None

    @property
    def lead_chunk(self) -> ChunkRow | None:
        """The lead's chunk (``lead``), else None."""
        return self.lead.chunks[0] if self.lead is not None else None

    @property
    def read_parts(self) -> list[ClipPart]:
        """Every chunk the clip reads, by segment: ``parts``, with ``lead`` first."""
        if self.lead is None:
            return self.parts
        p0 = self.parts[0]
        if self.lead.segment.segment_id == p0.segment.segment_id:
            return [ClipPart(p0.segment, (*self.lead.chunks, *p0.chunks)), *self.parts[1:]]
        return [self.lead, *self.parts]

    def is_lead(self, part: ClipPart) -> bool:
        """Whether ``part`` (of ``read_parts``) holds the lead chunk alone: a segment read
        for its sound only, whose tracks need not be the clip's."""
        return self.lead is not None and part.chunks == self.lead.chunks

    def without(self, bad: Iterable[ChunkRow]) -> "ClipPlan":
        """This plan without chunks that do not verify, nor the continuation chunks of their
        GOPs (undecodable without them); their ranges are listed in ``damaged``."""
        bad_starts = {c.start_ns for c in bad}
        damaged = list(self.damaged)
        parts: list[ClipPart] = []
        skipping = False
        for p in self.parts:
            kept = []
            for c in p.chunks:
                dependent = skipping and bool(c.flags & fmt.CHUNK_CONTINUATION)
                if (
                    c.start_ns in bad_starts
                    or dependent
                    or (not parts and not kept and (c.flags & fmt.CHUNK_CONTINUATION))
                ):
                    if c.start_ns >= self.end_ns:  # the tail (chunk_after): not the clip's
                        continue
                    if damaged and damaged[-1][1] >= c.start_ns:
                        damaged[-1] = (damaged[-1][0], max(damaged[-1][1], c.end_ns))
                    else:
                        damaged.append((c.start_ns, c.end_ns))
                    skipping = True
                    continue
                skipping = False
                kept.append(c)
            if kept:
                parts.append(ClipPart(p.segment, tuple(kept)))
        if not parts:
            raise CorruptSegment(
                f"every chunk of camera {self.camera!r} in the range is damaged "
                "(see `vstore check`)"
            )
        first, last = parts[0].chunks[0], parts[-1].chunks[-1]
        out = ClipPlan(
            self.camera,
            self.requested,
            max(self.start_ns, first.start_ns),
            min(self.end_ns, last.end_ns),
            first.start_ns,
            parts,
            self.gaps,
            self.events,
            list(self.notes),
        )
        out.damaged = damaged
        # The lead stays while still right before the first chunk (that one was not left
        # out) and not damaged itself.
        if (
            self.lead is not None
            and self.lead.chunks[0].start_ns not in bad_starts
            and first is self.parts[0].chunks[0]
        ):
            out.lead = self.lead
        return out

    def __repr__(self) -> str:
        return (
            f"ClipPlan(camera={self.camera!r}, start_ns={self.start_ns}, end_ns={self.end_ns}, "
            f"parts={len(self.parts)}, gaps={self.gaps!r}, notes={self.notes!r})"
        )

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.read_parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "requested": {
                "from": format_time(self.requested.start_ns),
                "to": format_time(self.requested.end_ns),
            },
            "from": format_time(self.start_ns),
            "to": format_time(self.end_ns),
            "from_ns": self.start_ns,
            "to_ns": self.end_ns,
            "preroll_from": format_time(self.preroll_ns),
            "bytes": self.bytes,
            "segments": [
                {
                    "segment_id": p.segment.segment_id,
                    "location": p.segment.location,
                    "path": p.segment.path,
                    "ranges": [[c.offset, c.length] for c in p.chunks],
                    "from": format_time(p.chunks[0].start_ns),
                    "to": format_time(p.chunks[-1].end_ns),
                }
                for p in self.read_parts
            ],
            "gaps": [
                {
                    "from": format_time(s),
                    "to": format_time(e),
                    "from_ns": s,
                    "to_ns": e,
                    "duration_s": (e - s) / NS_PER_S,
                }
                for s, e in self.gaps
            ],
            "events": [{"at": format_time(e["at_ns"]), **e} for e in self.events],
            "damaged": [
                {"from": format_time(s), "to": format_time(e), "from_ns": s, "to_ns": e}
                for s, e in self.damaged
            ],
            "notes": self.notes,
        }


def plan_clip(store: Store, camera_id: str, start_ns: int, end_ns: int) -> ClipPlan:
    """Resolve [start_ns, end_ns) for a camera; NotFound when the range holds no footage."""
    rng = TimeRange(start_ns, end_ns)
    if rng.duration_ns > MAX_CLIP_NS:
        raise UsageError("a clip may span at most 7 days; split the request")
    num = store.camera_num(camera_id)
    chunks = list(store.index.chunks_from_keyframe(num, start_ns, end_ns, fmt.CHUNK_CONTINUATION))
    if not chunks:
        raise NotFound(
            f"camera {camera_id!r} has no footage between {format_time(start_ns)} and "
            f"{format_time(end_ns)} (its timeline shows what it holds)"
        )
    first_ns = max(start_ns, chunks[0].start_ns)
    last_ns = min(end_ns, chunks[-1].end_ns)
    gaps: list[tuple[int, int]] = []
    # (at the range's ends, less than the millisecond that printed times keep is no gap: a
    # range copied from a timeline's printed start begins that much before its footage)
    if chunks[0].start_ns - start_ns >= EDGE_GAP_MIN_NS:
        gaps.append((start_ns, chunks[0].start_ns))
    for a, b in itertools.pairwise(chunks):
        if b.start_ns - a.end_ns > GAP_TOLERANCE_NS:
            gaps.append((a.end_ns, b.start_ns))
    if end_ns - chunks[-1].end_ns >= EDGE_GAP_MIN_NS:
        gaps.append((chunks[-1].end_ns, end_ns))
    tail = chunk_after(store, num, chunks[-1])
    if tail is not None:
        chunks.append(tail)
    seg_rows = {
        r.segment_id: r
        for r in store.index.segments(num, chunks[0].start_ns, max(end_ns, chunks[-1].end_ns))
    }
    parts: list[ClipPart] = []
    for c in chunks:
        row = seg_rows.get(c.segment_id)
        if row is None:
            raise VstoreError(
                f"index names segment {c.segment_id} without a catalog row; run `vstore check`"
            )
        if parts and parts[-1].segment.segment_id == c.segment_id:
            parts[-1] = ClipPart(row, (*parts[-1].chunks, c))
        else:
            parts.append(ClipPart(row, (c,)))
    # (a source_damage run that began earlier in the first segment reaches into the clip)
    since = min(start_ns, chunks[0].start_ns)
    events = [
        {"at_ns": e.at_ns, "kind": e.kind, "detail": e.detail}
        for e in store.index.events(num, min(since, parts[0].segment.start_ns), end_ns)
        if e.at_ns >= since or (e.kind == "source_damage" and e.detail.get("to_ns", 0) > since)
    ]
    # A gap where footage was recorded and later found damaged (R5, R6) says so; frames a
    # source lost inside a GOP (T5) are a gap of the clip's too.
    lost = [(max(s, start_ns), min(e, end_ns)) for s, e in lost_ranges(events)
            if s < end_ns and e > start_ns]  # fmt: skip
    gaps, damaged = subtract_ranges(merge_ranges(gaps + lost), damaged_ranges(events))
    # Packets the source marked damaged on the way (stored as received): a clip says where.
    notes = [
        f"the source marked {e['detail'].get('packets', '?')} packet(s) between "
        f"{format_time(e['at_ns'])} and {format_time(e['detail'].get('to_ns', e['at_ns']))} "
        "damaged on their way (stored as received): pictures there may show errors"
        for e in events
        if e["kind"] == "source_damage"
    ]
    plan = ClipPlan(
        camera_id, rng, first_ns, last_ns, chunks[0].start_ns, parts, gaps, events, notes
    )
    plan.damaged = damaged
    lead = chunk_before(store, num, chunks[0])
    if lead is not None:
        lead_row = seg_rows.get(lead.segment_id) or store.index.segment_of(lead)
        plan.lead = ClipPart(lead_row, (lead,)) if lead_row is not None else None
    return plan


def chunk_before(store: Store, camera_num: int, row: ChunkRow) -> ChunkRow | None:
    """The chunk that ends where ``row`` begins (the segment before too), else None.

    A clip reads it for its sound alone: a source that sends sound ahead of the pictures
    it goes with (MPEG-TS muxers commonly do, by tens to hundreds of milliseconds) has the
    sound of a keyframe's first moments stored with the GOP before, which is where it
    arrived. Without it a clip's sound would begin that much after its first frame."""
    prev = store.index.chunk_before(camera_num, row.start_ns)
    if prev is None or row.start_ns - prev.end_ns > GAP_TOLERANCE_NS:
        return None
    return prev


def chunk_after(store: Store, camera_num: int, row: ChunkRow) -> ChunkRow | None:
    """The chunk that follows ``row`` when the footage goes on without a gap, else None.

    A clip or snapshot that ends in ``row`` reads it too: frames decoded after a chunk's
    last one can be shown before its end. An open GOP's leading pictures (x265's default, a
    CRA's RASL frames, H.264's recovery-point I-frames) are sent after their keyframe and
    shown before it, and an oversized GOP split into continuation chunks can leave B-frames
    shown before the split on its far side. Only the frames of it shown before the end are
    taken (in decode order up to the last of them), so after a closed GOP it adds nothing
    but the read of its packet table."""
    nxt = store.index.chunks_starting(
        camera_num, row.start_ns + 1, row.end_ns + GAP_TOLERANCE_NS + 1
    )
    return nxt[0] if nxt else None


def leading_frames(walls: Sequence[int]) -> list[int]:
    """The positions of a GOP's leading frames among its video frames in decode order (its
    keyframe first): sent after the keyframe, shown before it. At a clip's first keyframe
    they cannot be decoded (they refer to the GOP before, which the clip does not hold) and
    are shown before the clip's start anyway, so clips leave them out."""
    return [i for i, w in enumerate(walls) if i and w < walls[0]]
