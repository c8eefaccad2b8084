"""Golden bytes of the segment format: the worked example of docs/design/segment_format.md.

If this test fails, the on-disk format changed: bump FORMAT_VERSION and update the document.
"""

from __future__ import annotations

import hashlib

import pytest

from vstore._py import nal as _py_nal
from vstore._py.ptable import PacketTable
from vstore.base.errors import CorruptSegment
from vstore.base.fsutil import Fs
from vstore.segment import format as fmt
from vstore.segment.reader import FileSource, SegmentReader, scan_chunks
from vstore.segment.writer import SegmentFile

T0 = 1_737_075_600_000_000_000  # 2025-01-17T01:00:00Z
SPS_PPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x68\xce\x3c\x80"
PAYLOAD = b"\x00\x00\x01\x65\x88\x84" + b"\x00\x00\x01\x41\x9a"


def example_segment(tmp_path, version: int = fmt.FORMAT_VERSION):
    """The worked example; ``version`` 1 writes it as vstore did before the sample-size
    column (call with FORMAT_VERSION patched to 1)."""
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
    packets = [PAYLOAD[:6], PAYLOAD[6:]]
    forms = bytes([_py_nal.FORM_ANNEXB])
    sizes = _py_nal.sample_sizes(packets, b"\x00\x00", forms) if version >= 2 else None
    sf.append_chunk(
        fmt.CHUNK_KEY_START, T0, T0 + 80_000_000, t.pack(), 2, packets, sample_sizes=sizes
    )
    size, sha = sf.seal(T0 + 80_000_000)
    return tmp_path / "segments/x.vseg", size, sha


def test_worked_example_bytes(tmp_path):
    path, size, sha = example_segment(tmp_path)
    data = path.read_bytes()
    assert size == len(data) == 577
    assert data[:20].hex(" ") == "89 56 53 45 47 0d 0a 1a 02 00 00 00 5e 01 00 00 a0 c4 82 6d"
    chunk = data[370:]
    assert chunk[:36].hex(" ") == (
        "56 43 48 4b 5f 00 00 00 02 00 00 00 2c 00 00 00 00 09 00 00 "
        "00 a0 ff 05 0e 55 1b 18 00 54 c4 0a 0e 55 1b 18"
    )
    # The sample-size column: 3-byte start codes become 4-byte lengths (6 -> 7, 5 -> 6).
    assert chunk[36 + 36 : 36 + 44].hex(" ") == "07 00 00 00 06 00 00 00"
    assert data[-8:] == b"VSEGEND\x00"
    assert sha == "ba1a7d8c0c8e0c1965142a1e29b179de09cd4417422f3db12c8f862af08b65f4"
    assert hashlib.sha256(data).hexdigest() == (
        "198984cb836fe264c8957439acafb9bb17d8811f76f120f4788fc6e89f7f3498"
    )


def test_version_1_files_are_written_as_before_and_still_read(tmp_path, monkeypatch):
    """The version 1 worked example, byte for byte (the golden digest of vstore 0.1), reads
    back; its chunk has no sample-size column, so its columns carry none."""
    monkeypatch.setattr(fmt, "FORMAT_VERSION", 1)
    path, size, _sha = example_segment(tmp_path, version=1)
    data = path.read_bytes()
    assert size == 569 and data[8:10] == b"\x01\x00"
    assert hashlib.sha256(data).hexdigest() == (
        "48e59c9cdea08f2cac70c5c042abbc8ecb4ebe43206acba9e20b63842ee31f7e"
    )
    monkeypatch.undo()
    with SegmentReader.open(path) as rd:
        [entry] = rd.directory()
        chunk = rd.read_chunk(entry.offset, entry.length, entry.crc32)
        assert chunk.columns.sample_size is None
        assert [bytes(p.data) for p in rd.iter_packets()] == [PAYLOAD[:6], PAYLOAD[6:]]


def test_worked_example_reads_back(tmp_path):
    path, _, _ = example_segment(tmp_path)
    with SegmentReader.open(path) as rd:
        # verify() returns the whole file's SHA-256 (what a tier upload is checked against)
        assert rd.verify() == hashlib.sha256(path.read_bytes()).digest()
        [entry] = rd.directory()
        assert (entry.offset, entry.length, entry.packet_count) == (370, 95, 2)
        assert entry.flags == fmt.CHUNK_KEY_START | fmt.CHUNK_SAMPLE_SIZES
        chunk = rd.read_chunk(entry.offset, entry.length, entry.crc32)
        assert chunk.columns.sample_size == [7, 6]
        pk = list(rd.iter_packets())
        assert [bytes(p.data) for p in pk] == [PAYLOAD[:6], PAYLOAD[6:]]
        assert [p.wall_ns for p in pk] == [T0, T0 + 40_000_000]
        assert rd.meta.tracks[0].extradata == SPS_PPS


@pytest.mark.parametrize("cut", [0, 10, 25, 369, 371, 464, 465, 508, 576])
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
    assert scan.valid_end == (465 if cut >= 465 else 370)
    assert len(scan.entries) == (1 if cut >= 465 else 0)
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
