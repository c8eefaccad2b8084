"""Child for bench_real_footage: the physical floor of importing a file, as its own process.

What any import of the file into vstore must do at least, with nothing of vstore's own:
demux every packet with PyAV (FFmpeg's demuxer, the one `vstore import` uses), hash every
byte with SHA-256 (the segment digest the evidence chain signs) and CRC-32 (the chunk
checksum, through ISA-L as the writer does), and write the bytes out, one write per MiB,
fsynced and dropped from the page cache every 32 MiB (about a segment's worth: an import is
durable segment by segment, and the writer leaves no footage in the cache).
Usage: ``python -m bench.import_floor SRC OUT``.
"""

from __future__ import annotations

import hashlib
import os
import sys

import av
from isal.isal_zlib import crc32

SEGMENT_BYTES = 32 << 20


def main() -> int:
    src, out = sys.argv[1], sys.argv[2]
    digest = hashlib.sha256()
    crc = 0
    pending: list[bytes] = []
    pending_bytes = 0
    written = synced = 0
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with av.open(src) as container:
            for pkt in container.demux(*container.streams):
                if pkt.size == 0:
                    continue
                data = bytes(pkt)
                digest.update(data)
                crc = crc32(data, crc)
                pending.append(data)
                pending_bytes += len(data)
                if pending_bytes >= 1 << 20 or len(pending) >= 1000:  # (IOV_MAX is 1024)
                    written += os.writev(fd, pending)
                    pending, pending_bytes = [], 0
                    if written - synced >= SEGMENT_BYTES:
                        os.fsync(fd)
                        os.posix_fadvise(fd, synced, written - synced, os.POSIX_FADV_DONTNEED)
                        synced = written
        if pending:
            written += os.writev(fd, pending)
        os.fsync(fd)
        os.posix_fadvise(fd, synced, written - synced, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    print(digest.hexdigest(), crc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
