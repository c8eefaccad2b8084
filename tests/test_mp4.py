"""vstore's own MP4 writer against FFmpeg's muxer on the same plans: the same sample bytes and
times, the same codec configuration records, frame-exact clips with B-frames (where cutting
in presentation order breaks decoding), bounded memory, and damaged footage refused."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import av
import pytest

from tests.conftest import START_NS, ffmpeg_decode_errors
from tools.camsim import read_frame_counter
from vstore.api import open_store
from vstore.base.errors import CorruptSegment
from vstore.codec.annexb import config_to_annexb
from vstore.codec.parameter_sets import avcc_record
from vstore.export import mp4, mp4_clip
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip
from vstore.export.snapshot import snapshot
from vstore.ingest.file_import import import_file

FRAME_NS = 40_000_000


def t(frame: float) -> int:
    return START_NS + int(frame * FRAME_NS)


def _store(tmp_path: Path, media, name: str, **spec):
    st = open_store(tmp_path / "store")
    import_file(st, media(name, 6.0, gop_frames=25, **spec), "cam", START_NS)
    return st


def _demux(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out = {
            "extradata": v.codec_context.extradata,
            "video": [
                (bytes(p), float(p.pts * p.time_base), float(p.dts * p.time_base), p.is_keyframe)
                for p in c.demux(v)
                if p.size
            ],
        }
    with av.open(str(path)) as c:
        out["audio"] = [bytes(p) for p in c.demux(audio=0) if p.size] if c.streams.audio else []
    return out


@pytest.mark.parametrize(
    "name,spec",
    [
        ("h264-aac.ts", {"codec": "h264", "audio": "aac"}),  # Annex-B video, ADTS audio
        ("hevc.ts", {"codec": "hevc"}),
        ("h264-aac.mp4", {"codec": "h264", "audio": "aac"}),  # avcC, raw AAC with ASC
        ("hevc.mkv", {"codec": "hevc"}),
    ],
)
def test_native_mp4_has_ffmpeg_muxers_samples_times_and_records(tmp_path, media, name, spec):
    with _store(tmp_path, media, name, **spec) as st:
        write_clip(st, plan_clip(st, "cam", t(30), t(130)), tmp_path / "native.mp4")
        write_clip(st, plan_clip(st, "cam", t(30), t(130)), tmp_path / "ff.mp4", muxer="ffmpeg")
    ours, theirs = _demux(tmp_path / "native.mp4"), _demux(tmp_path / "ff.mp4")
    assert ours["video"] == theirs["video"]
    assert len(ours["video"]) == 105  # the GOP from frame 25, shown from frame 30 on
    assert ours["audio"] == theirs["audio"]
    assert bool(ours["audio"]) == ("audio" in spec)
    codec = spec["codec"]
    if codec == "h264":
        assert ours["extradata"] == theirs["extradata"]
    else:
        # The same header fields and parameter sets; only array_completeness differs: ours
        # says the sets are complete, as `-tag:v hvc1` (what Apple players need) makes FFmpeg say.
        assert ours["extradata"][:23] == theirs["extradata"][:23]
        assert config_to_annexb("hevc", ours["extradata"]) == config_to_annexb(
            "hevc", theirs["extradata"]
        )


def _counters(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [read_frame_counter(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_b_frame_clips_are_frame_exact_at_both_ends(tmp_path, media, codec):
    with _store(tmp_path, media, f"bf-{codec}.ts", codec=codec, bframes=2) as st:
        for first, last in [(30, 130), (33, 37), (25, 50), (0, 150)]:
            out = tmp_path / f"{first}-{last}.mp4"
            write_clip(st, plan_clip(st, "cam", t(first), t(last)), out)
            assert _counters(out) == list(range(first, last)), (first, last)
            if shutil.which("ffmpeg"):
                assert ffmpeg_decode_errors(out) == ""


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_open_gop_leading_frames_are_shown_at_both_ends(tmp_path, media, codec):
    """Open GOPs (x265's default): frame 24 is sent after keyframe 25 and shown before it,
    so it is stored in keyframe 25's chunk. A clip from inside frame 24, or one that ends
    just after it, shows it; so does a snapshot; and the streaming formats decode every
    frame in order up to the end."""
    src = media(f"og-{codec}.ts", 6.0, codec=codec, bframes=3, gop_frames=25, open_gop=True)
    st = open_store(tmp_path / "store")
    with st:
        import_file(st, src, "cam", START_NS)
        for first, last in [(24.25, 27.5), (23.5, 25.0), (24.0, 25.0), (22.3, 24.9), (60, 100)]:
            out = tmp_path / f"{first}-{last}.mp4"
            write_clip(st, plan_clip(st, "cam", t(first), t(last)), out)
            want = list(range(int(first), -int(-last // 1)))
            assert _counters(out) == want, (first, last)
            if shutil.which("ffmpeg"):
                # A clip that starts at an H.264 recovery-point I-frame carries the GOP's
                # memory-management commands for pictures of the GOP before: FFmpeg warns
                # "mmco: unref short failure" and decodes every frame right (its own
                # `-ss -c copy` cut of such a stream warns the same).
                said = ffmpeg_decode_errors(out).splitlines()
                assert [x for x in said if "mmco: unref short failure" not in x] == []
            snapshot(st, "cam", t(first), tmp_path / "s.png")
            assert _counters(tmp_path / "s.png") == [int(first)]
            for fmt in ("ts", "fmp4"):
                out = tmp_path / f"{first}-{last}.{fmt}"
                write_clip(st, plan_clip(st, "cam", t(first), t(last)), out, format=fmt)
                got = _counters(out)  # from the GOP's keyframe, to a few frames past the end
                assert got == list(range(got[0], got[-1] + 1)), (fmt, first, last)
                assert got[0] <= want[0] and got[-1] >= want[-1], (fmt, first, last)


def test_clip_bigger_than_the_memory_budget_reads_chunks_again(tmp_path, media, monkeypatch):
    with _store(tmp_path, media, "big.ts", codec="h264", audio="aac") as st:
        write_clip(st, plan_clip(st, "cam", t(10), t(140)), tmp_path / "kept.mp4")
        monkeypatch.setattr(mp4_clip, "KEEP_BYTES", 0)
        write_clip(st, plan_clip(st, "cam", t(10), t(140)), tmp_path / "reread.mp4")
    assert (tmp_path / "kept.mp4").read_bytes() == (tmp_path / "reread.mp4").read_bytes()


def _flip_byte(st, part, c) -> None:
    path = st.layout.root / part.segment.path
    with open(path, "r+b") as f:
        f.seek(c.offset + c.length // 2)
        b = f.read(1)
        f.seek(c.offset + c.length // 2)
        f.write(bytes([b[0] ^ 0xFF]))


# .ts: Annex-B video, whose sample sizes change in the rewrite (chunks read and checked
# before the moov); .mp4: stored as MP4 wants it (moov from the packet tables alone).
@pytest.mark.parametrize("source", ["dmg.ts", "dmg.mp4"])
def test_damaged_chunk_is_a_gap_or_with_strict_refuses_the_clip_and_leaves_no_file(
    tmp_path, media, source
):
    with _store(tmp_path, media, source, codec="h264") as st:
        plan = plan_clip(st, "cam", t(30), t(130))
        part = plan.parts[-1]
        c = part.chunks[-1]
        _flip_byte(st, part, c)
        out = tmp_path / "clip.mp4"
        with pytest.raises(CorruptSegment, match="checksum"):
            write_clip(st, plan, out, strict=True)
        assert not out.exists()
        # By default the damaged GOP is a gap, listed as damaged, and the rest is served.
        res = write_clip(st, plan, out)
        assert res.plan.damaged == [(c.start_ns, c.end_ns)] and out.stat().st_size > 0


@pytest.mark.parametrize(
    "name,spec",
    [
        ("once.mp4", {"codec": "h264", "audio": "aac"}),  # stored length-prefixed
        ("once.ts", {"codec": "h264"}),  # Annex-B: sizes from the sample-size column
        ("once-aac.ts", {"codec": "h264", "audio": "aac"}),  # and ADTS audio
        ("once-hevc.ts", {"codec": "hevc"}),
    ],
)
def test_moov_from_the_tables_reads_each_chunk_once(tmp_path, media, monkeypatch, name, spec):
    """The moov comes from the packet tables, and each chunk's payload is read (and
    checked) once, as it streams, whatever the clip length."""
    from vstore.segment.reader import SegmentReader

    with _store(tmp_path, media, name, **spec) as st:
        plan = plan_clip(st, "cam", t(30), t(140))
        whole = tmp_path / "whole.mp4"
        write_clip(st, plan, whole)
        reads: list[int] = []
        real = SegmentReader.read_chunk
        monkeypatch.setattr(mp4_clip, "KEEP_BYTES", 0)
        monkeypatch.setattr(
            SegmentReader,
            "read_chunk",
            lambda self, off, n, crc=None, known=None: (
                reads.append(off) or real(self, off, n, crc, known)
            ),
        )
        again = tmp_path / "again.mp4"
        write_clip(st, plan_clip(st, "cam", t(30), t(140)), again)
    chunks = [c.offset for p in plan.parts for c in p.chunks]
    # Every chunk once in pass 2; only the first GOP also read before, to find the frame
    # on screen at the start.
    assert sorted(set(reads)) == sorted(chunks) and len(reads) <= len(chunks) + 1
    assert again.read_bytes() == whole.read_bytes()
    assert not ffmpeg_decode_errors(again)


def test_annexb_chunks_without_the_sample_size_column_make_the_same_clip(
    tmp_path, media, monkeypatch
):
    """Chunks written before format version 2 have no sample-size column: their clips read
    the payload before the moov, and come out the same byte for byte."""
    from vstore import _native
    from vstore.segment import format as fmt

    src = media("col.ts", 6.0, gop_frames=25, codec="h264")
    clips = []
    for name in ("with", "without"):
        if name == "without":
            monkeypatch.setattr(_native.nal, "sample_sizes", lambda *a: None)
        with open_store(tmp_path / name) as st:
            import_file(st, src, "cam", START_NS)
            plan = plan_clip(st, "cam", t(30), t(130))
            flagged = {bool(c.flags & fmt.CHUNK_SAMPLE_SIZES) for p in plan.parts for c in p.chunks}
            assert flagged == {name == "with"}
            write_clip(st, plan, tmp_path / f"{name}.mp4")
        clips.append((tmp_path / f"{name}.mp4").read_bytes())
    assert clips[0] == clips[1]


def test_damage_found_while_an_mp4_streams_stops_it_with_a_clear_error(tmp_path, media):
    """A stream cannot take back the moov it sent: the clip stops with CorruptSegment,
    saying what to do; to a path the same damage is a gap (test above)."""
    with _store(tmp_path, media, "stream.mp4", codec="h264") as st:
        plan = plan_clip(st, "cam", t(30), t(130))
        _flip_byte(st, plan.parts[-1], plan.parts[-1].chunks[-1])
        buf = io.BytesIO()
        with pytest.raises(CorruptSegment, match="check --repair"):
            write_clip(st, plan, buf)
    assert buf.getvalue()[4:8] == b"ftyp"


def test_mp4_to_a_pipe_starts_with_the_index(tmp_path, media):
    with _store(tmp_path, media, "pipe.ts", codec="h264") as st:
        buf = io.BytesIO()
        res = write_clip(st, plan_clip(st, "cam", t(0), t(50)), buf)
    data = buf.getvalue()
    assert data[4:8] == b"ftyp" and data.index(b"moov") < data.index(b"mdat")
    assert res.bytes_written == len(data) and res.first_byte_s is not None


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    out, pos, end = [], start, len(data) if end is None else end
    while pos < end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        out.append((kind, pos, size))
        pos += size
    return out


def test_offsets_past_4_gib_switch_to_64_bit_chunk_offsets():
    track = mp4.Mp4Track(1, "video", 90000, mp4.visual_entry("h264", 64, 64, b"\x01\x42\xc0\x1e"))
    for i in range(3):
        track.sizes.append(2_000_000_000)
        track.dts.append(i * 3600)
        track.cts.append(0)
        track.chunk_offsets.append(i * 2_000_000_000)
        track.chunk_samples.append(1)
    track.sync.append(1)
    head = mp4.layout([track], 6_000_000_000, 1_737_075_600, {})
    kinds = [k for k, _, _ in _boxes(head)]
    assert kinds == [b"ftyp", b"moov", b"mdat"]
    assert b"co64" in head and b"stco" not in head
    # mdat's 64-bit size covers its header and the payload.
    assert int.from_bytes(head[-8:], "big") == 16 + 6_000_000_000
    co64 = head.index(b"co64")
    first = int.from_bytes(head[co64 + 12 : co64 + 20], "big")
    assert first == len(head)  # the first sample starts right after the mdat header


def test_high_profile_avcc_record_matches_ffmpegs(tmp_path):
    raw = io.BytesIO()
    with av.open(raw, "w", format="h264") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.options = {"profile": "high", "preset": "veryfast", "bf": "0"}  # 8x8dct: High
        import numpy as np

        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), "rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    params = raw.getvalue().split(b"\x00\x00\x00\x01\x65")[0]  # everything before the IDR
    ff = tmp_path / "ff.mp4"
    src = tmp_path / "src.h264"
    src.write_bytes(raw.getvalue())
    with av.open(str(src)) as i, av.open(str(ff), "w") as o:
        o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(video=0):
            if p.size:
                p.stream = o.streams.video[0]
                o.mux(p)
    with av.open(str(ff)) as c:
        theirs = c.streams.video[0].codec_context.extradata
    ours = avcc_record(params)
    assert ours[1] == 100  # High
    assert ours == theirs


def test_list_time_conversions_round_exactly_like_the_scalar_ones():
    import random

    from vstore.base.timebase import ns_to_ticks, ns_to_ticks_many, ticks_to_ns, ticks_to_ns_many

    rnd = random.Random(7)
    values = [rnd.randint(-(10**13), 10**13) for _ in range(2000)] + [0, 1, -1, 4, -4, 5, -5]
    for num, den in [(1, 90000), (1, 12800), (1001, 30000), (1, 48000), (1, 3)]:
        assert ticks_to_ns_many(values, num, den, 17) == [
            17 + ticks_to_ns(v, num, den) for v in values
        ]
    ns = [rnd.randint(-(10**15), 10**15) for _ in range(2000)] + [500_000_000, -500_000_000]
    for scale in (90000, 48000, 3, 1000):
        assert ns_to_ticks_many(ns, scale) == [ns_to_ticks(v, 1, scale) for v in ns]


def test_clip_to_a_full_disk_is_a_clear_error_and_removes_nothing_it_did_not_create(
    tmp_path, media
):
    from vstore.base.errors import StorageFull

    with (
        _store(tmp_path, media, "full.ts", codec="h264") as st,
        pytest.raises(StorageFull, match="disk full"),
    ):
        write_clip(st, plan_clip(st, "cam", t(0), t(100)), "/dev/full")
    assert Path("/dev/full").exists()  # a device is never unlinked as a "partial clip"


def test_clip_to_a_missing_directory_is_a_clear_error_with_exit_code(tmp_path, media, capsys):
    from vstore.base.errors import VstoreError
    from vstore.base.timebase import format_time
    from vstore.cli.main import main

    with (
        _store(tmp_path, media, "nodir.ts", codec="h264") as st,
        pytest.raises(VstoreError, match="cannot write the clip"),
    ):
        write_clip(st, plan_clip(st, "cam", t(0), t(50)), tmp_path / "no" / "c.mp4")
    args = ["clip", "--store", str(tmp_path / "store"), "--camera", "cam"]
    args += ["--from", format_time(t(0)), "--to", format_time(t(50))]
    assert main([*args, "-o", str(tmp_path / "no" / "c.mp4")]) == 1
    err = capsys.readouterr().err
    assert "cannot write the clip" in err and "Traceback" not in err
