"""Sealing a segment: the footer (the chunk directory) and the trailer (content length,
footer CRC, SHA-256 of the content) that make a file self-describing. One copy, used by the
writer as it closes a file and by recovery as it seals one a crash left open."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

from vstore.base.fsutil import Fs
from vstore.segment import format as fmt
from vstore.segment.reader import FileSource

_HASH_BLOCK_BYTES = 4 << 20


def seal_parts(
    entries: list[fmt.DirEntry], end_ns: int, content_end: int, digest: bytes
) -> list[bytes]:
    """The footer and trailer that follow ``content_end`` bytes of content hashing to
    ``digest``: what a segment file ends with."""
    footer = fmt.pack_footer(entries, end_ns)
    trailer = fmt.pack_trailer(fmt.Trailer(content_end, len(footer), zlib.crc32(footer), digest))
    return [footer, trailer]


def content_digest(path: Path, end: int) -> bytes:
    """SHA-256 of a file's first ``end`` bytes (the content a trailer vouches for)."""
    h = hashlib.sha256()
    with FileSource(path) as src:
        pos = 0
        while pos < end:
            n = min(_HASH_BLOCK_BYTES, end - pos)
            h.update(src.read(pos, n))
            pos += n
    return h.digest()


def seal_file(fs: Fs, fd: int, path: Path, entries: list[fmt.DirEntry], end: int) -> None:
    """Seal an open file whose whole chunks end at ``end``: hash the content, write footer
    and trailer after it (overwriting any torn tail), fsync."""
    parts = seal_parts(entries, entries[-1].end_ns, end, content_digest(path, end))
    os.lseek(fd, end, os.SEEK_SET)
    fs.writev(fd, parts)
    fs.fsync(fd)
