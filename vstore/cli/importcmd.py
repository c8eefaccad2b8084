"""Import an existing recording (MP4, MKV, MPEG-TS from another system) at a wall-clock start,
keeping its frame timing: packets are remuxed, never re-encoded."""

from __future__ import annotations

import argparse
import sys

from vstore.cli.common import add_common_args, fmt_bytes, fmt_time, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="recording to import")
    p.add_argument("--camera", required=True, help="camera id to store it under")
    p.add_argument(
        "--start", required=True, metavar="T", help="wall-clock time of the first frame (ISO 8601)"
    )
    p.add_argument(
        "--max-rate",
        metavar="RATE",
        help="footage written per second, e.g. 50MB, so that live recording on the same disk "
        "keeps its share (default: none, as fast as the disk takes it)",
    )
    add_common_args(p)


def run(args: argparse.Namespace) -> int:
    from datetime import UTC

    from vstore.api import open_store
    from vstore.base.errors import NotFound
    from vstore.base.layout import validate_camera_id
    from vstore.base.ratelimit import RateLimiter
    from vstore.base.timebase import format_time, parse_time_ns
    from vstore.cli.common import progress_bar
    from vstore.ingest.file_import import import_file
    from vstore.store.config import parse_fixed_rate
    from vstore.store.store import resolve_store_path

    validate_camera_id(args.camera)
    start = parse_time_ns(args.start)
    rate = parse_fixed_rate(args.max_rate) if args.max_rate else 0
    root = resolve_store_path(args.store)
    # A new store is made in an existing directory only (a typo deep in a path must not
    # create a tree), and a failed first import leaves no empty store behind.
    new_store = not root.exists()
    if new_store and not root.absolute().parent.is_dir():
        raise NotFound(f"{root.absolute().parent} does not exist: make it, or `vstore init` there")
    try:
        with (
            open_store(root) as store,
            progress_bar(None, "importing", not args.json, "s") as progress,
        ):
            limiter = RateLimiter(rate) if rate else None
            r = import_file(store, args.file, args.camera, start, progress=progress, rate=limiter)
    except BaseException:
        if new_store and root.is_dir() and not any(root.glob("segments/**/*.vseg")):
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        raise
    for w in r.warnings:  # on stderr, --json or not: stdout stays one document
        print(f"vstore import: warning: {w}", file=sys.stderr)
    if args.json:
        print_json(
            {
                "camera": r.camera,
                "file": args.file,
                "from": format_time(r.start_ns),
                "to": format_time(r.end_ns) if r.end_ns else None,
                "packets": r.packets,
                "bytes": r.bytes,
                "segments": r.segments,
                "stats": r.stats,
                "ignored_streams": list(r.ignored),
                "warnings": list(r.warnings),
                "max_rate_bytes": rate,
                "replaced_segments": r.replaced_segments,
            }
        )
        return 0
    print(f"imported {args.file} as camera {r.camera}")
    print(f"  {fmt_time(r.start_ns, UTC)} .. {fmt_time(r.end_ns, UTC)}")
    print(f"  {r.packets} packets, {fmt_bytes(r.bytes)}, {r.segments} segment(s)")
    if r.replaced_segments:
        print(
            f"  replaced {r.replaced_segments} segment(s) an earlier, unfinished run of this "
            "import had written (see `vstore audit`)"
        )
    dropped = r.stats["dropped_before_keyframe"] + r.stats["dropped_no_params"]
    if dropped:
        print(f"  {dropped} packet(s) before the first decodable keyframe were not stored")
    if r.stats["discontinuities"]:
        print(
            f"  {r.stats['discontinuities']} timestamp discontinuities recorded "
            "(see `vstore timeline`)"
        )
    for s in r.ignored:
        print(f"  ignored {s}")
    return 0
