"""Clips through PyAV's muxers (fragmented MP4, MPEG-TS, QuickTime, and MP4 when the native
writer cannot): the planned packets remuxed with wall-time timestamps, never decoded."""

import io
from collections.abc import Callable
from typing import Any

from vstore.base.errors import CorruptSegment, VstoreError
from vstore.base.timebase import (
    format_time,
    ns_to_ticks,
)
from vstore.codec.aac import aac_lead_in_ns, adts_to_asc
from vstore.codec.annexb import (
    config_to_annexb,
    length_prefixed_to_annexb,
)
from vstore.export.clip_plan import ClipPart, ClipPlan, leading_frames
from vstore.segment import format as fmt
from vstore.segment.packet import Packet
from vstore.segment.reader import SegmentReader, chunk_packets
from vstore.store.store import Store

MUX_OPTIONS = {
    "mp4": {"movflags": "+faststart+use_metadata_tags"},
    # delay_moov: the moov waits for the first fragment, so it knows where each track starts
    # and gives audio that starts after the first frame an edit list (without, the muxer
    # pulls its first sample to 0 and stretches it).
    "fmp4": {
        "movflags": "+frag_keyframe+empty_moov+delay_moov+default_base_moof+use_metadata_tags"
    },
    "ts": {},
    "mov": {"movflags": "+faststart+use_metadata_tags"},
}

CONTAINERS = {"mp4": "mp4", "fmp4": "mp4", "ts": "mpegts", "mov": "mov"}

# Audio each container takes as it is (remuxed). G.711 (the usual audio of IP cameras) goes
# into QuickTime (.mov, `ulaw`/`alaw` sample entries): MP4 and MPEG-TS have no place for it.
AUDIO_CODECS_OK = {
    "mp4": {"aac", "mp3", "opus"},
    "fmp4": {"aac", "mp3", "opus"},
    "ts": {"aac", "mp3", "opus"},
    "mov": {"aac", "mp3", "pcm_mulaw", "pcm_alaw", "pcm_s16le"},
}

# Containers with an edit list: the pre-roll is hidden and the clip starts on its frame.
EDITED_FORMATS = ("mp4", "mov")


def mux_plan(
    store: Store,
    plan: ClipPlan,
    container: Any,
    format: str,
    readers: dict[int, SegmentReader],
    counts: dict[str, int],
    dropped: list[str],
    progress: Callable[[int, int], None] | None,
    strict: bool = False,
) -> None:

    from fractions import Fraction  # (with PyAV: never on the native MP4 path)

    import av  # PyAV: heavy, loaded on first use

    first = plan.parts[0].segment
    rd0 = store.segment_reader(first)
    readers[first.segment_id] = rd0
    tracks = rd0.meta.tracks
    streams: dict[int, Any] = {}
    # AAC from MPEG-TS carries ADTS headers and no extradata; MP4 wants raw frames plus an
    # AudioSpecificConfig. Derive it from the first frame (bit fields, not transcoding).
    adts: dict[int, int] = {}  # track -> ADTS header length to strip
    asc: dict[int, bytes] = {}
    if format != "ts" and any(t.codec == "aac" and not t.extradata for t in tracks):
        c0 = plan.parts[0].chunks[0]
        for p in chunk_packets(rd0.meta, rd0.read_chunk(c0.offset, c0.length, c0.crc32)):
            t = tracks[p.track]
            if t.codec == "aac" and not t.extradata and p.track not in asc:
                conv = adts_to_asc(bytes(p.data))
                if conv is not None:
                    asc[p.track], adts[p.track] = conv
    c0 = plan.parts[0].chunks[0]
    first_chunk = rd0.read_chunk(c0.offset, c0.length, c0.crc32)
    probes: list[Any] = []  # template inputs, closed once the header is written
    for t in tracks:
        if t.kind == "video":
            key = next(
                p for p in chunk_packets(rd0.meta, first_chunk) if p.track == t.index and p.is_key
            )
            probe = _video_template(t, bytes(key.data))
            probes.append(probe)
            s = container.add_stream_from_template(probe.streams.video[0])
            # A remux stream: never opened as an encoder, so the stored parameters stay.
            if t.extradata:
                s.codec_context.extradata = t.extradata
        else:
            if t.codec not in AUDIO_CODECS_OK[format]:
                dropped.append(not_storable(t, format))
                continue
            default_rate = 8000 if t.codec.startswith("pcm_") else 48000  # (G.711: 8 kHz)
            s = container.add_stream(t.codec, rate=t.sample_rate or default_rate)
            s.layout = "stereo" if t.channels == 2 else "mono"
            if t.extradata or t.index in asc:
                s.codec_context.extradata = t.extradata or asc[t.index]

        s.time_base = Fraction(*t.time_base)
        streams[t.index] = s
    signature = track_signature(tracks)
    tbs = {t.index: Fraction(*t.time_base) for t in tracks}
    total = plan.bytes
    done = 0
    skipping = False  # after a damaged chunk, until the next GOP starts
    first = True  # the clip's first chunk: decoding starts at its keyframe
    origin = origin_ns(plan, format)
    last_dts: dict[int, int] = {}  # per track, in its time base
    covering = {
        t.index: aac_lead_in_ns(t.sample_rate or 48000)
        for t in tracks
        if t.kind == "audio" and t.codec == "aac" and format in EDITED_FORMATS
    }
    overlapped = 0
    for part in plan.read_parts:
        rd = readers.get(part.segment.segment_id)
        if rd is None:
            try:
                rd = store.segment_reader(part.segment)
            except CorruptSegment:
                if not plan.is_lead(part):
                    raise
                continue  # (the lead chunk's segment: the clip's sound starts at its own)
            readers[part.segment.segment_id] = rd
            new_sig = track_signature(rd.meta.tracks)
            if plan.is_lead(part) and new_sig != signature:
                continue  # (recorded otherwise: the clip's sound starts at its own)
            if new_sig != signature and format == "ts" and _inband_change_ok(tracks, rd.meta):
                # MPEG-TS carries parameter sets in band: decoders follow the change.
                plan.notes.append(
                    f"codec parameters change at {format_time(part.chunks[0].start_ns)} "
                    "(carried in band)"
                )
                signature = new_sig
            elif new_sig != signature:
                end_at_codec_change(plan, part)
                break
        meta = rd.meta
        for c in part.chunks:
            if skipping and c.flags & fmt.CHUNK_CONTINUATION:
                plan.damaged[-1] = (plan.damaged[-1][0], c.end_ns)  # the rest of its GOP
                continue
            skipping = False
            sound_only = c is plan.lead_chunk  # (its sound alone: clip_plan.chunk_before)
            try:
                chunk = rd.read_chunk(c.offset, c.length, c.crc32)
            except CorruptSegment:
                if strict and not sound_only:
                    raise
                if not sound_only:
                    plan.damaged.append((c.start_ns, c.end_ns))  # a gap in the clip
                    skipping = True
                continue
            packets = list(chunk_packets(meta, chunk))
            last = _video_end(packets, plan.end_ns)
            lead = _leading(meta, packets) if first and not sound_only else set()
            first = first and sound_only
            for k, p in enumerate(packets):
                s = streams.get(p.track)
                if s is None or p.wall_ns is None:
                    continue
                t = meta.tracks[p.track]
                if t.kind == "video" and sound_only:
                    continue
                if t.kind == "video":
                    cut, shown_ns = last.get(p.track, (-1, 0))
                    if (k > cut and p.wall_ns >= shown_ns) or k in lead:
                        continue
                elif not (
                    origin <= p.wall_ns < plan.end_ns
                    or origin - covering.get(p.track, 0) < p.wall_ns < plan.end_ns
                ):
                    # Audio starts where the first frame shown does; in a format with edit
                    # lists, with the AAC frame playing at that instant (the list trims it).
                    continue
                data = bytes(p.data)
                if p.track in adts:
                    data = data[adts[p.track] :]
                tb = t.time_base
                pts = ns_to_ticks(p.wall_ns - origin, *tb)
                assert p.pts is not None and p.dts is not None
                pkt = av.Packet(data)
                pkt.stream = s
                # The track's own time base: the muxer may change the stream's (mov uses
                # 1/sample_rate for audio) and PyAV rescales from the packet's.
                pkt.time_base = tbs[p.track]
                pkt.pts = pts
                pkt.dts = dts = pts - (p.pts - p.dts)
                if dts <= last_dts.get(p.track, dts - 1):
                    # Where two recordings meet, the later one's first packets (an AAC
                    # encoder's priming frame) can start before the earlier one's last
                    # ended: a muxer refuses a decode time that does not move forward.
                    overlapped += 1
                    continue
                last_dts[p.track] = dts
                pkt.is_keyframe = p.is_key
                container.mux(pkt)
                counts[t.kind] += 1
                while probes:
                    probes.pop().close()
            done += c.length
            if progress is not None:
                progress(done, total)
    if overlapped:
        plan.notes.append(
            f"{overlapped} packet(s) left out that began before the packet ahead of them in "
            "their track (where two recordings meet)"
        )


def origin_ns(plan: ClipPlan, format: str) -> int:
    """Clip time 0: the first frame shown. MP4 hides the pre-roll behind its edit list and
    starts at ``plan.start_ns``; fMP4 and MPEG-TS show the GOP from its keyframe."""
    return plan.start_ns if format in EDITED_FORMATS else plan.preroll_ns


def track_signature(tracks: tuple[fmt.TrackInfo, ...]) -> list[tuple[Any, ...]]:
    """What must stay the same for a clip to go on in one MP4 track set."""
    return [(t.codec, t.extradata, t.width, t.height) for t in tracks]


def not_storable(t: fmt.TrackInfo, format: str) -> str:
    where = [f for f, ok in AUDIO_CODECS_OK.items() if t.codec in ok]
    hint = f" (kept in: --format {', '.join(where)})" if where else ""
    return (
        f"audio track {t.index} ({t.codec}) cannot be stored in {format} without "
        f"transcoding; left out{hint}"
    )


def _leading(meta: fmt.SegmentMeta, packets: list[Packet]) -> set[int]:
    """The positions of the leading frames of a clip's first GOP (clip_plan.leading_frames)."""
    out: set[int] = set()
    for tr in {p.track for p in packets if meta.tracks[p.track].kind == "video"}:
        at = [k for k, p in enumerate(packets) if p.track == tr and p.wall_ns is not None]
        out.update(at[i] for i in leading_frames([packets[k].wall_ns for k in at]))
    return out


def _video_end(packets: list[Packet], end_ns: int) -> dict[int, tuple[int, int]]:
    """Where a chunk's video ends in a clip without an edit list, per track: (the decode
    index of the last frame shown before ``end_ns``, the latest time shown up to it). The
    frames decoded up to it stay (a reference shown after the end is decoded before frames
    shown before it, which cannot be decoded without it), and so do the later ones shown
    before that time (the rest of its group of B-frames), so the clip shows every frame up
    to its last and ends at most a few frames past ``end_ns``."""
    cut: dict[int, int] = {}
    for k, p in enumerate(packets):
        if p.wall_ns is not None and p.wall_ns < end_ns:
            cut[p.track] = k
    out: dict[int, tuple[int, int]] = {}
    for tr, k in cut.items():
        walls = [p.wall_ns for p in packets[: k + 1] if p.track == tr and p.wall_ns is not None]
        out[tr] = (k, max(walls))
    return out


def end_at_codec_change(plan: ClipPlan, part: ClipPart) -> None:
    """An MP4 or fMP4 clip cannot change codec parameters mid-file: it ends where they do."""
    if part.chunks[0].start_ns >= plan.end_ns:
        return  # the tail read for frames shown before the end (chunk_after): none of them
    plan.notes.append(
        f"clip ends at {format_time(part.chunks[0].start_ns)}: codec parameters "
        "change there (request the rest as a separate clip)"
    )
    plan.end_ns = part.chunks[0].start_ns


def _inband_change_ok(old: tuple[fmt.TrackInfo, ...], meta: fmt.SegmentMeta) -> bool:
    """Same track layout and codecs, Annex-B video: a TS clip can continue across it."""
    new = meta.tracks
    return (
        len(old) == len(new)
        and all(a.codec == b.codec and a.kind == b.kind for a, b in zip(old, new, strict=True))
        and all(t.bitstream == "annexb" for t in (*old, *new) if t.kind == "video")
    )


def _video_template(track: fmt.TrackInfo, keyframe: bytes) -> Any:
    """An input container whose stream carries the track's codec parameters, for add_stream_from_template.

    PyAV's add_stream() opens an encoder (libx264/libx265), whose own parameter sets would
    replace the recorded ones; a template stream is never opened. It is made by probing the
    track's parameter sets and first keyframe as raw Annex-B.
    """
    import av  # PyAV: heavy, loaded on first use

    if track.bitstream == "avcc":
        params = config_to_annexb(track.codec, track.extradata) if track.extradata else b""
        keyframe = length_prefixed_to_annexb(keyframe)
    else:
        params = track.extradata
    raw = io.BytesIO(params + keyframe)
    try:
        probe = av.open(raw, "r", format={"h264": "h264", "hevc": "hevc"}[track.codec])
    except (KeyError, av.FFmpegError) as exc:
        raise VstoreError(f"cannot describe {track.codec} track for remuxing: {exc}") from exc
    return probe
