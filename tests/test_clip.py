"""Frame-exact clips: decoded with PyAV (and FFmpeg's CLI when installed), the first frame is
the source frame at `start`, the last is the frame before `end`, and the count and timing
match the source. Footage comes from tools.camsim, whose frames carry their own index."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import av
import pytest

from tests.conftest import START_NS, ffmpeg_decode_errors
from tools.camsim import read_frame_counter
from vstore.api import open_store
from vstore.base.errors import NotFound, UsageError
from vstore.export.clip import clip_bytes, write_clip
from vstore.export.clip_plan import plan_clip
from vstore.ingest.file_import import import_file

FRAME_NS = 40_000_000  # 25 fps


def t(frame: int) -> int:
    return START_NS + frame * FRAME_NS


@pytest.fixture
def recorded(tmp_path, media):
    """12 s of H.264 (1 s GOPs) in 3 segments of about 4 s."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    st = open_store(d)
    import_file(st, media("clip-src.ts", 12.0, codec="h264", gop_frames=25), "cam", START_NS)
    yield st
    st.close()


def decode(path_or_bytes, stream="video"):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    with av.open(src) as c:
        if stream == "video":
            frames = list(c.decode(video=0))
            return [read_frame_counter(f.to_ndarray(format="rgb24")) for f in frames], frames
        return list(c.decode(audio=0)), None


@pytest.mark.parametrize(
    "first,last", [(33, 260), (25, 50), (0, 300), (49, 51), (101, 102), (25, 26), (0, 1)]
)
def test_mp4_clip_is_frame_exact(recorded, tmp_path, first, last):
    out = tmp_path / "clip.mp4"
    plan = plan_clip(recorded, "cam", t(first), t(last))
    res = write_clip(recorded, plan, out)
    counters, frames = decode(out)
    assert counters == list(range(first, last))
    assert res.video_packets >= last - first
    # Timing: 25 fps from zero, so the clip's own clock says where each frame is.
    assert [round(float(f.time) * 25) for f in frames] == list(range(last - first))


def test_clip_moov_first_and_wall_clock_tags(recorded, tmp_path):
    out = tmp_path / "clip.mp4"
    write_clip(recorded, plan_clip(recorded, "cam", t(10), t(60)), out)
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head
    with av.open(str(out)) as c:
        md = c.metadata
    assert md["vstore_start"] == "2025-01-17T01:00:00.400+00:00"
    assert md["vstore_camera"] == "cam"
    assert md["creation_time"].startswith("2025-01-17T01:00:00")


def test_a_replaced_file_is_a_new_file_and_links_are_written_through(recorded, tmp_path):
    """A clip over a regular file replaces it (a new inode: truncating in place costs as much
    as the write on ext4); over a symlink or a file with other links it writes through, so
    the link's target gets the clip as before."""
    plan = plan_clip(recorded, "cam", t(10), t(60))
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"old" * 100_000)
    old_inode = out.stat().st_ino
    held = out.open("rb")  # a reader of the old file keeps reading the old bytes
    write_clip(recorded, plan, out)
    assert decode(out)[0] == list(range(10, 60))
    assert out.stat().st_ino != old_inode and held.read(3) == b"old"
    held.close()

    target = tmp_path / "target.mp4"
    target.write_bytes(b"old")
    link = tmp_path / "link.mp4"
    link.symlink_to(target)
    write_clip(recorded, plan, link)
    assert link.is_symlink() and decode(target)[0] == list(range(10, 60))

    other = tmp_path / "other-name.mp4"
    other.hardlink_to(out)
    write_clip(recorded, plan_clip(recorded, "cam", t(20), t(30)), out)
    assert out.stat().st_ino == other.stat().st_ino  # written through: both names see it
    assert decode(other)[0] == list(range(20, 30))


def _limited_to(size_bytes: int):
    """A child whose files cannot grow past ``size_bytes`` (writes past it fail with EFBIG,
    the kernel's own refusal, as a full disk's ENOSPC fails them)."""

    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, size_bytes))

    return limit


@pytest.mark.parametrize("suffix", ["mp4", "ts", "fmp4", "mov"])
def test_a_clip_that_fails_keeps_the_file_it_was_to_replace(recorded, tmp_path, suffix):
    store = str(recorded.root)
    recorded.close()
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / f"clip.{suffix}"
    out.write_bytes(b"an earlier clip")
    cmd = [sys.executable, "-m", "vstore.cli.main", "clip", "--store", store, "--camera", "cam"]
    cmd += ["--from", "2025-01-17T08:00:01+07:00", "--to", "2025-01-17T08:00:09+07:00"]
    cmd += ["-o", str(out), "-y"]
    limit = _limited_to(20_000)
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(out) in r.stderr
    assert out.read_bytes() == b"an earlier clip"  # kept whole
    assert sorted(p.name for p in outdir.iterdir()) == [out.name]  # nothing half-written
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)  # with room: replaced
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 20_000
    assert sorted(p.name for p in outdir.iterdir()) == [out.name]
    assert len(decode(out)[0]) == 200


@pytest.mark.parametrize("fmt", ["fmp4", "ts"])
def test_streaming_formats_decode_frame_exact(recorded, fmt):
    data = b"".join(clip_bytes(recorded, "cam", t(30), t(130), format=fmt))
    counters, _ = decode(data)
    # Streams have no edit list before their first fragment: they begin with the GOP that
    # holds the start (keyframe at frame 25), as the plan's preroll says.
    assert counters == list(range(25, 130))
    assert plan_clip(recorded, "cam", t(30), t(130)).preroll_ns == t(25)


def test_mp4_to_file_object_streams_moov_first_without_staging(recorded):
    buf = io.BytesIO()
    res = write_clip(recorded, plan_clip(recorded, "cam", t(0), t(100)), buf)
    assert res.bytes_written == len(buf.getvalue()) > 0
    assert decode(buf.getvalue())[0] == list(range(100))
    # The native writer knows the whole moov before the first sample: nothing is staged.
    tmp = recorded.layout.tmp_dir
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_plan_reads_no_payload_and_reports_segments(recorded):
    plan = plan_clip(recorded, "cam", t(33), t(260))
    assert len(plan.parts) == 3
    assert plan.preroll_ns == t(25) and plan.start_ns == t(33) and plan.end_ns == t(260)
    assert plan.gaps == []
    doc = plan.as_json()
    assert doc["segments"][0]["ranges"][0][1] > 0
    json.dumps(doc)


def test_range_beyond_recording_is_clipped_and_reported(recorded, tmp_path):
    plan = plan_clip(recorded, "cam", t(-100), t(400))
    assert plan.start_ns == t(0) and plan.end_ns == t(300)
    assert plan.gaps == [(t(-100), t(0)), (t(300), t(400))]
    write_clip(recorded, plan, tmp_path / "c.mp4")
    assert decode(tmp_path / "c.mp4")[0] == list(range(300))


def test_clip_across_a_gap_keeps_the_gap_in_time(tmp_path, media):
    with open_store(tmp_path / "s") as st:
        src = media("gap-src.ts", 2.0, codec="h264", gop_frames=25)
        import_file(st, src, "cam", START_NS)
        import_file(st, src, "cam", START_NS + 10 * 10**9)  # camera offline for 8 s
        plan = plan_clip(st, "cam", t(0), START_NS + 12 * 10**9)
        assert plan.gaps == [(t(50), START_NS + 10 * 10**9)]
        write_clip(st, plan, tmp_path / "c.mp4")
        counters, frames = decode(tmp_path / "c.mp4")
        assert counters == list(range(50)) * 2
        assert round(float(frames[50].time), 2) == 10.0  # not spliced onto frame 49


def test_clip_with_audio_keeps_it_in_sync(tmp_path, media):
    with open_store(tmp_path / "s") as st:
        import_file(
            st, media("av.ts", 6.0, codec="h264", audio="aac", gop_frames=25), "cam", START_NS
        )
        out = tmp_path / "c.mp4"
        res = write_clip(st, plan_clip(st, "cam", t(30), t(130)), out)
        assert res.audio_packets > 0 and res.dropped_tracks == []
        counters, _ = decode(out)
        assert counters == list(range(30, 130))
        with av.open(str(out)) as c:
            a = c.streams.audio[0]
            frames = list(c.decode(a))
        assert abs(float(frames[0].time)) < 0.05  # audio starts with the first frame
        assert 3.8 < float(frames[-1].time) < 4.05


@pytest.fixture
def ffmpeg_av_ts(tmp_path):
    """6 s of H.264 and AAC in MPEG-TS made by FFmpeg, whose AAC encoder puts its priming
    frame before the first video frame."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed")
    src = tmp_path / "av.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "6", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "25", "-c:a", "aac", str(src)],
        check=True,
    )  # fmt: skip
    return src


@pytest.mark.parametrize("fmt", ["ts", "fmp4", "mp4"])
def test_a_clip_across_two_imports_end_to_end(tmp_path, ffmpeg_av_ts, fmt):
    """The second recording's first audio frame (the AAC encoder's priming) begins before
    the first recording's last one ends: a clip across the join must still be made, and
    decode cleanly."""
    src = ffmpeg_av_ts
    with open_store(tmp_path / "s") as st:
        end = import_file(st, src, "cam", START_NS).end_ns
        import_file(st, src, "cam", end)
        out = tmp_path / f"c.{fmt}"
        res = write_clip(
            st, plan_clip(st, "cam", end - 2 * 10**9, end + 2 * 10**9), out, format=fmt
        )
    assert res.audio_packets > 150 and res.video_packets >= 100
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) >= 100
    assert ffmpeg_decode_errors(out) == ""


def test_clips_shorter_than_an_audio_frame_decode_cleanly(tmp_path, ffmpeg_av_ts):
    """A clip of a few ms holds at most one AAC frame: it lasts its own 1,024 samples (cut
    by the edit list at the clip's end), not one tick, which decoders refuse."""
    with open_store(tmp_path / "s") as st:
        import_file(st, ffmpeg_av_ts, "cam", START_NS)
        for start_ms, length_ms in [(2010, 10), (2013, 27), (2000, 1), (5960, 500), (3021, 3)]:
            out = tmp_path / f"c{start_ms}.mp4"
            start = START_NS + start_ms * 1_000_000
            write_clip(st, plan_clip(st, "cam", start, start + length_ms * 1_000_000), out)
            assert ffmpeg_decode_errors(out) == "", (start_ms, length_ms)


@pytest.mark.parametrize("muxer", ["auto", "ffmpeg"])
def test_mp4_audio_plays_from_the_clips_first_instant_to_its_last(tmp_path, ffmpeg_av_ts, muxer):
    """The AAC frame playing at the clip's start begins before it: it is kept and trimmed by
    the edit list, so the audio covers the clip exactly, not from the next frame on."""
    with open_store(tmp_path / "s") as st:
        import_file(st, ffmpeg_av_ts, "cam", START_NS)
        start = START_NS + 2_010_000_000  # between audio frames (21.3 ms apart)
        out = tmp_path / "c.mp4"
        write_clip(st, plan_clip(st, "cam", start, start + 2 * 10**9), out, muxer=muxer)
    with av.open(str(out)) as c:
        frames = list(c.decode(audio=0))
    assert abs(float(frames[0].time)) < 0.001
    assert abs(sum(f.samples for f in frames) - 96_000) <= 1024  # 2 s at 48 kHz
    assert ffmpeg_decode_errors(out) == ""


@pytest.mark.parametrize("muxer", ["auto", "ffmpeg"])
def test_a_clip_s_first_sound_decodes_as_it_does_inside_a_longer_clip(tmp_path, media, muxer):
    """An AAC frame decodes whole only after the one before it: the clip keeps that one
    too, hidden by the edit list, so its first samples are the recording's, not garbled."""
    import numpy as np

    def pcm(path):
        with av.open(str(path)) as c:
            frames = list(c.decode(audio=0))
        t0 = float(frames[0].time)
        return t0, np.concatenate([f.to_ndarray()[0] for f in frames])

    src = media("clip-tone.ts", 6.0, codec="h264", gop_frames=25, audio="aac")
    with open_store(tmp_path / "s") as st:
        import_file(st, src, "cam", START_NS)
        start = START_NS + 3_010_000_000  # between audio frames (21.3 ms apart)
        for name, at in (("short", start), ("long", start - 10**9)):
            write_clip(st, plan_clip(st, "cam", at, start + 2 * 10**9), tmp_path / f"{name}.mp4",
                       muxer=muxer)  # fmt: skip
    t_short, short = pcm(tmp_path / "short.mp4")
    t_long, long = pcm(tmp_path / "long.mp4")
    assert abs(t_short) < 0.001
    skip = round(48_000 * (t_short + 1.0 - t_long))  # the short one's start, in the long one
    n = 2048
    assert np.abs(short[:n] - long[skip : skip + n]).max() < 0.01


def _audio_span(path) -> tuple[float, float]:
    """(first audio frame's time, seconds of audio) of a clip."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    return float(frames[0].time), sum(f.samples for f in frames) / frames[0].sample_rate


def sound_ahead_store(tmp_path, media, segment_s: int):
    """A store (open) whose camera "cam" has 12 s of MPEG-TS with AAC, sent ahead of its
    pictures as TS muxers send it, in segments of ``segment_s``."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(f"[store]\nsegment_duration_s = {segment_s}\n")
    st = open_store(d)
    import_file(st, media("lead-src.ts", 12.0, codec="h264", gop_frames=25, audio="aac"),
                "cam", START_NS)  # fmt: skip
    return st


def test_sound_sent_ahead_is_read_from_the_chunk_before_even_across_segments(tmp_path, media):
    """MPEG-TS sends sound ahead of its pictures: a keyframe's first moments of sound are
    stored with the GOP before, the segment before too. A clip starting there, in a segment
    or at a segment's first keyframe, has its sound from its first frame, and a one-frame
    clip has its frame's sound. That chunk's damage is no damage of the clip: --strict
    makes it (without that sound) and an export of it verifies against the store."""
    from vstore.evidence.package import ExportItem, export_package
    from vstore.evidence.verify import verify_package

    with sound_ahead_store(tmp_path, media, 4) as st:
        num = st.camera_num("cam")
        second = list(st.index.segments(num))[1]  # (it starts on a keyframe)
        for at, length in ((second.start_ns, 2 * 10**9), (second.start_ns, 40_000_000),
                           (second.start_ns + 10**9, 2 * 10**9)):  # fmt: skip
            out = tmp_path / "c.mp4"
            write_clip(st, plan_clip(st, "cam", at, at + length), out)
            first, secs = _audio_span(out)
            assert abs(first) < 0.001 and abs(secs - length / 1e9) < 0.03, (at, first, secs)
        # The chunk before a clip's first, damaged: the clip is made, strict too.
        at = second.start_ns + 10**9
        lead = plan_clip(st, "cam", at, at + 10**9).lead_chunk
        assert lead is not None
        path = st.layout.path(next(r for r in st.index.segments(num) if
                                   r.segment_id == lead.segment_id).path)  # fmt: skip
        raw = bytearray(path.read_bytes())
        raw[lead.offset + lead.length - 10] ^= 0xFF
        path.write_bytes(raw)
        res = write_clip(st, plan_clip(st, "cam", at, at + 10**9), tmp_path / "s.mp4",
                         strict=True)  # fmt: skip
        assert res.video_packets == 25 and not res.plan.damaged
        pkg = tmp_path / "p.zip"
        export_package(st, [ExportItem("cam", at, at + 10**9)], pkg, case="C", purpose="p",
                       by="b")  # fmt: skip
        rep = verify_package(pkg, store=st)
        assert rep.ok, rep.failures()


@pytest.mark.parametrize("codec", ["hevc"])
def test_hevc_clip(tmp_path, media, codec):
    with open_store(tmp_path / "s") as st:
        import_file(st, media("hevc.mkv", 4.0, codec=codec, gop_frames=25), "cam", START_NS)
        out = tmp_path / "c.mp4"
        write_clip(st, plan_clip(st, "cam", t(13), t(77)), out)
        assert decode(out)[0] == list(range(13, 77))


def test_avcc_source_clip(tmp_path, media):
    with open_store(tmp_path / "s") as st:
        import_file(st, media("h264.mp4", 4.0, codec="h264", gop_frames=25), "cam", START_NS)
        out = tmp_path / "c.mp4"
        write_clip(st, plan_clip(st, "cam", t(40), t(90)), out)
        assert decode(out)[0] == list(range(40, 90))


def test_bad_ranges_and_unknown_camera(recorded):
    with pytest.raises(UsageError):
        plan_clip(recorded, "cam", t(10), t(10))
    with pytest.raises(UsageError):
        plan_clip(recorded, "cam", t(10), t(5))
    with pytest.raises(NotFound):
        plan_clip(recorded, "nope", t(0), t(10))
    with pytest.raises(NotFound, match="no footage"):
        plan_clip(recorded, "cam", t(1000), t(1100))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")
def test_ffmpeg_cli_decodes_clip_without_errors(recorded, tmp_path):
    out = tmp_path / "c.mp4"
    write_clip(recorded, plan_clip(recorded, "cam", t(33), t(260)), out)
    assert ffmpeg_decode_errors(out) == ""
    r = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert int(r.stdout.strip()) == 260 - 33


def test_store_clip_api_streams_bytes_and_writes_files(recorded, tmp_path):
    data = b"".join(recorded.clip("cam", t(5), t(80)))
    assert decode(data)[0] == list(range(5, 80))  # mp4 by default, frame-exact
    res = recorded.clip("cam", t(5), t(80), format="mp4", out=tmp_path / "c.mp4")
    assert res.bytes_written == (tmp_path / "c.mp4").stat().st_size
    assert recorded.plan_clip("cam", t(5), t(80)).preroll_ns == t(0)


def test_clip_cli(recorded, tmp_path, capsys):
    from vstore.cli.main import main

    store = str(recorded.root)
    recorded.close()
    out = tmp_path / "c.mp4"
    argv = [
        "clip",
        "--store",
        store,
        "--camera",
        "cam",
        "--from",
        "2025-01-17T08:00:01+07:00",
        "--to",
        "2025-01-17T08:00:03+07:00",
    ]
    assert main([*argv, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert decode(out)[0] == list(range(25, 75))
    assert main([*argv, "-o", str(tmp_path / "c2.mp4"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["video_packets"] == 50 and doc["gaps"] == []
    assert main([*argv, "--plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"]
    # Nothing recorded in the range: a clear error and exit code 3.
    assert (
        main(
            [
                "clip",
                "--store",
                store,
                "--camera",
                "cam",
                "--from",
                "2030-01-01T00:00Z",
                "--to",
                "2030-01-01T00:01Z",
                "-o",
                str(tmp_path / "x.mp4"),
            ]
        )
        == 3
    )
    assert "no footage" in capsys.readouterr().err
    assert (
        main(
            [
                "clip",
                "--store",
                store,
                "--camera",
                "cam",
                "--from",
                "2030-01-01T00:01Z",
                "--to",
                "2030-01-01T00:00Z",
                "-o",
                str(tmp_path / "x.mp4"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize("frame", [0, 24, 25, 37, 299])
def test_snapshot_is_the_exact_frame(recorded, tmp_path, frame):
    from vstore.export.snapshot import snapshot

    out = tmp_path / "f.png"
    # Half a frame after the frame's start: still that frame on screen.
    snap = snapshot(recorded, "cam", t(frame) + FRAME_NS // 2, out)
    assert snap.frame_at_ns == t(frame)
    with av.open(str(out)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert read_frame_counter(img) == frame


def test_snapshot_jpeg_cli_and_errors(recorded, tmp_path, capsys):
    from vstore.cli.main import main

    store = str(recorded.root)
    recorded.close()

    def snapshot_cli(at: str, out) -> int:
        return main(["snapshot", "--store", store, "--camera", "cam", "--at", at, "-o", str(out)])

    out = tmp_path / "f.jpg"
    assert snapshot_cli("2025-01-17T01:00:05Z", out) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8"
    assert snapshot_cli("2025-01-17T00:00:00Z", tmp_path / "g.jpg") == 3  # before the recording
    assert snapshot_cli("2025-01-17T01:00:05Z", tmp_path / "f.gif") == 2  # bad format
    # An existing file is replaced only when asked.
    capsys.readouterr()
    assert snapshot_cli("2025-01-17T01:00:05Z", out) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["snapshot", "--store", store, "--camera", "cam", "--at",
                 "2025-01-17T01:00:05Z", "-o", str(out), "-y"]) == 0  # fmt: skip


def test_codec_change_ends_mp4_but_ts_continues(tmp_path, media):
    a = media("cc-small.ts", 2.0, codec="h264", width=320, height=240, gop_frames=25)
    b = media(
        "cc-large.ts", 2.0, codec="h264", width=640, height=360, gop_frames=25, start_index=50
    )
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    with open_store(tmp_path / "s") as st:
        import_file(st, joined, "cam", START_NS)
        plan = plan_clip(st, "cam", t(10), t(90))
        write_clip(st, plan, tmp_path / "c.mp4")
        assert decode(tmp_path / "c.mp4")[0] == list(range(10, 50))
        assert any("codec parameters change" in n for n in plan.notes)
        data = b"".join(clip_bytes(st, "cam", t(10), t(90), format="ts"))
        counters, frames = decode(data)
        assert counters == list(range(90))  # from the GOP start, across the change
        assert (frames[0].width, frames[-1].width) == (320, 640)


def test_a_range_from_a_printed_start_names_no_gap_below_a_millisecond(tmp_path, media):
    """A range copied from a timeline's printed start (milliseconds) begins up to a
    millisecond before the footage: that is no gap to name; a longer one is."""
    st = open_store(tmp_path / "s")
    start = START_NS + 123_456  # (footage that begins inside a millisecond)
    import_file(st, media("edge.ts", 2.0, codec="h264", gop_frames=25), "cam", start)
    printed = start // 1_000_000 * 1_000_000
    assert plan_clip(st, "cam", printed, start + 10**9).gaps == []
    assert plan_clip(st, "cam", start - 2_000_000, start + 10**9).gaps == [
        (start - 2_000_000, start)
    ]
    st.close()
