"""`make bench`: run the benchmarks for real and write bench/results/latest.{md,json}.

Each figure is computed from pytest-benchmark's JSON; comparisons use a baseline measured in
the same run on the same data, and are reported as ratios with their target.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MISSING_FFMPEG = (
    "**FFmpeg is not installed: the figures measured against it (ingest CPU, clips) are "
    "missing.** `make bench` installs it when run as root; otherwise `apt-get install ffmpeg`."
)


def run_pytest(out: Path, paths: list[str] | None = None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *(paths or ["bench"]),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        "--benchmark-enable",
        f"--benchmark-json={out}",
        "--timeout=1200",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3) if baseline is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": target,
        "met": met,
        "note": note,
    }


def build_figures(doc: dict[str, Any]) -> list[dict[str, Any]]:
    by = {b["name"]: b for b in doc["benchmarks"]}
    figs: list[dict[str, Any]] = []

    def med(name: str) -> float:
        """Median seconds of a benchmark: of the rounds it timed itself (interleaved with
        other benchmarks', see bench_disk.disk_rounds), else of pytest-benchmark's."""
        rounds = by[name]["extra_info"].get("round_seconds")
        if rounds:
            return statistics.median(rounds)
        return by[name]["stats"]["median"]

    for size, target_pps, target_mbs in (("1KB", 200_000, None), ("20KB", None, 1000)):
        c, py = f"test_writer_packets[c-{size}]", f"test_writer_packets[py-{size}]"
        if c not in by:
            continue
        info = by[c]["extra_info"]
        pps_c = info["packets"] / med(c)
        mbs_c = info["bytes"] / med(c) / 1e6
        pps_py = info["packets"] / med(py) if py in by else None
        where = (
            "into a tmpfs (the page cache, no disk)"
            if info.get("tmpfs")
            else "into a disk filesystem (no tmpfs here): each segment's seal fsync included"
        )
        sha, wr = f"test_writer_floor_part[{size}-sha256]", f"test_writer_floor_part[{size}-write]"
        limit = None
        if sha in by and wr in by:
            sha_mbs = by[sha]["extra_info"]["bytes"] / med(sha) / 1e6
            wr_mbs = by[wr]["extra_info"]["bytes"] / med(wr) / 1e6
            limit = 1 / (1 / sha_mbs + 1 / wr_mbs)
        if target_pps:
            figs.append(
                figure(
                    f"writer {size} packets/s (compiled vs pure)",
                    pps_c,
                    "packets/s",
                    pps_py,
                    f">= {target_pps:,} packets/s",
                    pps_c >= target_pps,
                    f"one write_raw call per packet, {where}",
                )
            )
        else:
            figs.append(
                figure(
                    f"writer {size} MB/s (compiled vs pure)",
                    mbs_c,
                    "MB/s",
                    info["bytes"] / med(py) / 1e6 if py in by else None,
                    f">= {target_mbs} MB/s",
                    mbs_c >= (target_mbs or 0),
                    f"one write_raw call per packet, {where}"
                    + (
                        f"; SHA-256 and the page-cache writes alone allow at most {limit:,.0f} "
                        "MB/s on one core here (row below)"
                        if limit is not None and target_mbs and limit < target_mbs
                        else ""
                    ),
                )
            )
        floor = f"test_writer_floor[{size}]"
        if floor in by:
            fl_mbs = by[floor]["extra_info"]["bytes"] / med(floor) / 1e6
            figs.append(
                figure(
                    f"writer {size} MB/s vs the floor (SHA-256 + CRC-32 + one write per GOP)",
                    mbs_c,
                    "MB/s",
                    fl_mbs,
                    "report",
                    None,
                    "the floor hashes, checksums and writes each byte once (GOPs up to 256 KiB "
                    "joined, longer ones as their packets' buffers, as the writer does), with "
                    "no format, timestamps or index",
                )
            )
        if limit is not None:
            figs.append(
                figure(
                    f"writer {size}: the most one core allows while hashing with SHA-256",
                    limit,
                    "MB/s",
                    None,
                    "report",
                    None,
                    f"1 / (1/SHA-256 + 1/write) from SHA-256 alone ({sha_mbs:,.0f} MB/s) and "
                    f"the page-cache writes alone ({wr_mbs:,.0f} MB/s) on the same GOPs, "
                    "measured in this run; before any CRC, format or index",
                )
            )
    for size, target_pps, target_mbs in (("1KB", 200_000, None), ("20KB", None, 1000)):
        name, one = f"test_writer_packets_batched[{size}]", f"test_writer_packets[c-{size}]"
        if name not in by:
            continue
        info = by[name]["extra_info"]
        if target_pps:
            v = info["packets"] / med(name)
            base = by[one]["extra_info"]["packets"] / med(one) if one in by else None
            figs.append(
                figure(
                    f"writer {size} packets/s, batched write_many (vs one call per packet)",
                    v,
                    "packets/s",
                    base,
                    f">= {target_pps:,} packets/s",
                    v >= target_pps,
                    "batches of 32, as the native MPEG-TS path delivers them",
                )
            )
        else:
            v = info["bytes"] / med(name) / 1e6
            base = by[one]["extra_info"]["bytes"] / med(one) / 1e6 if one in by else None
            figs.append(
                figure(
                    f"writer {size} MB/s, batched write_many (vs one call per packet)",
                    v,
                    "MB/s",
                    base,
                    f">= {target_mbs} MB/s",
                    v >= (target_mbs or 0),
                    "batches of 32, as the native MPEG-TS path delivers them",
                )
            )
    plains = {
        c: by[n]["extra_info"]["bytes"] / med(n) / 1e6
        for c in ("kept", "dropped")  # fsync-every-mib is the per-GOP floor, not the disk rate
        if (n := f"test_disk_plain_sequential_write[{c}]") in by
    }
    if plains:
        # The disk's rate is the faster plain write: with or without dropping the page cache.
        plain = max(plains.values())
        for variant in (
            "fsync-every-gop",
            "fsync-1s",
            "fsync-every-gop-8cams",
            "fsync-every-gop-32cams",
        ):
            name = f"test_disk_recording[{variant}]"
            if name not in by:
                continue
            rec = by[name]["extra_info"]["bytes"] / med(name) / 1e6
            others = ", ".join(f"{c}: {v:,.0f} MB/s" for c, v in plains.items())
            note = (
                f"baseline: 1 MiB writes, fsync every 50 MiB, the faster of page cache "
                f"kept / dropped ({others}); {by[name]['extra_info']['bytes'] / 1e6:,.0f} MB "
                f"a round; each camera's first GOP written before timing"
            )
            if "cams" in variant:
                note += "; the cameras run by the writer pool, as `vstore record` runs them"
            gop_floor_name = "test_disk_plain_sequential_write[fsync-every-mib]"
            if "every-gop" in variant and gop_floor_name in by:
                floor = by[gop_floor_name]["extra_info"]["bytes"] / med(gop_floor_name) / 1e6
                note += (
                    f"; a plain write fsynced every 1 MiB (every GOP) reaches {floor:,.0f} "
                    f"MB/s, {floor / plain:.2f} of the baseline: the writer fsyncs every GOP "
                    f"but groups the GOPs closed while an fsync runs into the next one "
                    f"(group commit, lifecycle W2)"
                )
            figs.append(
                figure(
                    f"disk: recording ({variant}) vs plain sequential write",
                    rec,
                    "MB/s",
                    plain,
                    ">= 0.8 ratio",
                    rec / plain >= 0.8,
                    note,
                )
            )
    seeks = {
        n: med(f"test_index_seek[{n}]") * 1e6
        for n in ("1cam-hour", "1k-cam-day-sim", "1cam-month")
        if f"test_index_seek[{n}]" in by
    }
    for n, us in seeks.items():
        figs.append(
            figure(
                f"index seek + 60 s scan (30 rows), {n}",
                us,
                "us",
                seeks.get("1cam-hour"),
                "flat (ratio ~1)",
                None,
                "1k cam-days simulated as 1000 cameras x 1 h" if "sim" in n else "",
            )
        )
    only = {
        n: med(f"test_index_seek_only[{n}]") * 1e6
        for n in ("1cam-hour", "1k-cam-day-sim", "1cam-month")
        if f"test_index_seek_only[{n}]" in by
    }
    for n, us in only.items():
        figs.append(
            figure(
                f"index seek (one chunk), {n}",
                us,
                "us",
                only.get("1cam-hour"),
                "< 20 us; flat (ratio ~1)",
                us < 20,
                "median, warm block cache"
                + ("; 1k cam-days simulated as 1000 cameras x 1 h" if "sim" in n else ""),
            )
        )
    if "test_clip_library_mp4" in by:
        ff = med("test_clip_ffmpeg_baseline") if "test_clip_ffmpeg_baseline" in by else None
        lib = med("test_clip_library_mp4")
        figs.append(
            figure(
                "clip 60 s of 1 h, library call, total (vs ffmpeg -ss -to -c copy)",
                lib * 1000,
                "ms",
                ff * 1000 if ff else None,
                "ratio <= 0.1 (10x faster)",
                (lib / ff <= 0.1) if ff else None,
            )
        )
        if "test_clip_library_mp4_ffmpeg_muxer" in by:
            before = med("test_clip_library_mp4_ffmpeg_muxer")
            figs.append(
                figure(
                    "clip 60 s of 1 h, library call: vstore's MP4 writer vs FFmpeg's muxer",
                    lib * 1000,
                    "ms",
                    before * 1000,
                    "report",
                    None,
                    "the muxer vstore used before (PyAV), same plan, same run",
                )
            )
        ttfb = by["test_clip_library_first_byte"]["extra_info"]["first_byte_s_median"]
        ff_ttfb = (
            by["test_clip_ffmpeg_first_byte"]["extra_info"]["first_byte_s_median"]
            if "test_clip_ffmpeg_first_byte" in by
            else None
        )
        figs.append(
            figure(
                "clip time to first byte, library, hot (vs ffmpeg to a pipe)",
                ttfb * 1000,
                "ms",
                ff_ttfb * 1000 if ff_ttfb else None,
                "< 20 ms",
                ttfb < 0.020,
            )
        )
        cli = med("test_clip_cli_fresh_process")
        figs.append(
            figure(
                "clip 60 s of 1 h, `vstore clip` fresh process (vs ffmpeg)",
                cli * 1000,
                "ms",
                ff * 1000 if ff else None,
                "ratio <= 1",
                (cli / ff <= 1) if ff else None,
            )
        )
    figs.extend(real_footage_figures(by, med))
    figs.extend(http_figures(by, med))
    figs.extend(evidence_figures(by, med))
    figs.extend(cluster_figures(by))
    figs.extend(core_figures(by))
    if "test_retention_plan_month_100_cameras" in by:
        v = med("test_retention_plan_month_100_cameras")
        n = by["test_retention_plan_month_100_cameras"]["extra_info"]["segments"]
        figs.append(
            figure(
                f"retention plan, month of 100 cameras ({n:,} segments)",
                v,
                "s",
                None,
                "< 1 s",
                v < 1.0,
                "NumPy planner over a columnar catalog",
            )
        )
    if "test_ingest_vstore_record" in by:
        info = by["test_ingest_vstore_record"]["extra_info"]
        v = info["cpu_s_per_camera_minute"]
        ff_info = by.get("test_ingest_ffmpeg_segment_recorders", {}).get("extra_info", {})
        ff = ff_info.get("cpu_s_per_camera_minute")

        def runs(d: dict[str, Any]) -> str:
            return "/".join(f"{x:.3f}" for x in d.get("cpu_s_per_camera_minute_all", []))

        figs.append(
            figure(
                f"ingest CPU per camera-minute, {info['cameras']} loopback TS cameras "
                "(vs ffmpeg -c copy -f segment each)",
                v,
                "CPU s",
                ff,
                "ratio <= 0.5",
                (v / ff <= 0.5) if ff else None,
                f"steady: CPU in a {info['window_seconds']:.0f} s window from "
                f"{info['warm_seconds']:.0f} s into a {info['seconds']:.0f} s run (start-up and "
                f"sealing {info['startup_cpu_s']:.2f} CPU s not counted), median of "
                f"vstore {runs(info)} and FFmpeg {runs(ff_info)}; dropped {info['dropped']}",
            )
        )
    if "test_ingest_max_cameras_one_core" in by:
        info = by["test_ingest_max_cameras_one_core"]["extra_info"]
        top = info["steps"][-1] if info["steps"] else {}
        best = [s for s in info["steps"] if s["ok"]]
        load = best[-1]["cpu_per_wall"] if best else 0.0
        note = (
            f"measured: record pinned to one core, {info['seconds']:.0f} s per step, no drop, "
            f"every frame its sender sent in time; at {info['max_cameras']} cameras the core was {load:.0%} busy"
        )
        if best and "peak_rss_mb" in best[-1]:
            rss = best[-1]["peak_rss_mb"]
            note += (
                f", peak RSS {rss:,.0f} MB ({rss / info['max_cameras']:.1f} MB per camera, "
                "demuxer and hand-over buffers included)"
            )
        if info["max_cameras"] == info["ladder_top"]:
            # Every step passed: the run's ladder, not the recorder, ended the search.
            note += " (the top of the ladder: more cameras were not tried)"
        elif top and "exit" in top:
            note += f"; {top['cameras']} failed: exit {top['exit']} ({top['error']})"
        elif top:
            note += f"; {top['cameras']} failed ({top['packets']} of >= {top['expected_min']}"
            if "sender_behind_at_end_s" in top:
                note += (
                    f"; allowance already less {top['sender_behind_at_end_s']:.1f} camera-s the "
                    f"senders were behind when recording ended, at most "
                    f"{top['sender_lag_s']:.1f} s behind at any time"
                )
            note += ")"
        figs.append(
            figure(
                "ingest cameras one core records in real time (4 Mbit/s 1080p TS)",
                info["max_cameras"],
                "cameras",
                None,
                ">= 500",
                info["max_cameras"] >= 500,
                note,
            )
        )
    base_name = "test_tier_baseline_plain_boto3_upload"
    base = by[base_name]["extra_info"]["bytes"] / med(base_name) if base_name in by else None
    for par in (1, 2):
        name = f"test_tier_throughput[{par}]"
        if name not in by:
            continue
        info = by[name]["extra_info"]
        figs.append(
            figure(
                f"tiering throughput to S3, {par} upload(s) at a time, vs plain boto3 PUTs",
                info["bytes"] / med(name) / 1e6,
                "MB/s",
                base / 1e6 if base else None,
                "report",
                None,
                f"{info['objects']} objects of ~{info['bytes'] / info['objects'] / 1e6:.0f} MB; "
                "includes verify, upload, trailer check, index flip, local delete",
            )
        )
    hot = "test_clip_first_byte_hot_vs_cold[hot]"
    for variant, label in (("cold", "no cache"), ("cold-cached", "read cache")):
        cold = f"test_clip_first_byte_hot_vs_cold[{variant}]"
        if hot in by and cold in by:
            h = by[hot]["extra_info"]["first_byte_s_median"]
            c = by[cold]["extra_info"]["first_byte_s_median"]
            figs.append(
                figure(
                    f"clip time to first byte, cold (S3 ranged GETs, {label}) vs hot",
                    c * 1000,
                    "ms",
                    h * 1000,
                    "report",
                    None,
                    "moto on loopback; fMP4, 4 s clip",
                )
            )
    alone = "test_recording_while_tiering[alone]"
    for variant, what, target in (
        ("while-tiering", "its default pace (max_rate = auto)", "ratio >= 0.8"),
        ("while-tiering-uncapped", "no rate cap (max_rate = none)", "report"),
    ):
        busy = f"test_recording_while_tiering[{variant}]"
        if alone not in by or busy not in by:
            continue
        info = by[busy]["extra_info"]
        mb = info["bytes"] / 1e6
        paces = [p for p in info.get("tier_pace_bytes", []) if p]
        rates = info.get("tier_mb_s")
        figs.append(
            figure(
                "recording throughput while a tier job runs vs alone"
                + ("" if variant == "while-tiering" else ", tier job uncapped"),
                mb / med(busy),
                "MB/s",
                mb / med(alone),
                target,
                med(alone) / med(busy) >= 0.8 if target != "report" else None,
                f"2 uploads at a time, {what}"
                + (f" = {paces[0] / 1e6:.0f} MB/s of footage" if paces else "")
                + ", to a directory tier on the same disk"
                + (
                    f"; the tier job itself moved {sorted(rates)[len(rates) // 2]:,.0f} MB/s "
                    "(median of rounds, over its whole run), reading and writing the disk "
                    "recording uses"
                    if rates
                    else ""
                ),
            )
        )
    if "test_memory_per_camera" in by:
        info = by["test_memory_per_camera"]["extra_info"]
        mb = info["per_camera_kib"] / 1024
        figs.append(
            figure(
                f"memory per recording camera ({info['cameras']} cameras)",
                mb,
                "MB",
                None,
                "< 2 MB",
                mb < 2,
                "RSS growth of 100 library writers, each holding an open 2 s GOP",
            )
        )
    if "test_record_process_memory" in by:
        info = by["test_record_process_memory"]["extra_info"]
        mb = info["peak_rss_mb"] / info["cameras"]
        figs.append(
            figure(
                f"memory per recording camera, whole `vstore record` process "
                f"({info['cameras']} cameras)",
                mb,
                "MB",
                None,
                "< 2 MB",
                mb < 2,
                f"peak RSS {info['peak_rss_mb']:,.0f} MB over {info['seconds']:.0f} s "
                f"(steady mean {info['steady_mean_rss_mb']:,.0f} MB), interpreter and libraries "
                "included; 4 Mbit/s TS cameras over loopback, GOP phases staggered as real "
                f"cameras' are; dropped {info['dropped']}",
            )
        )
    if "test_index_bytes_per_camera_day" in by:
        size = by["test_index_bytes_per_camera_day"]["extra_info"]["index_bytes_per_camera_day"]
        figs.append(
            figure(
                "index bytes per camera-day (2 s GOPs)",
                size / 1e6,
                "MB",
                None,
                "< 1 MB",
                size < 1e6,
            )
        )
    return figs


def http_figures(by: dict[str, Any], med: Any) -> list[dict[str, Any]]:
    """Rows of bench_http: the node's clip path over loopback HTTP beside the library call,
    aiohttp (what `vstore serve` runs) beside Starlette on uvicorn, and a Range of an hour."""
    lib, aio, star = (f"test_http_clip_{k}" for k in ("library_baseline", "aiohttp", "starlette"))
    if lib not in by or aio not in by:
        return []
    about = "60 s of an hour of 1080p H.264 at 4 Mbit/s with AAC, hot; starts mid-frame"
    info = by[aio]["extra_info"]
    lib_s, aio_s = med(lib), info["total_s_median"]
    figs = []
    reader = "test_http_clip_library_to_reader"
    if reader in by:
        figs.append(
            figure(
                "HTTP clip 60 s of 1 h, `vstore serve` download total (vs the library call "
                "streaming to a reader)",
                aio_s * 1000,
                "ms",
                med(reader) * 1000,
                "ratio <= 1.2",
                aio_s / med(reader) <= 1.2,
                f"{about}; {info['bytes'] / 1e6:.0f} MB, read by a Python http.client on "
                "loopback; baseline: the library writing the same MP4 into a pipe that a "
                "thread drains in 1 MiB reads (bytes handed to a reader, as the node's are)",
            )
        )
    figs.append(
        figure(
            "HTTP clip 60 s of 1 h, `vstore serve` download total (vs the library call to a file)",
            aio_s * 1000,
            "ms",
            lib_s * 1000,
            "report",
            None,
            "the library writing the clip to a file it replaces (unlinked first): bytes into "
            "the page cache, not to another reader",
        )
    )
    figs += [
        figure(
            "HTTP clip 60 s of 1 h, time to first byte",
            info["first_byte_s_median"] * 1000,
            "ms",
            None,
            "< 30 ms",
            info["first_byte_s_median"] < 0.030,
            "MP4, moov first, from the packet tables",
        ),
        figure(
            "HTTP Range of the last 1 MiB of the 1 h clip: bytes the node read",
            info["range_last_mb_read_bytes"] / 2**20,
            "MiB",
            None,
            "< 2 MiB",
            info["range_last_mb_read_bytes"] < 2 * 2**20,
            "after the player's first request laid the hour out (kept 30 s); the chunk "
            "covering it is read whole to check its CRC (one 4 s GOP here); /proc rchar",
        ),
        figure(
            "HTTP clip of the whole hour: time to lay it out (first request)",
            info["hour_layout_s"] * 1000,
            "ms",
            None,
            "report",
            None,
            "every chunk's packet table read and the moov built",
        ),
    ]
    day = "test_hls_playlist_of_a_day"
    if day in by:
        info_d = by[day]["extra_info"]
        figs.append(
            figure(
                f"HLS playlist of 24 h of one camera ({info_d['segments']} GOPs), over HTTP, "
                "repeated",
                med(day) * 1000,
                "ms",
                None,
                "< 50 ms",
                med(day) < 0.050,
                "sealed segments' GOPs and lines kept from the first request; a scan of the "
                "day's segment rows",
            )
        )
        figs.append(
            figure(
                "HLS playlist of 24 h of one camera: the first request on a fresh node",
                info_d["cold_s"] * 1000,
                "ms",
                None,
                "< 50 ms",
                info_d["cold_s"] * 1000 < 50,
                "each sealed segment's GOP table read from its row and every line laid out at "
                f"once (the library alone, in a fresh process: {info_d['library_s'] * 1000:.0f}"
                " ms)",
            )
        )
    load = "test_service_under_load"
    if load in by:
        li = by[load]["extra_info"]
        ratio = li["recording_loaded_packets_per_s"] / max(
            1e-9, li["recording_alone_packets_per_s"]
        )
        figs.append(
            figure(
                f"{li['cameras']} cameras recording while {li['clients']} clients download "
                "clips: recording throughput (vs recording alone)",
                li["recording_loaded_packets_per_s"],
                "packets/s",
                li["recording_alone_packets_per_s"],
                "ratio >= 0.9, 0 drops",
                ratio >= 0.9 and li["dropped_loaded"] == 0,
                f"drops {li['dropped_alone']} alone, {li['dropped_loaded']} loaded; "
                f"{li['downloads_per_s']:.1f} downloads/s of 10 s 1080p MP4 clips, p50 "
                f"{(li['p50_s'] or 0) * 1000:.0f} ms, p99 {(li['p99_s'] or 0) * 1000:.0f} ms, "
                f"{li['download_errors']} errors; clients in another process, niced, on the same 2 "
                "cores",
            )
        )
        figs.append(
            figure(
                f"memory of an idle `vstore serve` with {li['cameras']} cameras (vs `vstore "
                "record` with the same cameras)",
                li["serve_idle_rss_mb"],
                "MB",
                li["record_rss_mb"],
                "ratio <= 1.1",
                li["serve_idle_rss_mb"] <= 1.1 * li["record_rss_mb"],
                "steady resident memory, second half of each run; each process has run one "
                "retention (the node's schedule; `vstore retention run` through record's "
                "socket), so both hold what planning loads (NumPy, ~16 MB)",
            )
        )
    if star in by:
        st = by[star]["extra_info"]
        figs.append(
            figure(
                "HTTP clip 60 s of 1 h: aiohttp (vstore serve) vs Starlette on uvicorn, total",
                aio_s * 1000,
                "ms",
                st["total_s_median"] * 1000,
                "report (the framework choice)",
                None,
                f"first byte {info['first_byte_s_median'] * 1000:.1f} ms vs "
                f"{st['first_byte_s_median'] * 1000:.1f} ms; the same handler work",
            )
        )
    return figs


def core_figures(by: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of bench_cores: recording split over two recorder processes vs one, each with
    its own store (shards), and as `vstore serve` runs them (one store, the node's index)."""
    figs: list[dict[str, Any]] = []

    def info(variant: str) -> dict[str, Any] | None:
        b = by.get(f"test_recording_over_cores[{variant}]")
        return b["extra_info"] if b is not None else None

    kinds = {
        "2procs": ("split over two recorder processes", "each process its own store (a shard)"),
        "2linked": (
            "over `vstore serve`'s two recorder processes",
            (
                "one store, whose index the node's process writes for both (its CPU "
                "counted); each process kept to a core of its own, as serve keeps them "
                "(pin_recorders)"
            ),
        ),
    }
    one = info("cache-8cams-1proc")
    for kind, (how, what) in kinds.items():
        two = info(f"cache-8cams-{kind}")
        if one is None or two is None:
            continue
        ratio = two["mb_per_s"] / one["mb_per_s"]
        figs.append(
            figure(
                f"cores: 20 KB packets of 8 cameras into the page cache, {how} vs one",
                two["mb_per_s"],
                "MB/s",
                one["mb_per_s"],
                "ratio >= 1.7",
                ratio >= 1.7,
                f"{what}; {two['cpus']} cores, of which one process keeps {_busy(one):.2f} "
                f"busy and two {_busy(two):.2f} (hashing, checksums and writes run outside "
                f"the interpreter lock); medians of {two['rounds']} interleaved rounds; two: "
                f"{_span(two)}, one: {_span(one)}",
            )
        )
        cpu = two["cpu_s_per_gb"] / one["cpu_s_per_gb"]
        figs.append(
            figure(
                f"cores: CPU per GB recorded, {how} vs one",
                two["cpu_s_per_gb"],
                "CPU s/GB",
                one["cpu_s_per_gb"],
                "ratio <= 1.10",
                cpu <= 1.10,
                "every thread of every process, the same cameras and bytes",
            )
        )
    one_core, two_cores = info("cache-8cams-1core"), info("cache-8cams-2cores")
    if one_core is not None and two_cores is not None:
        # What a core adds: the unpinned process above already spreads its hashing and
        # writes over both cores, so "two processes vs one" on the same two cores is not it.
        how = "two recorder processes, each on a core of its own, vs one process on one core"
        figs.append(
            figure(
                f"cores: 20 KB packets of 8 cameras into the page cache, {how}",
                two_cores["mb_per_s"],
                "MB/s",
                one_core["mb_per_s"],
                "ratio >= 1.7",
                two_cores["mb_per_s"] / one_core["mb_per_s"] >= 1.7,
                f"each process its own store (a shard), pinned by taskset with all its "
                f"threads; cores kept busy: one {_busy(one_core):.2f}, two "
                f"{_busy(two_cores):.2f}; medians of {two_cores['rounds']} interleaved rounds; "
                f"two: {_span(two_cores)}, one: {_span(one_core)}",
            )
        )
        cpu = two_cores["cpu_s_per_gb"] / one_core["cpu_s_per_gb"]
        figs.append(
            figure(
                f"cores: CPU per GB recorded, {how}",
                two_cores["cpu_s_per_gb"],
                "CPU s/GB",
                one_core["cpu_s_per_gb"],
                "ratio <= 1.10",
                cpu <= 1.10,
                "every thread of every process, the same cameras and bytes",
            )
        )
    plain = by.get("test_recording_over_cores[plain]")
    for kind, (how, _what) in kinds.items():
        for cams in (8, 32):
            two = info(f"disk-{cams}cams-{kind}")
            one1 = info(f"disk-{cams}cams-1proc")
            if two is None or one1 is None or plain is None:
                continue
            p = plain["extra_info"]
            figs.append(
                figure(
                    f"cores: {cams} cameras to disk (every GOP fsynced), {how} vs a plain "
                    "sequential write",
                    two["mb_per_s"],
                    "MB/s",
                    p["mb_per_s"],
                    "ratio >= 0.9",
                    two["mb_per_s"] / p["mb_per_s"] >= 0.9,
                    f"one process: {one1['mb_per_s']:.0f} MB/s; plain write {_span(p)}, two "
                    f"processes {_span(two)} over {two['rounds']} interleaved rounds",
                )
            )
    return figs


def _busy(info: dict[str, Any]) -> float:
    """Cores kept busy: CPU seconds per GB times GB per second."""
    return info["cpu_s_per_gb"] * info["mb_per_s"] / 1000


def _span(info: dict[str, Any]) -> str:
    lo, hi = info["range_mb_per_s"]
    return f"{lo:.0f}-{hi:.0f} MB/s"


def cluster_figures(by: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of bench_cluster: ownership of a city's cameras on etcd, and catalog lookups."""
    figs: list[dict[str, Any]] = []
    name = "test_cluster_assignment_at_city_scale"
    if name in by:
        info = by[name]["extra_info"]
        figs.append(
            figure(
                f"cluster: {info['cameras']:,} cameras over {info['members']} members, every "
                "camera owned after the members start",
                info["converge_s"],
                "s",
                None,
                "< 30 s",
                info["converge_s"] < 30,
                "members in one process, a real three-member etcd on the same 2 cores; "
                f"shares {info['shares']}",
            )
        )
        if "spread_by_bitrate" in info:
            figs.append(
                figure(
                    f"cluster: the most loaded member's bitrate over the mean, after "
                    f"{info.get('upgraded', 0):,} of one member's cameras became 16 Mbit/s "
                    "and the assigner rebalanced",
                    info["spread_by_bitrate"],
                    "x",
                    None,
                    "<= 1.10",
                    info["spread_by_bitrate"] <= 1.10,
                    f"{info.get('spread_upgraded', 0):.2f}x after the upgrade, before; "
                    f"{info['spread_by_count']:.2f}x as first shared, no bitrate measured yet; the rebalance "
                    f"moved {info['rebalance_moves']:,} cameras in {info['balance_s']:.1f} s; "
                    "one camera in ten at 12-16 Mbit/s, the rest 1-4 Mbit/s",
                )
            )
        figs.append(
            figure(
                "cluster: a member dies, its cameras owned by the others (after its lease "
                f"of {info['ttl_s']} s runs out)",
                info["reassign_s"],
                "s",
                None,
                f"< {info['ttl_s'] + 5} s, only its cameras move",
                info["reassign_s"] < info["ttl_s"] + 5,
                f"{info['moved']:,} cameras moved: exactly the dead member's",
            )
        )
    name = "test_failover_from_kill_to_the_new_owner_s_first_packet"
    if name in by:
        info = by[name]["extra_info"]
        figs.append(
            figure(
                f"failover: kill -9 of a node to the other's first packet of its cameras, max "
                f"over {info['kills']} kills (lease {info['ttl_s']} s)",
                info["max_s"],
                "s",
                None,
                "< 15 s",
                info["max_s"] < 15,
                f"median {info['median_s']:.1f} s; two real `vstore serve` nodes, "
                f"{info['cameras']} cameras, the killed node restarted after each kill and "
                "given its cameras back",
            )
        )
    name = "test_catalog_lookup_from_the_bucket"
    if name in by:
        info = by[name]["extra_info"]
        figs.append(
            figure(
                f"shared catalog: camera X at time T from the bucket alone, p99 ({info['cameras']:,}"
                f" cameras x {info['hours']} h in SeaweedFS)",
                info["p99_s"] * 1000,
                "ms",
                None,
                "< 50 ms",
                info["p99_s"] < 0.05,
                f"p50 {info['p50_s'] * 1000:.1f} ms over {info.get('rounds', 50)} lookups of a "
                "running process: read the hours that may hold T (by key), index them in a "
                "scratch index"
                + (
                    f"; the process's first lookup, which makes its S3 client: "
                    f"{info['first_s'] * 1000:.0f} ms"
                    if "first_s" in info
                    else ""
                ),
            )
        )
    name = "test_city_retention_planning"
    if name in by:
        info = by[name]["extra_info"]
        figs.append(
            figure(
                f"city retention: the deleter's run 5 min after its last ({info['cameras']:,} "
                f"cameras x {info['days']} days of catalog in SeaweedFS)",
                info["steady_run_s"],
                "s",
                None,
                "< 5 s",
                info["steady_run_s"] < 5,
                "planned from what the deleter learnt of each camera (none due, none read); "
                f"the hourly run that deletes the next hour of every camera "
                f"({info['deleted_hourly']:,} segments out of the catalog): "
                f"{info['hourly_run_s']:.1f} s; a full pass, every summary read: "
                f"{info['full_pass_dry_s']:.1f} s as a dry run, {info['first_run_s']:.1f} s as "
                "the deleter's first run (it deletes the oldest hour of every camera)",
            )
        )
    return figs


def evidence_figures(by: dict[str, Any], med: Any) -> list[dict[str, Any]]:
    """Rows of bench_evidence: a signed export beside the plain clip, verification beside
    SHA-256 alone, the cost of an audit record."""
    figs: list[dict[str, Any]] = []
    plain, pkg = "test_export_plain_clip", "test_export_package_60s"
    if plain in by and pkg in by:
        figs.append(
            figure(
                "evidence export of 60 s of 1080p (vs the plain clip)",
                med(pkg) * 1000,
                "ms",
                med(plain) * 1000,
                "ratio <= 1.3",
                med(pkg) <= 1.3 * med(plain),
                "clip, EFF signature (RSA-3072, one read of the clip), manifest with Ed25519, "
                "README, every file fsynced; the plain clip fsynced too (since clips no longer "
                "pay for truncating the file they replace, an fsync of 31 MB outweighs the "
                "signing)",
            )
        )
    ver = "test_verify_package_of_an_hour"
    if ver in by:
        info = by[ver]["extra_info"]
        mb = info["bytes"] / 1e6
        speed, sha_speed = mb / med(ver), mb / info["sha256_s"]
        figs.append(
            figure(
                f"vstore verify of a 1 h package ({mb:,.0f} MB), speed (vs SHA-256 alone)",
                speed,
                "MB/s",
                sha_speed,
                "ratio >= 0.8",
                speed >= 0.8 * sha_speed,
                "manifest signature, the clip's SHA-256 and its EFF signature (a second hash "
                "of the clip), no store",
            )
        )
    aud = "test_audit_append"
    if aud in by:
        figs.append(
            figure(
                "audit record appended and synced",
                med(aud) * 1e6,
                "us",
                None,
                "report",
                None,
                "one RocksDB write with sync",
            )
        )
    return figs


def real_footage_figures(by: dict[str, Any], med: Any) -> list[dict[str, Any]]:
    """Rows of bench_real_footage: clips and imports on 20 min of 1080p H.264/HEVC with
    B-frames and AAC, clips starting between frames, each beside its baseline in this run."""
    figs: list[dict[str, Any]] = []
    what = "20 min 1080p25 {codec}, 4 Mbit/s, 2 B-frames, 4 s GOP, AAC; starts mid-frame"
    for codec in ("h264", "hevc"):
        for clip, label in (("60s", "60 s"), ("10min", "10 min")):
            key = f"[{codec}-{clip}]"
            lib, ff = f"test_real_clip_library{key}", f"test_real_clip_ffmpeg{key}"
            if lib not in by or ff not in by:
                continue
            about = what.format(codec=codec.upper())
            size_mb = by[lib]["extra_info"]["bytes"] / 1e6
            lib_s, ff_s = med(lib), med(ff)
            floor = f"test_real_clip_copy_floor{key}"
            floor_s = med(floor) if floor in by else None
            lib_target = "ratio <= 0.2" if clip == "60s" else "report"
            figs.append(
                figure(
                    f"real footage {codec}: {label} clip, library to a file (vs ffmpeg -ss -to "
                    "-c copy)",
                    lib_s * 1000,
                    "ms",
                    ff_s * 1000,
                    lib_target,
                    lib_s / ff_s <= 0.2 if clip == "60s" else None,
                    f"{about}; {size_mb:.0f} MB written, warm page cache"
                    + (
                        f"; the copy floor alone is {floor_s / ff_s:.2f} of ffmpeg here"
                        if floor_s
                        else ""
                    ),
                )
            )
            if floor_s:
                figs.append(
                    figure(
                        f"real footage {codec}: {label} clip, library vs the copy floor",
                        lib_s * 1000,
                        "ms",
                        floor_s * 1000,
                        "ratio <= 2",
                        lib_s / floor_s <= 2,
                        "floor: the clip's bytes copied from the page cache to the same "
                        "destination (a file replaced each round, unlinked first as vstore does), "
                        "1 MiB reads and writes",
                    )
                )
            cmd = f"test_real_clip_command{key}"
            if cmd in by:
                figs.append(
                    figure(
                        f"real footage {codec}: {label} clip, `vstore clip` command (vs ffmpeg)",
                        med(cmd) * 1000,
                        "ms",
                        ff_s * 1000,
                        "ratio <= 0.8",
                        med(cmd) / ff_s <= 0.8,
                        "a fresh process each round, start-up included, as ffmpeg's",
                    )
                )
            ttfb = f"test_real_clip_mp4_first_byte{key}"
            if ttfb in by:
                t = by[ttfb]["extra_info"]["first_byte_s_median"]
                figs.append(
                    figure(
                        f"real footage {codec}: {label} clip, MP4 time to first byte, library",
                        t * 1000,
                        "ms",
                        None,
                        "< 20 ms" if clip == "60s" else "report",
                        t < 0.020 if clip == "60s" else None,
                        "MP4 (moov first), not fMP4: from the call, plan included, to the first "
                        "byte handed to the destination; hot",
                    )
                )
        imp = f"test_real_import_cpu[{codec}]"
        if imp in by:
            info = by[imp]["extra_info"]
            figs.append(
                figure(
                    f"real footage {codec}: import CPU (vs ffmpeg -c copy -f segment)",
                    info["cpu_s_median"],
                    "s",
                    info["ffmpeg_cpu_s_median"],
                    "ratio <= 1",
                    info["cpu_s_median"] <= info["ffmpeg_cpu_s_median"],
                    f"`vstore import` of the {info['bytes'] / 1e6:.0f} MB file into a new store, "
                    "process start-up included; user + system CPU of the child, median of 3"
                    + (
                        f"; the import's floor alone is {floor_s / info['ffmpeg_cpu_s_median']:.2f}"
                        " of ffmpeg here"
                        if (floor_s := info.get("floor_cpu_s_median"))
                        else ""
                    ),
                )
            )
            live = by.get("test_ingest_vstore_record", {}).get("extra_info", {})
            if live.get("stream_bytes_per_s"):
                live_ms_per_mb = (
                    1000 * live["cpu_s_per_camera_minute"] / (60 * live["stream_bytes_per_s"] / 1e6)
                )
                per_mb = 1000 * info["cpu_s_median"] / (info["bytes"] / 1e6)
                figs.append(
                    figure(
                        f"real footage {codec}: import CPU per MB (vs live recording per MB)",
                        per_mb,
                        "CPU ms/MB",
                        live_ms_per_mb,
                        "ratio <= 1",
                        per_mb <= live_ms_per_mb,
                        "import: the row above over the file's bytes; live: `vstore record`'s "
                        "steady CPU per camera-minute (the ingest row) over the MPEG-TS bytes "
                        "a camera sends in a minute",
                    )
                )
            if floor_s:
                figs.append(
                    figure(
                        f"real footage {codec}: import CPU vs its floor",
                        info["cpu_s_median"],
                        "s",
                        floor_s,
                        "report",
                        None,
                        "floor: PyAV's demux of every packet, SHA-256 and CRC-32 of every byte "
                        "(the segment digest and the chunk checksum) and the bytes written, in a "
                        "process of its own (bench/import_floor.py)",
                    )
                )
    return figs


def write_reports(figs: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(figs, indent=2) + "\n")
    lines = [
        "# vstore benchmark results",
        "",
        (
            f"Run: {time.strftime('%Y-%m-%dT%H:%M:%S%z')} on {machine.get('node', '?')} "
            f"({machine.get('cpu', {}).get('brand_raw', '?')}, "
            f"{machine.get('cpu', {}).get('count', '?')} cores). Ratios are value / baseline "
            "measured in the same run."
        ),
        "",
        "| figure | value | unit | baseline | ratio | target | met | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if shutil.which("ffmpeg") is None:
        lines[3:3] = [MISSING_FFMPEG, ""]
    for f in figs:
        met = {True: "yes", False: "**no**", None: "-"}[f["met"]]
        lines.append(
            f"| {f['name']} | {f['value']:,} | {f['unit']} | "
            f"{'-' if f['baseline'] is None else format(f['baseline'], ',')} | "
            f"{'-' if f['ratio'] is None else f['ratio']} | {f['target']} | {met} | "
            f"{f['note']} |"
        )
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")


def _last_figures() -> list[dict[str, Any]]:
    try:
        figs = json.loads((RESULTS / "latest.json").read_text())
    except (OSError, ValueError):
        return []
    return figs if isinstance(figs, list) else []


def _merged(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each figure ``new`` has by the same name replaced in place; new names
    after."""
    fresh = {f["name"]: f for f in new}
    out = [fresh.pop(f["name"], f) for f in old]
    return out + list(fresh.values())


def main() -> int:
    """``python -m tools.bench_report`` runs every benchmark; given test paths (``bench/
    bench_evidence.py``) it runs those again and replaces their results in the last run's,
    for a module whose rows compare within it (each row's note still says its baseline)."""
    if shutil.which("ffmpeg") is None:
        print(f"bench: {MISSING_FFMPEG}", file=sys.stderr)
    raw = RESULTS / "raw.json.tmp"
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = sys.argv[1:]
    if only and not raw.exists():
        # A fresh checkout has the last full run's figures (latest.json), not its raw data:
        # the figures of this part replace theirs by name, the others stay as they were.
        part = RESULTS / "part.json.tmp"
        run_pytest(part, only)
        doc = json.loads(part.read_text())
        part.unlink()
        write_reports(_merged(_last_figures(), build_figures(doc)), doc.get("machine_info", {}))
        print((RESULTS / "latest.md").read_text())
        return 0
    if only:
        part = RESULTS / "part.json.tmp"
        run_pytest(part, only)
        doc = json.loads(raw.read_text())
        again = json.loads(part.read_text())["benchmarks"]
        names = {b["fullname"] for b in again}
        doc["benchmarks"] = [b for b in doc["benchmarks"] if b["fullname"] not in names] + again
        raw.write_text(json.dumps(doc))
        part.unlink()
    else:
        run_pytest(raw)
    doc = json.loads(raw.read_text())
    figs = build_figures(doc)
    write_reports(figs, doc.get("machine_info", {}))
    print((RESULTS / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
