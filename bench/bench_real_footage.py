"""Clips and imports on footage like a city camera's, not the synthetic hour of bench_clip:
20 minutes of 1080p 25 fps at 4 Mbit/s with 2 B-frames, a 4 s GOP and AAC audio, in H.264
and in HEVC, imported with `vstore import`; clips start between frames. Each vstore row has
its baseline measured in the same run on the same footage: `ffmpeg -ss S -to E -i IN -c copy`
for clips, `ffmpeg -c copy -f segment` for the import's CPU, and the physical floor of a clip,
copying the same number of bytes from the page cache to the same destination.

Footage is made once by FFmpeg's own test source (a minute encoded, then looped without
re-encoding) and kept in bench/.footage/ between runs; the smoke run inside `make test`
uses a few seconds of small footage so that the code paths stay exercised.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vstore.api import open_store
from vstore.base.timebase import format_time
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "bench" / ".footage"
T0 = 1_737_075_600_000_000_000
NS = 1_000_000_000
# Clip starts 17 ms after a frame (frames are 40 ms apart), as a user's times fall.
MID_FRAME_S = 0.017

ENCODERS = {
    "h264": [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-x264-params",
        "keyint={gop}:min-keyint={gop}:scenecut=0",
    ],
    "hevc": [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "bframes=2:keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error",
        "-tag:v",
        "hvc1",
    ],
}


def _smoke(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"))


def make_footage(codec: str, smoke: bool) -> Path:
    """The footage file (made once, then reused): a minute of test source with noise, so
    the encoder spends its bitrate as on a real scene, looped to 20 minutes by stream copy."""
    if smoke:
        w, h, loop_s, loops, rate = 320, 180, 6, 3, "400k"
    else:
        w, h, loop_s, loops, rate = 1920, 1080, 60, 20, "4M"
    name = f"{codec}-{h}p-{loop_s * loops}s.mp4"
    out = FOOTAGE / name
    if out.exists():
        return out
    FOOTAGE.mkdir(parents=True, exist_ok=True)
    one = FOOTAGE / f"loop-{name}"
    enc = [a.format(gop=100) for a in ENCODERS[codec]]
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={w}x{h}:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(loop_s),
            "-vf",
            "noise=alls=8:allf=t",
            "-pix_fmt",
            "yuv420p",
            *enc,
            "-b:v",
            rate,
            "-maxrate",
            rate,
            "-bufsize",
            rate,
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-ac",
            "1",
            str(one),
        ],
        check=True,
    )
    tmp = out.with_suffix(".part.mp4")
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(one),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(tmp),
        ],
        check=True,
    )
    one.unlink()
    tmp.rename(out)
    return out


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _import(src: Path, store: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vstore.cli.main",
            "import",
            str(src),
            "--camera",
            "cam",
            "--start",
            format_time(T0),
            "--store",
            str(store),
            "--json",
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module", params=["h264", "hevc"])
def real(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    smoke = _smoke(request.config)
    src = make_footage(request.param, smoke)
    base = tmp_path_factory.mktemp(f"real-{request.param}")
    store = base / "store"
    store.mkdir()
    _import(src, store)
    length_s = 18 if smoke else 1200
    clips = {"60s": (601, 60), "10min": (180, 600)} if not smoke else {"60s": (5, 6)}
    return {
        "codec": request.param,
        "src": src,
        "store": store,
        "tmp": base,
        "length_s": length_s,
        "clips": clips,
        "smoke": smoke,
    }


CLIP_IDS = ["60s", "10min"]


def _range(real: dict, which: str) -> tuple[float, float]:
    if which not in real["clips"]:
        pytest.skip(f"no {which} clip in the smoke footage")
    at, span = real["clips"][which]
    return at + MID_FRAME_S, at + MID_FRAME_S + span


def _info(benchmark: Any, real: dict, which: str, **extra: Any) -> None:
    benchmark.extra_info.update(codec=real["codec"], clip=which, **extra)


@pytest.mark.parametrize("which", CLIP_IDS)
def test_real_clip_library(benchmark, real, which):
    """Library call: plan and write a frame-exact MP4 to a file (warm page cache)."""
    s, e = _range(real, which)
    out = real["tmp"] / f"lib-{which}.mp4"
    st = open_store(real["store"], read_only=True)
    try:

        def run():
            plan = plan_clip(st, "cam", T0 + round(s * NS), T0 + round(e * NS))
            return write_clip(st, plan, out)

        res = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    finally:
        st.close()
    assert res.video_packets >= int((e - s) * 25) - 1
    _info(benchmark, real, which, bytes=res.bytes_written)


class _FirstByte:
    """A destination like a socket: takes the bytes, keeps the time of the first."""

    def __init__(self) -> None:
        self.t_first: float | None = None
        self.count = 0

    def write(self, b: bytes) -> int:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.count += len(b)
        return len(b)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("which", CLIP_IDS)
def test_real_clip_mp4_first_byte(benchmark, real, which):
    """Library call: time from the call to the first byte of the MP4 (not fMP4) leaving,
    the plan included: what a download waits for before anything arrives."""
    s, e = _range(real, which)
    st = open_store(real["store"], read_only=True)
    firsts: list[float] = []
    try:

        def run():
            sink = _FirstByte()
            t = time.perf_counter()
            plan = plan_clip(st, "cam", T0 + round(s * NS), T0 + round(e * NS))
            write_clip(st, plan, sink)  # type: ignore[arg-type]
            assert sink.t_first is not None
            firsts.append(sink.t_first - t)

        benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    finally:
        st.close()
    _info(benchmark, real, which, first_byte_s_median=sorted(firsts)[len(firsts) // 2])


@pytest.mark.parametrize("which", CLIP_IDS)
def test_real_clip_command(benchmark, real, which):
    """`vstore clip` as a new process, to a file it replaces each round (as FFmpeg's -y)."""
    s, e = _range(real, which)
    out = real["tmp"] / f"cli-{which}.mp4"
    args = [sys.executable, "-m", "vstore.cli.main", "clip", "--store", str(real["store"])]
    args += ["--camera", "cam", "--from", format_time(T0 + round(s * NS))]
    args += ["--to", format_time(T0 + round(e * NS)), "-o", str(out), "-y"]
    benchmark.pedantic(
        lambda: subprocess.run(args, check=True, capture_output=True),
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    _info(benchmark, real, which, bytes=out.stat().st_size)


@pytest.mark.parametrize("which", CLIP_IDS)
def test_real_clip_ffmpeg(benchmark, real, which):
    """Baseline: ffmpeg -ss S -to E -i footage.mp4 -c copy out.mp4, replacing out each round."""
    s, e = _range(real, which)
    out = real["tmp"] / f"ff-{which}.mp4"
    args = ["ffmpeg", "-v", "error", "-y", "-ss", f"{s:.3f}", "-to", f"{e:.3f}"]
    args += ["-i", str(real["src"]), "-c", "copy", str(out)]
    benchmark.pedantic(
        lambda: subprocess.run(args, check=True), rounds=5, iterations=1, warmup_rounds=1
    )
    _info(benchmark, real, which, bytes=out.stat().st_size)


@pytest.mark.parametrize("which", CLIP_IDS)
def test_real_clip_copy_floor(benchmark, real, which):
    """The floor: copy a file of the clip's size, already in the page cache, to the same
    kind of destination (a file replaced each round, unlinked first as vstore replaces its
    output), as one read and one write per MiB."""
    s, e = _range(real, which)
    src = real["tmp"] / f"floor-src-{which}.mp4"
    st = open_store(real["store"], read_only=True)
    try:
        write_clip(st, plan_clip(st, "cam", T0 + round(s * NS), T0 + round(e * NS)), src)
    finally:
        st.close()
    out = real["tmp"] / f"floor-{which}.mp4"

    def run():
        out.unlink(missing_ok=True)
        with open(src, "rb") as r, open(out, "wb") as w:
            while block := r.read(1 << 20):
                w.write(block)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _info(benchmark, real, which, bytes=src.stat().st_size)


def _cpu_of(cmd: list[str]) -> float:
    before = _cpu_children()
    subprocess.run(cmd, check=True, capture_output=True)
    return _cpu_children() - before


def test_real_import_cpu(benchmark, real):
    """CPU seconds of `vstore import` of the whole footage into a new store (process
    start-up included), beside `ffmpeg -c copy -f segment` of the same file in the same run
    (the baseline's CPU is in extra_info), and the import's physical floor (bench.import_floor:
    PyAV's demux, SHA-256 and CRC-32 of every byte, the bytes written). Rounds alternate the
    three."""
    vs_cpu: list[float] = []
    ff_cpu: list[float] = []
    floor_cpu: list[float] = []
    base = real["tmp"]

    def run():
        store = base / "import-store"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir()
        cmd = [sys.executable, "-m", "vstore.cli.main", "import", str(real["src"])]
        cmd += ["--camera", "cam", "--start", format_time(T0), "--store", str(store)]
        vs_cpu.append(_cpu_of(cmd))
        segs = base / "ffseg"
        shutil.rmtree(segs, ignore_errors=True)
        segs.mkdir()
        ff = ["ffmpeg", "-v", "error", "-i", str(real["src"]), "-map", "0", "-c", "copy"]
        ff += ["-f", "segment", "-segment_time", "60", str(segs / "s%04d.mp4")]
        ff_cpu.append(_cpu_of(ff))
        floor_out = base / "floor.bin"
        floor_out.unlink(missing_ok=True)
        floor = [sys.executable, "-m", "bench.import_floor", str(real["src"]), str(floor_out)]
        floor_cpu.append(_cpu_of(floor))

    benchmark.pedantic(run, rounds=3, iterations=1)
    med = sorted(vs_cpu)[len(vs_cpu) // 2]
    ff_med = sorted(ff_cpu)[len(ff_cpu) // 2]
    floor_med = sorted(floor_cpu)[len(floor_cpu) // 2]
    benchmark.extra_info.update(
        codec=real["codec"],
        cpu_s_median=med,
        ffmpeg_cpu_s_median=ff_med,
        floor_cpu_s_median=floor_med,
        bytes=os.path.getsize(real["src"]),
        length_s=real["length_s"],
    )
