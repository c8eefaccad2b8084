"""Segment reader: parses sealed or torn segment files from their own bytes.

Reads go through a ``ByteSource`` (``FileSource`` for a local file, ``TierSource`` in
``vstore.tier.source`` for ranged object-store GETs), so the same code serves hot and tiered
footage. ``scan_chunks`` walks a file chunk by chunk verifying
checksums, which is how recovery finds the last whole chunk of a torn segment.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import os
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, Self

from vstore.base.errors import CorruptSegment, NotFound
from vstore.base.timebase import ticks_to_ns
from vstore.segment import format as fmt
from vstore.segment.packet import Packet

_HEAD_PROBE = 64 * 1024
# What read_table reads first: a GOP's table (under 8 KiB for 4 s of 25 fps video with
# 48 kHz AAC) and the chunk header in one read.
_TABLE_PROBE = 16 * 1024


class ByteSource(Protocol):
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """Positional reads from a local file (pread: safe from several threads)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"segment file missing: {self.path}") from None

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        out = os.pread(self._fd, length, offset)
        if len(out) != length:
            raise CorruptSegment(
                f"{self.path}: short read at {offset} ({len(out)} of {length} bytes)"
            )
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chunk(NamedTuple):
    header: fmt.ChunkHeader
    columns: fmt.PacketColumns
    payload: memoryview  # of the bytes read
    crc32: int


def read_header(src: ByteSource) -> tuple[fmt.SegmentMeta, int]:
    size = src.size()
    probe = src.read(0, min(size, getattr(src, "head_probe", _HEAD_PROBE)))
    if len(probe) >= fmt.HEADER.size:
        meta_len = fmt.HEADER.unpack_from(probe)[3]
        need = fmt.HEADER.size + meta_len
        if need > len(probe) and need <= size and meta_len <= fmt.MAX_META_BYTES:
            probe = src.read(0, need)
    return fmt.unpack_header(probe)


def parse_chunk(
    buf: bytes,
    expect_crc: int | None = None,
    where: str = "",
    known: tuple[bytes, fmt.PacketColumns] | None = None,
) -> Chunk:
    """Parse and verify one whole chunk's bytes. ``known``: its packet table's bytes and
    their decoding from an earlier read (``read_table_bytes``), reused when the table bytes
    are those (the checksum covers them) rather than decoded again."""
    h = fmt.unpack_chunk_header(buf)
    if h.chunk_len != len(buf):
        raise CorruptSegment(f"{where}chunk length mismatch")
    body_end = h.chunk_len - fmt.CHUNK_CRC.size
    crc = fmt.crc32(memoryview(buf)[:body_end])
    (stored_crc,) = fmt.CHUNK_CRC.unpack_from(buf, body_end)
    if crc != stored_crc or (expect_crc is not None and crc != expect_crc):
        raise CorruptSegment(f"{where}chunk checksum mismatch")
    if known is not None and memoryview(buf)[fmt.CHUNK_HEADER.size : h.payload_offset] == known[0]:
        cols = known[1]
    else:
        cols = _decode_table(buf, h, where)
    payload = memoryview(buf)[h.payload_offset : body_end]  # a view: no copy of the GOP
    return Chunk(h, cols, payload, crc)


def _decode_table(buf: bytes, h: fmt.ChunkHeader, where: str) -> fmt.PacketColumns:
    """The packet table of the chunk whose header ``h`` begins ``buf`` (which holds at least
    header and table), checked against the payload length the header gives."""
    table = memoryview(buf)[fmt.CHUNK_HEADER.size : h.payload_offset]
    cols = fmt.decode_table(table, h.table_codec, h.packet_count, h.flags)
    if sum(cols.size) != h.payload_len:
        raise CorruptSegment(f"{where}packet sizes do not add up to the payload")
    return cols


class ScanResult(NamedTuple):
    meta: fmt.SegmentMeta
    header_len: int
    entries: list[fmt.DirEntry]
    valid_end: int  # offset just past the last whole chunk
    file_size: int
    sealed: bool
    # (offset, length) of damaged byte runs between whole chunks (``resync`` only)
    damaged: list[tuple[int, int]] = []  # noqa: RUF012 - shared default, never mutated


# How far ahead a resync reads at a time while it looks for the next chunk's magic.
_RESYNC_WINDOW = 4 << 20


def _parse_at(src: ByteSource, pos: int, size: int) -> fmt.DirEntry | None:
    """The whole, verified chunk at ``pos``, or None (torn, damaged or not a chunk)."""
    try:
        h = fmt.unpack_chunk_header(src.read(pos, fmt.CHUNK_HEADER.size), 0)
        if pos + h.chunk_len > size:
            return None
        c = parse_chunk(src.read(pos, h.chunk_len))
    except CorruptSegment:
        return None
    return fmt.DirEntry(pos, h.chunk_len, h.start_ns, h.end_ns, h.packet_count, c.crc32, h.flags)


def _next_chunk(src: ByteSource, pos: int, size: int) -> fmt.DirEntry | None:
    """The first whole, verified chunk that starts after ``pos`` (found by its magic; a
    magic inside a payload fails its checksum and is passed over)."""
    magic = fmt.CHUNK_MAGIC
    start = pos + 1
    while start + fmt.CHUNK_OVERHEAD <= size:
        n = min(_RESYNC_WINDOW, size - start)
        buf = src.read(start, n)
        at = buf.find(magic)
        while at >= 0:
            e = _parse_at(src, start + at, size)
            if e is not None:
                return e
            at = buf.find(magic, at + 1)
        if start + n >= size:
            return None
        start += n - (len(magic) - 1)  # a magic split across two windows is found next time
    return None


def scan_chunks(src: ByteSource, *, resync: bool = False) -> ScanResult:
    """Walk chunks from the header on. Without ``resync`` the walk stops at the first torn
    or corrupt chunk; with it, a damaged run is stepped over to the next chunk that
    verifies (recorded in ``damaged``), so one bad chunk never costs the good ones after
    it. ``valid_end`` is the end of the last whole chunk either way."""
    meta, header_len = read_header(src)
    size = src.size()
    sealed = False
    if size >= header_len + fmt.TRAILER_BYTES:
        try:
            t = fmt.unpack_trailer(src.read(size - fmt.TRAILER_BYTES, fmt.TRAILER_BYTES))
            sealed = t.footer_offset + t.footer_len + fmt.TRAILER_BYTES == size
        except CorruptSegment:
            sealed = False
    pos = header_len
    entries: list[fmt.DirEntry] = []
    damaged: list[tuple[int, int]] = []
    while pos + fmt.CHUNK_OVERHEAD <= size:
        e = _parse_at(src, pos, size)
        if e is None:
            if not resync:
                break
            e = _next_chunk(src, pos, size)
            if e is None:
                break  # nothing whole after it: a torn tail
            damaged.append((pos, e.offset - pos))
        entries.append(e)
        pos = e.offset + e.length
    return ScanResult(meta, header_len, entries, pos, size, sealed, damaged)


class SegmentReader:
    """Reads a segment through a ByteSource: header, directory, chunks, packets."""

    def __init__(self, src: ByteSource, name: str = "") -> None:
        self.src = src
        self.name = name
        self.meta, self.header_len = read_header(src)
        self._entries: list[fmt.DirEntry] | None = None
        self._trailer: fmt.Trailer | None = None

    @classmethod
    def open(cls, path: Path) -> "SegmentReader":
        return cls(FileSource(path), str(path))

    def close(self) -> None:
        close = getattr(self.src, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trailer(self) -> fmt.Trailer:
        if self._trailer is None:
            size = self.src.size()
            if size < self.header_len + fmt.TRAILER_BYTES:
                raise CorruptSegment(f"{self.name}: segment is not sealed (too short)")
            self._trailer = fmt.unpack_trailer(
                self.src.read(size - fmt.TRAILER_BYTES, fmt.TRAILER_BYTES)
            )
        return self._trailer

    def directory(self) -> list[fmt.DirEntry]:
        if self._entries is None:
            t = self.trailer()
            footer = self.src.read(t.footer_offset, t.footer_len)
            if zlib.crc32(footer) != t.footer_crc:
                raise CorruptSegment(f"{self.name}: footer checksum mismatch")
            self._entries, _end = fmt.unpack_footer(footer)
        return self._entries

    def read_chunk(
        self,
        offset: int,
        length: int,
        crc32: int | None = None,
        known: tuple[bytes, fmt.PacketColumns] | None = None,
    ) -> Chunk:
        return parse_chunk(self.src.read(offset, length), crc32, f"{self.name}@{offset}: ", known)

    def read_table(self, offset: int, length: int) -> tuple[fmt.ChunkHeader, fmt.PacketColumns]:
        """A chunk's header and packet table without its payload: one small read (two for
        a table past the probe). Not yet verified: the chunk's checksum covers the table
        with the payload, so a caller that acts on it checks the whole chunk before it
        trusts the result (the clip writer does, as it streams the payload)."""
        h, cols, _table = self.read_table_bytes(offset, length)
        return h, cols

    def read_table_bytes(
        self, offset: int, length: int
    ) -> tuple[fmt.ChunkHeader, fmt.PacketColumns, bytes]:
        """``read_table``, and the table's bytes (``read_chunk`` then reuses the decoding
        when the chunk holds those bytes)."""
        where = f"{self.name}@{offset}: "
        head = self.src.read(offset, min(length, _TABLE_PROBE))
        h = fmt.unpack_chunk_header(head)
        if h.chunk_len != length:
            raise CorruptSegment(f"{where}chunk length mismatch")
        if h.payload_offset > len(head):
            head = self.src.read(offset, h.payload_offset)
        table = bytes(memoryview(head)[fmt.CHUNK_HEADER.size : h.payload_offset])
        return h, _decode_table(head, h, where), table

    def iter_packets(self, entries: list[fmt.DirEntry] | None = None) -> Iterator[Packet]:
        """Every packet of the given chunks (default: all), in stored order, with wall time."""
        for e in entries if entries is not None else self.directory():
            chunk = self.read_chunk(e.offset, e.length, e.crc32)
            yield from chunk_packets(self.meta, chunk)

    def verify(
        self, pace: Callable[[int], None] | None = None, damaged: Collection[int] = ()
    ) -> bytes:
        """Full check in one pass over the bytes: structure, every chunk's checksum and
        tables, and the content SHA-256. Returns the SHA-256 of the whole file (what an
        object store verifies an upload against), so nothing needs a second read.
        ``pace(n)`` is called before each read of n bytes (a tier job's bandwidth cap).
        ``damaged``: offsets of chunks whose damage is known and recorded (lifecycle R6):
        not checked, and the content hash, which they change, neither; every other chunk
        is."""

        def read(offset: int, length: int) -> bytes:
            if pace is not None:
                pace(length)
            return self.src.read(offset, length)

        t = self.trailer()
        entries = self.directory()
        # The whole file's hash continues the content hash (the content is its prefix): each
        # byte is hashed once, not twice (SHA-256 is most of a tier upload's CPU).
        import hashlib  # (on use: a clip checks CRCs, not digests)

        content = hashlib.sha256()
        feed = content.update
        pos = 0
        for e in entries:
            if e.offset < pos or e.offset + e.length > t.footer_offset:
                raise CorruptSegment(f"{self.name}: directory entry at {e.offset} out of place")
            if e.offset > pos:
                feed(read(pos, e.offset - pos))
            buf = read(e.offset, e.length)
            if e.offset not in damaged:
                parse_chunk(buf, e.crc32, f"{self.name}@{e.offset}: ")
            feed(buf)
            pos = e.offset + e.length
        if t.footer_offset > pos:
            feed(read(pos, t.footer_offset - pos))
        if content.digest() != t.sha256 and not damaged:
            raise CorruptSegment(f"{self.name}: content hash mismatch")
        whole = content.copy()
        whole.update(read(t.footer_offset, self.src.size() - t.footer_offset))
        return whole.digest()


def chunk_packets(meta: fmt.SegmentMeta, chunk: Chunk) -> Iterator[Packet]:
    cols = chunk.columns
    payload = chunk.payload
    tbs = [t.time_base for t in meta.tracks]
    dts, pts, size, off = cols.dts, cols.pts, cols.size, cols.offset
    flags, track = cols.flags, cols.track
    for i in range(len(dts)):
        tr = track[i]
        wall = meta.anchor_wall_ns + ticks_to_ns(pts[i], *tbs[tr]) - meta.anchor_media_ns
        yield Packet(
            track=tr,
            pts=pts[i],
            dts=dts[i],
            is_key=bool(flags[i] & fmt.PKT_KEY),
            data=bytes(payload[off[i] : off[i] + size[i]]),
            wall_ns=wall,
            corrupt=bool(flags[i] & fmt.PKT_CORRUPT),
        )
