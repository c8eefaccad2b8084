"""The native MP4 clip writer: sample tables from the chunks' packet tables, Annex-B
turned length-prefixed, the moov first, and the payload streamed behind it in blocks."""

import bisect
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from vstore import _native
from vstore.base.errors import CorruptSegment, NotFound
from vstore.base.fsutil import translate_oserror
from vstore.base.timebase import (
    NS_PER_S,
    format_time,
    ns_to_ticks,
)
from vstore.codec.aac import AAC_FRAME_SAMPLES, aac_lead_in_ns, adts_to_asc, asc_sample_rate
from vstore.codec.annexb import (
    annexb_to_length_prefixed,
)
from vstore.codec.parameter_sets import avcc_record, hvcc_record
from vstore.export.clip_output import ClipOutput
from vstore.export.clip_plan import ClipPlan, DamagedChunks
from vstore.export.clip_result import ClipResult
from vstore.export.mp4 import Mp4Track, aac_entry, visual_entry
from vstore.export.mp4 import layout as mp4_layout
from vstore.export.remux import AUDIO_CODECS_OK, end_at_codec_change, not_storable, track_signature
from vstore.index.time_index import ChunkRow, SegmentRow
from vstore.segment import format as fmt
from vstore.segment.reader import SegmentReader
from vstore.store.store import Store

# Chunk pieces kept in memory between the native writer's two passes; past this they are
# read again (and checked again) in the second pass, so memory stays bounded for any clip.
KEEP_BYTES = 64 << 20

BLOCK_BYTES = 1 << 20  # output is written in blocks of about this size

T = TypeVar("T")


class _TrackOut:
    """One output track of a native MP4: where its samples go and how they are framed."""

    __slots__ = ("adts", "annexb", "asc", "covering_ns", "mp4", "src")

    def __init__(self, src: fmt.TrackInfo, mp4: Mp4Track, adts: bool, annexb: bool, asc: bytes):
        self.src, self.mp4 = src, mp4
        # Audio kept from before the clip's start: the frame playing at it and the one before
        # (the edit list trims them).
        self.covering_ns = 0
        self.adts = adts  # AAC recorded with ADTS headers: strip them (MP4 wants raw frames)
        self.annexb = annexb  # Annex-B video: rewrite start codes as 4-byte lengths
        self.asc = asc  # AudioSpecificConfig (found in the first ADTS header if not recorded)


class _Pieces(NamedTuple):
    sizes: list[int]  # one per sample
    bufs: list[bytes | memoryview]  # the samples' bytes, in order


class _PlannedChunk(NamedTuple):
    reader: SegmentReader
    row: ChunkRow
    samples: list[tuple[int, list[int]]]  # (track, packet indices) in output order
    pieces: list[_Pieces] | None  # per entry of samples; None: read again
    sizes: list[list[int]]  # the MP4 sample sizes the moov is built from, per entry
    verified: bool  # pass 1 read the whole chunk and checked it
    # Its packet table's bytes and their decoding from pass 1 (reused by pass 2's read).
    known: tuple[bytes, fmt.PacketColumns] | None = None


def sample_pieces(
    payload: memoryview, cols: fmt.PacketColumns, idxs: list[int], annexb: bool, adts: bool
) -> tuple[_Pieces, bytes]:
    """Packets ``idxs`` of a chunk in MP4 sample form: their sizes and the buffers holding
    them (adjacent untouched packets share one buffer, no copy), Annex-B video rewritten
    length-prefixed, ADTS headers stripped from AAC; and the AudioSpecificConfig the first
    ADTS header gave (b"" if none)."""
    offset, size = cols.offset, cols.size
    if not annexb and not adts:
        sizes, views = _native.cliptab.sample_runs(payload, offset, size, idxs)
        return _Pieces(sizes, views), b""
    asc = b""
    pieces: list[bytes | memoryview] = []
    for i in idxs:
        data = payload[offset[i] : offset[i] + size[i]]
        if annexb:
            data = annexb_to_length_prefixed(bytes(data))
        elif (conv := adts_to_asc(bytes(data[:7]))) is not None:
            asc = asc or conv[0]
            data = data[conv[1] :]
        pieces.append(data)
    return _Pieces([len(x) for x in pieces], pieces), asc


class BlockSink:
    """Where a native MP4 goes: a path (written with writev, no joining copies, into a file
    put in place once whole: see ClipOutput) or a file object (fed blocks of about
    ``BLOCK_BYTES``). Errors writing a path come out as vstore errors (a full disk as
    StorageFull)."""

    def __init__(self, out: str | os.PathLike[str] | IO[bytes]) -> None:
        self.count = 0
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self.path: Path | None = None
        self._fd = -1
        self._output: ClipOutput | None = None
        self._file: IO[bytes] | None = None
        if isinstance(out, str | os.PathLike):
            self.path = Path(out)
            self._output = ClipOutput(self.path)
            self._fd = self._output.open_fd()
        else:
            self._file = out

    def put(self, bufs: list[bytes | memoryview]) -> None:
        self._pending += bufs
        self._pending_bytes += sum(map(len, bufs))
        if self._pending_bytes >= BLOCK_BYTES or self.count == 0:
            self._flush()

    def _flush(self) -> None:
        bufs, self._pending, n = self._pending, [], self._pending_bytes
        self._pending_bytes = 0
        if not bufs:
            return
        if self._file is not None:
            self._file.write(b"".join(bufs))
        else:
            try:
                # writev takes at most IOV_MAX (1024) buffers and may write less than asked.
                for k in range(0, len(bufs), 1024):
                    batch = bufs[k : k + 1024]
                    want = n if len(bufs) <= 1024 else sum(map(len, batch))
                    got = os.writev(self._fd, batch)
                    if got < want:
                        rest = memoryview(b"".join(batch))[got:]
                        while rest:
                            rest = rest[os.write(self._fd, rest) :]
            except OSError as exc:
                raise translate_oserror(exc, f"writing the clip to {self.path}") from exc
        self.count += n

    def close(self) -> None:
        self._flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._output is not None:
            self._output.commit()
            self._output = None

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._output is not None:
            self._output.abort()
            self._output = None


class NativeMp4:
    """Builds a moov-first MP4 straight from the plan's packet tables (no FFmpeg).

    Pass 1 selects the packets in range and fills the sample tables; pass 2 writes
    ``ftyp | moov | mdat`` and then the samples. Because the index is complete before the
    first sample byte, the file streams to a pipe with no staging.

    When the tables give every sample's MP4 size (video stored length-prefixed and AAC
    without ADTS headers, or the sample-size column of Annex-B video and ADTS audio) and
    the footage is local, pass 1 reads only the chunks' packet tables, so the first byte
    leaves after a few small reads; pass 2 then reads each chunk once, checks its CRC and
    its samples' sizes against those the moov was built from, and streams it. A chunk that
    fails there is a gap like any other when the clip goes to a path (the file is written
    again without it); a stream already under way stops with CorruptSegment.
    Otherwise (Annex-B video or ADTS audio written before format version 2, or tiered
    footage) pass 1 reads and checks each chunk, keeping up to KEEP_BYTES of it.
    """

    def __init__(
        self, store: Store, plan: ClipPlan, strict: bool = False, keep_bytes: int = KEEP_BYTES
    ) -> None:
        self.store, self.plan, self.strict = store, plan, strict
        self.keep_bytes = keep_bytes
        self.readers: dict[int, SegmentReader] = {}
        first = plan.parts[0].segment
        self.meta0 = self._reader(first).meta
        self.tracks: dict[int, _TrackOut] = {}
        self.dropped: list[str] = []
        self.chunks: list[_PlannedChunk] = []
        self._begun = False  # a chunk of the clip's pictures was selected (not the lead)
        self.payload_bytes = 0
        self.starts: list[int] = []  # each planned chunk's first byte in the mdat payload
        self.kept: set[int] = set()  # ids of the tracks in the file
        self.head = b""
        self.size = 0
        self.tables_only = False

    def _reader(self, seg: SegmentRow) -> SegmentReader:
        rd = self.readers.get(seg.segment_id)
        if rd is None:
            rd = self.store.segment_reader(seg)
            self.readers[seg.segment_id] = rd
        return rd

    def close(self) -> None:
        for rd in self.readers.values():
            rd.close()

    def supported(self) -> bool:
        """Video in H.264/H.265 and audio in AAC (or not storable at all): the other audio
        codecs MP4 can hold (MP3, Opus) go through FFmpeg's muxer."""
        for t in self.meta0.tracks:
            if t.kind == "video" and t.codec not in ("h264", "hevc"):
                return False
            if t.kind == "audio" and t.codec != "aac" and t.codec in AUDIO_CODECS_OK["mp4"]:
                return False
        return True

    def _setup_tracks(self) -> None:
        track_id = 1
        for t in self.meta0.tracks:
            if t.kind == "audio" and t.codec != "aac":
                self.dropped.append(not_storable(t, "mp4"))
                continue
            if t.kind == "video":
                scale = t.time_base[1]
            else:
                scale = t.sample_rate or (asc_sample_rate(t.extradata) if t.extradata else 0)
                scale = scale or 48000
            out = Mp4Track(track_id, t.kind, scale, b"", t.width, t.height)
            self.tracks[t.index] = _TrackOut(
                t,
                out,
                adts=t.kind == "audio" and not t.extradata,
                annexb=t.kind == "video" and t.bitstream != "avcc",
                asc=t.extradata if t.kind == "audio" else b"",
            )
            if t.kind == "audio":
                rate = t.sample_rate or scale
                out.sample_duration = max(1, AAC_FRAME_SAMPLES * scale // rate)
                self.tracks[t.index].covering_ns = aac_lead_in_ns(rate)
            track_id += 1

    def _select(
        self, meta: fmt.SegmentMeta, cols: fmt.PacketColumns, lead: bool = False
    ) -> list[tuple[int, list[int]]]:
        """Packets of a chunk (its table ``cols``) inside the clip, grouped per track (video
        first); appends their times and key flags to the sample tables (sizes come with the
        pieces). Of the plan's ``lead`` chunk, its sound only."""
        start, end = self.plan.start_ns, self.plan.end_ns
        first = not self._begun  # the clip's first chunk: decoding starts at its keyframe
        self._begun = self._begun or not lead
        plus_ns = meta.anchor_wall_ns - meta.anchor_media_ns - start
        picked: list[tuple[int, list[int]]] = []
        select = _native.cliptab.select_track
        for tr in sorted(set(cols.track)):
            out = self.tracks.get(tr)
            if out is None or (lead and out.src.kind == "video"):
                continue
            m = out.mp4
            tb_num, tb_den = meta.tracks[tr].time_base
            got = select(
                cols.pts,
                cols.dts,
                cols.flags,
                cols.track,
                tr,
                tb_num,
                tb_den,
                plus_ns,
                end - start,
                m.timescale,
                out.src.kind == "video",
                first,
                fmt.PKT_KEY,
                out.covering_ns,
            )
            if got is None:
                continue
            sel, dts, cts, keys = got
            base = len(m.dts) + 1  # stss counts samples from 1
            m.dts.extend(dts)
            m.cts.extend(cts)
            m.sync.extend([base + k for k in keys])
            picked.append((tr, sel))
        return picked

    def _pieces(self, chunk: Any, samples: list[tuple[int, list[int]]]) -> list[_Pieces]:
        """The selected packets' bytes in MP4 sample form, per track (see sample_pieces)."""
        out: list[_Pieces] = []
        for tr, idxs in samples:
            t = self.tracks[tr]
            pieces, asc = sample_pieces(chunk.payload, chunk.columns, idxs, t.annexb, t.adts)
            t.asc = t.asc or asc
            out.append(pieces)
        return out

    def _each_chunk(
        self, read: Callable[[SegmentReader, ChunkRow], T]
    ) -> Iterator[tuple[SegmentReader, ChunkRow, T]]:
        """The plan's chunks in order with what ``read`` made of each, up to a codec change
        (which ends the clip there). Chunks that do not verify are collected and raised as
        DamagedChunks once the rest were read (the clip is planned again without them:
        nothing of this pass is written); ``strict`` raises at the first."""
        signature = track_signature(self.meta0.tracks)
        damaged: list[ChunkRow] = []
        for part in self.plan.read_parts:
            lead_only = self.plan.is_lead(part)  # (another segment's chunk, for its sound)
            try:
                rd = self._reader(part.segment)
                tracks = rd.meta.tracks
            except CorruptSegment:  # (its header: every chunk of it is unreadable)
                if self.strict and not lead_only:
                    raise
                damaged.extend(part.chunks)
                continue
            if track_signature(tracks) != signature:
                if lead_only:
                    continue  # (recorded otherwise: the clip's sound starts at its own)
                end_at_codec_change(self.plan, part)
                break
            for c in part.chunks:
                try:
                    got = read(rd, c)
                except CorruptSegment:
                    # The lead chunk is no part of the clip: damage there is no failure of
                    # it, even strict (the clip is made without that chunk's sound).
                    if self.strict and c is not self.plan.lead_chunk:
                        raise
                    damaged.append(c)
                    continue
                yield rd, c, got
        if damaged:
            raise DamagedChunks(damaged)

    def _pass1(self, progress: Callable[[int, int], None] | None) -> None:
        kept = 0
        done, total = 0, 2 * self.plan.bytes
        for rd, c, chunk in self._each_chunk(
            lambda rd, c: rd.read_chunk(c.offset, c.length, c.crc32)
        ):
            samples = self._select(rd.meta, chunk.columns, c is self.plan.lead_chunk)
            pieces = self._pieces(chunk, samples)
            keep = kept + c.length <= self.keep_bytes
            kept += c.length if keep else 0
            sizes = [ps.sizes for ps in pieces]
            self.chunks.append(_PlannedChunk(rd, c, samples, pieces if keep else None, sizes, True))
            done += c.length
            if progress is not None:
                progress(done, total)

    def _place(self, kept: set[int]) -> None:
        """Where each planned chunk's samples of the kept tracks sit in the mdat payload
        (in output order, a chunk's tracks one after another): the tracks' chunk tables,
        and ``starts`` for reading the file at any offset."""
        at = 0
        self.starts = []
        for pc in self.chunks:
            self.starts.append(at)
            for (tr, _idxs), sizes in zip(pc.samples, pc.sizes, strict=True):
                m = self.tracks[tr].mp4
                if m.track_id in kept:
                    m.chunk_offsets.append(at)
                    m.chunk_samples.append(len(sizes))
                    m.sizes.extend(sizes)
                    at += sum(sizes)
        self.payload_bytes = at

    def _rewritten(self) -> bool:
        """Whether some track's samples change size on their way into the MP4."""
        return any(t.annexb or t.adts for t in self.tracks.values())

    def _tables_suffice(self) -> bool:
        """Every sample's MP4 size is in the tables: the stored size, or for Annex-B video
        and ADTS audio the chunk's sample-size column (chunks written since format version
        2); and the chunks are local (a table read from object storage would cost a request
        of its own)."""
        if any(p.segment.location != "local" for p in self.plan.read_parts):
            return False
        return not self._rewritten() or all(
            c.flags & fmt.CHUNK_SAMPLE_SIZES for p in self.plan.read_parts for c in p.chunks
        )

    def _pass1_tables(self) -> None:
        """Pass 1 from the packet tables alone (see the class notes)."""
        rewritten = self._rewritten()

        def read(
            rd: SegmentReader, c: ChunkRow
        ) -> tuple[fmt.ChunkHeader, fmt.PacketColumns, bytes]:
            head, cols, table = rd.read_table_bytes(c.offset, c.length)
            if rewritten and cols.sample_size is None:  # the index said it has the column
                raise CorruptSegment(f"{rd.name}@{c.offset}: no sample sizes")
            return head, cols, table

        for rd, c, (head, cols, table) in self._each_chunk(read):
            samples = self._select(rd.meta, cols, c is self.plan.lead_chunk)
            planned: list[list[int]] = []
            for tr, idxs in samples:
                t = self.tracks[tr]
                if t.adts and not t.asc:
                    t.asc = self._adts_config(rd, c, head, cols.offset[idxs[0]])
                size = cols.sample_size if t.annexb or t.adts else cols.size
                assert size is not None  # (read() checked)
                planned.append(list(map(size.__getitem__, idxs)))
            self.chunks.append(_PlannedChunk(rd, c, samples, None, planned, False, (table, cols)))

    @staticmethod
    def _adts_config(rd: SegmentReader, c: ChunkRow, head: fmt.ChunkHeader, at: int) -> bytes:
        """The AudioSpecificConfig from an ADTS packet's header (7 bytes read; pass 2 checks
        the chunk, and every sample's size, before any of it goes out)."""
        conv = adts_to_asc(rd.src.read(c.offset + head.payload_offset + at, 7))
        return conv[0] if conv is not None else b""

    def _read_planned(self, pc: _PlannedChunk, streaming: bool) -> list[_Pieces]:
        """Pass 2's read of a chunk whose pieces pass 1 did not keep, checked: its CRC, and
        its samples against the sizes the moov was built from."""
        try:
            chunk = pc.reader.read_chunk(pc.row.offset, pc.row.length, pc.row.crc32, pc.known)
            pieces = self._pieces(chunk, pc.samples)
            if [p.sizes for p in pieces] != pc.sizes:
                raise CorruptSegment(
                    f"{pc.reader.name}@{pc.row.offset}: samples differ from the sizes in the "
                    "packet table"
                )
        except CorruptSegment as exc:
            if (self.strict and pc.row is not self.plan.lead_chunk) or pc.verified:
                raise
            if streaming:
                raise CorruptSegment(
                    f"{exc} (found while the clip streamed, after its index was sent: the "
                    "clip stops here; `vstore check --repair` records the damage, and a "
                    "clip made again shows it as a gap)"
                ) from exc
            raise DamagedChunks([pc.row]) from exc
        return pieces

    def _sample_entries(self) -> list[Mp4Track]:
        out: list[Mp4Track] = []
        for t in self.tracks.values():
            if not t.mp4.dts:
                continue  # nothing of this track inside the range
            src = t.src
            if src.kind == "video":
                if src.bitstream == "avcc":
                    record = src.extradata
                else:
                    params = src.extradata or self._inband_params(t)
                    record = (avcc_record if src.codec == "h264" else hvcc_record)(params)
                t.mp4.sample_entry = visual_entry(src.codec, src.width, src.height, record)
            else:
                if not t.asc:
                    self.dropped.append(
                        f"audio track {src.index} (aac) has no AudioSpecificConfig or ADTS "
                        "headers to describe it; left out"
                    )
                    continue
                rate = src.sample_rate or asc_sample_rate(t.asc)
                t.mp4.sample_entry = aac_entry(src.channels, rate, t.asc, t.mp4.track_id)
            # The clip's own end (pass 1 may have moved it to a codec change) ends every track.
            t.mp4.end_limit = ns_to_ticks(self.plan.end_ns - self.plan.start_ns, 1, t.mp4.timescale)
            if src.kind == "video" and len(t.mp4.dts) == 1:
                # One frame (a clip shorter than two): it is shown to the clip's end. (A
                # table has no next frame to tell its length; a length of one tick rounds to
                # a track of no time, which players show as nothing.)
                shown = t.mp4.dts[0] + t.mp4.cts[0]
                t.mp4.sample_duration = max(1, t.mp4.end_limit - shown)
            out.append(t.mp4)
        return out

    def _inband_params(self, t: _TrackOut) -> bytes:
        """Parameter sets from the first keyframe, for Annex-B tracks recorded without them."""
        codec = _native.CODEC_H264 if t.src.codec == "h264" else _native.CODEC_HEVC
        pc = next(pc for pc in self.chunks if pc.row is not self.plan.lead_chunk)
        chunk = pc.reader.read_chunk(pc.row.offset, pc.row.length, pc.row.crc32)
        for i, tr in enumerate(chunk.columns.track):
            if tr == t.src.index and chunk.columns.flags[i] & fmt.PKT_KEY:
                off, size = chunk.columns.offset[i], chunk.columns.size[i]
                return _native.nal.parameter_sets(bytes(chunk.payload[off : off + size]), codec, 0)
        return b""

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Pass 1 and the file's layout: ``head`` (``ftyp | moov | mdat`` header) and
        ``size`` are known after it, before any payload byte is read again."""
        self._setup_tracks()
        self.tables_only = self._tables_suffice()
        if self.tables_only:
            self._pass1_tables()
        else:
            self._pass1(progress)
        tracks = self._sample_entries()
        if not any(t.kind == "video" for t in tracks):
            raise NotFound("no video frames inside the requested range")
        self.kept = {t.track_id for t in tracks}
        self._place(self.kept)
        plan = self.plan
        metadata = {
            "vstore_start": format_time(plan.start_ns),
            "vstore_start_ns": str(plan.start_ns),
            "vstore_camera": plan.camera,
        }
        self.head = mp4_layout(tracks, self.payload_bytes, plan.start_ns // NS_PER_S, metadata)
        self.size = len(self.head) + self.payload_bytes

    def _chunk_bufs(self, i: int, streaming: bool) -> list[bytes | memoryview]:
        """The bytes planned chunk ``i`` puts in the mdat payload, read and checked."""
        pc = self.chunks[i]
        if not pc.samples:  # (a tail chunk with nothing shown before the end: never read)
            return []
        pieces = pc.pieces if pc.pieces is not None else self._read_planned(pc, streaming)
        out: list[bytes | memoryview] = []
        for (tr, _i), ps in zip(pc.samples, pieces, strict=True):
            if self.tracks[tr].mp4.track_id in self.kept:
                out += ps.bufs
        return out

    def read_range(self, start: int, end: int) -> Iterator[list[bytes | memoryview]]:
        """Bytes ``start`` to ``end`` (exclusive) of the prepared file, in blocks of buffers:
        only the chunks the range covers are read (each checked as a whole). A chunk that
        fails its check raises CorruptSegment (the bytes before it are already out)."""
        end = min(end, self.size)
        head_len = len(self.head)
        if start < head_len:
            yield [memoryview(self.head)[start : min(end, head_len)]]
        lo, hi = max(start - head_len, 0), end - head_len
        i = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        while i < len(self.chunks) and self.starts[i] < hi:
            at = self.starts[i]
            out: list[bytes | memoryview] = []
            for b in self._chunk_bufs(i, streaming=True):
                n = len(b)
                a, z = max(lo - at, 0), min(hi - at, n)
                if a < z:
                    out.append(b if a == 0 and z == n else memoryview(b)[a:z])
                at += n
            if out:
                yield out
            i += 1

    def write(
        self,
        out: str | os.PathLike[str] | IO[bytes],
        t0: float,
        progress: Callable[[int, int], None] | None,
    ) -> ClipResult:
        self.prepare(progress)
        plan = self.plan
        sink = BlockSink(out)
        try:
            sink.put([self.head])
            first_byte = time.perf_counter() - t0
            done, total = (0, plan.bytes) if self.tables_only else (plan.bytes, 2 * plan.bytes)
            streaming = sink.path is None
            for i, pc in enumerate(self.chunks):
                sink.put(self._chunk_bufs(i, streaming))
                done += pc.row.length
                if progress is not None:
                    progress(done, total)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        written = sink.count
        counts = {"video": 0, "audio": 0}
        for t in self.tracks.values():
            if t.mp4.track_id in self.kept:
                counts[t.src.kind] += len(t.mp4.sizes)
        return ClipResult(
            plan,
            "mp4",
            written,
            counts["video"],
            counts["audio"],
            time.perf_counter() - t0,
            first_byte,
            self.dropped,
            "native",
        )
