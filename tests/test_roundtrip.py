"""Round trip: packets in equal packets out (bytes and timestamps), and they still decode.

Footage comes from tools.camsim (a frame counter is encoded into each picture), is imported
through PyAV, read back through the index, and decoded with the codec parameters the segment
itself carries. Runs under both native implementations via `make test`.
"""

from __future__ import annotations

import itertools

import av
import pytest

from tests.conftest import START_NS
from tools.camsim import read_frame_counter
from vstore.base.timebase import ticks_to_ns
from vstore.ingest.file_import import import_file
from vstore.segment.reader import SegmentReader

CASES = [
    ("h264.ts", {"codec": "h264"}),
    ("hevc.ts", {"codec": "hevc"}),
    ("h264.mp4", {"codec": "h264"}),
    ("hevc.mkv", {"codec": "hevc"}),
    ("h264-aac.ts", {"codec": "h264", "audio": "aac"}),
    ("h264-mulaw.mov", {"codec": "h264", "audio": "pcm_mulaw"}),
    ("hevc-aac.mp4", {"codec": "hevc", "audio": "aac"}),
]


def source_packets(path):
    out = []
    with av.open(str(path)) as c:
        streams = [c.streams.video[0], *c.streams.audio]
        order = {s.index: i for i, s in enumerate(streams)}
        for p in c.demux(streams):
            if p.size:
                out.append((order[p.stream.index], p.pts, p.dts, bytes(p), bool(p.is_keyframe)))
    return out


def decode_counters(track, packets):
    """Decode stored video packets with only the segment's own codec parameters."""
    ctx = av.CodecContext.create(track.codec, "r")
    if track.extradata:
        ctx.extradata = track.extradata
    counters = []
    for p in packets:
        pkt = av.Packet(p.data)
        pkt.pts, pkt.dts = p.pts, p.dts
        for frame in ctx.decode(pkt):
            counters.append(read_frame_counter(frame.to_ndarray(format="rgb24")))
    for frame in ctx.decode(None):
        counters.append(read_frame_counter(frame.to_ndarray(format="rgb24")))
    return counters


@pytest.mark.parametrize("name,spec", CASES, ids=[c[0] for c in CASES])
def test_packets_in_equal_packets_out(store, media, name, spec):
    path = media(name, 4.0, gop_frames=25, **spec)
    src = source_packets(path)
    # Audio that the container interleaves before the first video keyframe waits for it:
    # what is timed from the keyframe on is stored with its GOP, what is timed before it
    # has no GOP to belong to, and is dropped and counted.
    first_key = next(i for i, s in enumerate(src) if s[0] == 0 and s[4])
    assert all(s[0] != 0 for s in src[:first_key])
    with av.open(str(path)) as c:
        tbs = [c.streams.video[0].time_base, *(a.time_base for a in c.streams.audio)]
    key_s = src[first_key][1] * tbs[0]
    late = [s for s in src[:first_key] if s[1] * tbs[s[0]] >= key_s]
    res = import_file(store, path, "cam", START_NS)
    assert res.stats["dropped_before_keyframe"] == first_key - len(late)
    assert res.stats["discontinuities"] == 0
    src = late + src[first_key:]

    out = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert len(out) == len(src)
    # Within one chunk, audio and video keep their arrival order; compare per track.
    for track in {s[0] for s in src}:
        a = [s for s in src if s[0] == track]
        b = [p for p in out if p.track == track]
        assert [x[3] for x in a] == [bytes(p.data) for p in b]
        assert [(x[1], x[2]) for x in a] == [(p.pts, p.dts) for p in b]
    video = [p for p in out if p.track == 0]
    assert video[0].is_key and video[0].wall_ns == START_NS
    assert [p.is_key for p in video] == [s[4] for s in src if s[0] == 0]

    seg = next(store.index.segments(store.camera_num("cam")))
    with SegmentReader.open(store.layout.path(seg.path)) as rd:
        rd.verify()
        vtrack = rd.meta.tracks[0]
        assert len(rd.meta.tracks) == (2 if "audio" in spec else 1)
    tb = vtrack.time_base
    first = video[0].pts
    for p in video:
        assert p.wall_ns == START_NS + ticks_to_ns(p.pts - first, *tb)
    counters = decode_counters(vtrack, video)
    assert counters == list(range(len(video)))


def test_gop_chunks_start_on_keyframes(store, media):
    path = media("h264.ts", 4.0, codec="h264", gop_frames=25)
    import_file(store, path, "cam", START_NS)
    cam = store.camera_num("cam")
    rows = list(store.index.chunks(cam, START_NS, START_NS + 10**12))
    assert len(rows) >= 4
    for a, b in itertools.pairwise(rows):
        assert a.end_ns == b.start_ns  # chunks tile time without holes or overlaps
    for row in rows:
        pk = list(store.read_packets("cam", row.start_ns, row.start_ns + 1))
        assert pk[0].is_key


def test_segments_roll_at_keyframes_after_target_duration(store_dir, media):
    from vstore.api import open_store

    store_dir.mkdir(parents=True)
    (store_dir / "vstore.toml").write_text("[store]\nsegment_duration_s = 1\n")
    path = media("h264.ts", 4.0, codec="h264", gop_frames=25)
    with open_store(store_dir) as st:
        import_file(st, path, "cam", START_NS)
        segs = list(st.index.segments(st.camera_num("cam")))
        assert len(segs) == 4  # 4 s of 1 s GOPs, 1 s target
        for a, b in itertools.pairwise(segs):
            assert a.end_ns == b.start_ns
        total = sum(s.packet_count for s in segs)
        assert total == 100


@pytest.mark.parametrize("size", [1000, 30_000], ids=["joined", "as-parts"])
def test_gop_payload_written_as_parts_or_joined_is_the_same_chunk(store_dir, monkeypatch, size):
    """A large GOP is checksummed, hashed and written as the packets' own buffers (no second
    copy in memory), a small one joined first: both must give the same bytes, which verify."""
    from vstore.api import open_store
    from vstore.segment import writer as segment_file_writer
    from vstore.segment.format import TrackInfo

    video = TrackInfo(index=0, kind="video", codec="h264", time_base=(1, 90000))
    key = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65"
    delta = b"\x00\x00\x00\x01\x41"

    def record(cam):
        with open_store(store_dir) as st, st.writer(cam, [video], start_ns=START_NS) as w:
            for i in range(150):  # three 50-packet GOPs
                head = key if i % 50 == 0 else delta
                data = head + bytes([i % 251]) * (size - len(head))
                w.write_raw(0, i * 3600, i * 3600, i % 50 == 0, data)

    record("parts")
    monkeypatch.setattr(segment_file_writer, "JOIN_MAX_BYTES", 1 << 40)
    record("joined")
    chunks = {}
    for cam in ("parts", "joined"):
        [path] = sorted((store_dir / "segments" / cam).rglob("*.vseg"))
        data = path.read_bytes()
        with SegmentReader.open(path) as reader:
            reader.verify()
            chunks[cam] = [data[e.offset : e.offset + e.length] for e in reader.directory()]
    assert len(chunks["parts"]) == 3
    assert chunks["parts"] == chunks["joined"]
