"""Workload 5, clip: a 60 s clip out of a 1-hour recording, vstore (library call, and the
`vstore clip` command as a fresh process) vs `ffmpeg -ss START -to END -c copy` on an MP4 of
the same footage, in the same run: total time and time to first byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from bench.conftest import NS, T0
from vstore.api import open_store
from vstore.export.clip import clip_bytes, write_clip
from vstore.export.clip_plan import plan_clip


def test_clip_library_mp4(benchmark, footage):
    """Library call: plan + frame-exact MP4 (moov first) written to a file."""
    st = open_store(footage["store"], read_only=True)
    out = footage["tmp"] / "lib.mp4"
    s, e = T0 + footage["start"] * NS, T0 + footage["end"] * NS

    def run():
        return write_clip(st, plan_clip(st, "cam", s, e), out)

    res = benchmark.pedantic(run, rounds=5, iterations=1)
    assert res.video_packets >= (footage["end"] - footage["start"]) * 25
    st.close()


def test_clip_library_mp4_ffmpeg_muxer(benchmark, footage):
    """Before: the same library call through FFmpeg's MP4 muxer (PyAV), as vstore did."""
    st = open_store(footage["store"], read_only=True)
    out = footage["tmp"] / "lib-ff.mp4"
    s, e = T0 + footage["start"] * NS, T0 + footage["end"] * NS

    def run():
        return write_clip(st, plan_clip(st, "cam", s, e), out, muxer="ffmpeg")

    res = benchmark.pedantic(run, rounds=5, iterations=1)
    assert res.video_packets >= (footage["end"] - footage["start"]) * 25
    st.close()


def test_clip_library_first_byte(benchmark, footage):
    """Library call: time to the first byte of a streamed (fMP4) clip."""
    st = open_store(footage["store"], read_only=True)
    s, e = T0 + footage["start"] * NS, T0 + footage["end"] * NS

    def run():
        it = clip_bytes(st, "cam", s, e, format="fmp4")
        first = next(it)
        for _ in it:  # drain so the producer thread ends
            pass
        return first

    t_first = []

    def timed():
        t = time.perf_counter()
        it = clip_bytes(st, "cam", s, e, format="fmp4")
        next(it)
        t_first.append(time.perf_counter() - t)
        for _ in it:
            pass

    benchmark.pedantic(timed, rounds=5, iterations=1)
    benchmark.extra_info["first_byte_s_median"] = sorted(t_first)[len(t_first) // 2]
    assert run()
    st.close()


def test_clip_cli_fresh_process(benchmark, footage):
    """`vstore clip` as a new process (start-up imports included)."""
    out = footage["tmp"] / "cli.mp4"
    from vstore.base.timebase import format_time

    args = [
        sys.executable,
        "-m",
        "vstore.cli.main",
        "clip",
        "--store",
        str(footage["store"]),
        "--camera",
        "cam",
        "--from",
        format_time(T0 + footage["start"] * NS),
        "--to",
        format_time(T0 + footage["end"] * NS),
        "-o",
        str(out),
        "-y",  # every round writes the same file
    ]
    benchmark.pedantic(
        lambda: subprocess.run(args, check=True, capture_output=True), rounds=5, iterations=1
    )
    assert out.stat().st_size > 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_clip_ffmpeg_baseline(benchmark, footage):
    """Baseline: ffmpeg -ss START -to END -i hour.mp4 -c copy out.mp4 (input seeking)."""
    out = footage["tmp"] / "ff.mp4"
    args = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-ss",
        str(footage["start"]),
        "-to",
        str(footage["end"]),
        "-i",
        str(footage["mp4"]),
        "-c",
        "copy",
        str(out),
    ]
    benchmark.pedantic(lambda: subprocess.run(args, check=True), rounds=5, iterations=1)
    assert out.stat().st_size > 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_clip_ffmpeg_first_byte(benchmark, footage):
    """Baseline: time to first byte of ffmpeg's fragmented MP4 cut written to a pipe."""
    args = [
        "ffmpeg",
        "-v",
        "error",
        "-ss",
        str(footage["start"]),
        "-to",
        str(footage["end"]),
        "-i",
        str(footage["mp4"]),
        "-c",
        "copy",
        "-f",
        "mp4",
        "-movflags",
        "frag_keyframe+empty_moov",
        "pipe:1",
    ]
    firsts = []

    def run():
        t = time.perf_counter()
        with subprocess.Popen(args, stdout=subprocess.PIPE) as p:
            assert p.stdout is not None
            p.stdout.read(1)
            firsts.append(time.perf_counter() - t)
            p.stdout.read()
        return p.returncode

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["first_byte_s_median"] = sorted(firsts)[len(firsts) // 2]
