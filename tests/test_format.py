"""Golden bytes of the segment format: the worked example of docs/design/segment_format.md.

If this test fails, the on-disk format changed: bump FORMAT_VERSION and update the document.
"""

from __future__ import annotations

import hashlib

import pytest

from vstore._py.ptable import PacketTable
from vstore.base.errors import CorruptSegment
from vstore.base.fsutil import Fs
from vstore.segment import format as fmt
from vstore.segment.reader import FileSource, SegmentReader, scan_chunks
from vstore.segment.writer import SegmentFile

T0 = 1_737_075_600_000_000_000  # 2025-01-17T01:00:00Z
SPS_PPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x68\xce\x3c\x80"
PAYLOAD = b"\x00\x00\x01\x65\x88\x84" + b"\x00\x00\x01\x41\x9a"


def example_segment(tmp_path):
    (tmp_path / "segments").mkdir()
    meta = fmt.SegmentMeta(
        camera="cam-1",
        segment_id=1,
        tracks=(
            fmt.TrackInfo(
                0,
                "video",
                "h264",
                (1, 90000),
                extradata=SPS_PPS,
                width=320,
                height=240,
                bitstream="annexb",
            ),
        ),
        anchor_wall_ns=T0,
        anchor_media_ns=0,
        created_ns=T0,
        store_uuid="",
    )
    sf = SegmentFile(Fs(), tmp_path, "segments/x.vseg", meta)
    t = PacketTable()
    t.append(0, 0, 6, fmt.PKT_KEY, 0)
    t.append(3600, 3600, 5, 0, 0)
    sf.append_chunk(
        fmt.CHUNK_KEY_START, T0, T0 + 80_000_000, t.pack(), 2, [PAYLOAD[:6], PAYLOAD[6:]]
    )
    size, sha = sf.seal(T0 + 80_000_000)
    return tmp_path / "segments/x.vseg", size, sha


def test_worked_example_bytes(tmp_path):
    path, size, sha = example_segment(tmp_path)
    data = path.read_bytes()
    assert size == len(data) == 569
    assert data[:20].hex(" ") == "89 56 53 45 47 0d 0a 1a 01 00 00 00 5e 01 00 00 1c 8e 7d e3"
    chunk = data[370:]
    assert chunk[:36].hex(" ") == (
        "56 43 48 4b 57 00 00 00 02 00 00 00 24 00 00 00 00 01 00 00 "
        "00 a0 ff 05 0e 55 1b 18 00 54 c4 0a 0e 55 1b 18"
    )
    assert data[-8:] == b"VSEGEND\x00"
    assert sha == "37cc7c54cc320f83778a7a9631ec225f76f80b7b056952320c73c487a7305cf7"
    assert hashlib.sha256(data).hexdigest() == (
        "48e59c9cdea08f2cac70c5c042abbc8ecb4ebe43206acba9e20b63842ee31f7e"
    )


def test_worked_example_reads_back(tmp_path):
    path, _, _ = example_segment(tmp_path)
    with SegmentReader.open(path) as rd:
        # verify() returns the whole file's SHA-256 (what a tier upload is checked against)
        assert rd.verify() == hashlib.sha256(path.read_bytes()).digest()
        [entry] = rd.directory()
        assert (entry.offset, entry.length, entry.packet_count) == (370, 87, 2)
        pk = list(rd.iter_packets())
        assert [bytes(p.data) for p in pk] == [PAYLOAD[:6], PAYLOAD[6:]]
        assert [p.wall_ns for p in pk] == [T0, T0 + 40_000_000]
        assert rd.meta.tracks[0].extradata == SPS_PPS


@pytest.mark.parametrize("cut", [0, 10, 25, 369, 371, 456, 457, 500, 568])
def test_every_truncation_is_refused_or_scanned_to_whole_chunks(tmp_path, cut):
    path, _, _ = example_segment(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    if cut < 370:
        with pytest.raises(CorruptSegment):
            SegmentReader.open(path)
        return
    with FileSource(path) as src:
        scan = scan_chunks(src)
    assert scan.valid_end == (457 if cut >= 457 else 370)
    assert len(scan.entries) == (1 if cut >= 457 else 0)
    assert not scan.sealed
    with SegmentReader.open(path) as rd, pytest.raises(CorruptSegment):
        rd.directory()


def test_zstd_table_used_when_it_pays():
    t = PacketTable()
    for i in range(50):  # audio: 300-byte frames, 18-byte rows
        t.append(i * 1920, i * 1920, 300 + i % 3, 1, 0)
    raw = t.pack()
    stored, codec = fmt.encode_table(raw, 50, payload_bytes=50 * 301)
    assert codec == fmt.TABLE_ZSTD and len(stored) < len(raw) // 3
    cols = fmt.decode_table(stored, codec, 50)
    assert cols.dts == [i * 1920 for i in range(50)]
    with pytest.raises(CorruptSegment):
        fmt.decode_table(stored[:-3], codec, 50)


def test_table_beside_a_video_gop_is_stored_raw_where_zstd_saves_nothing_worth_its_cpu():
    t = PacketTable()
    for i in range(50):  # a 2 s GOP of 4 Mbit/s video: ~20 KB frames, a 900-byte table
        t.append(i * 3600, i * 3600, 20_000 + i % 3, 1 if i == 0 else 0, 0)
    raw = t.pack()
    stored, codec = fmt.encode_table(raw, 50, payload_bytes=50 * 20_001)
    assert (stored, codec) == (raw, fmt.TABLE_RAW)
    assert fmt.decode_table(stored, codec, 50).size == [20_000 + i % 3 for i in range(50)]


def test_tables_compressed_and_read_by_many_threads_at_once_stay_whole():
    """Camera writers compress, and readers decompress, packet tables on their own threads
    at the same time (a shared zstd context once garbled tables under load)."""
    from concurrent.futures import ThreadPoolExecutor

    def work(seed: int) -> int:
        bad = 0
        for rep in range(150):
            t = PacketTable()
            n = 200 + (seed * 37 + rep) % 300
            for i in range(n):
                t.append(i * 3600 + seed, i * 3600 + seed, 1000 + (i * seed) % 5000, i == 0, 0)
            raw = t.pack()
            stored, codec = fmt.encode_table(raw, n, payload_bytes=len(raw))
            cols = fmt.decode_table(stored, codec, n)
            bad += cols.size != [1000 + (i * seed) % 5000 for i in range(n)]
        return bad

    with ThreadPoolExecutor(4) as ex:
        assert sum(ex.map(work, range(1, 9))) == 0


def test_fast_crc32_equals_zlibs_for_every_size_and_seed():
    import os
    import zlib

    edge = fmt._CRC_BIG_BYTES
    for size in (0, 1, 35, 1000, edge - 1, edge, edge + 1, 65537, 1 << 20):
        data = os.urandom(size)
        for seed in (0, 1, 0xFFFFFFFF, 123456789):
            assert fmt.crc32(data, seed) == zlib.crc32(data, seed)
            assert fmt.crc32(memoryview(data), seed) == zlib.crc32(data, seed)
    parts = [os.urandom(k) for k in (0, 1, 35, 1000, edge, 65537, 7)]
    parts.append(memoryview(os.urandom(300)))
    for seed in (0, 0xFFFFFFFF):
        assert fmt.crc32_parts(parts, seed) == zlib.crc32(b"".join(parts), seed)
