"""Write the frame shown at one instant of a camera as a JPEG or PNG (decoding from the
keyframe before it: the only command that decodes video)."""

from __future__ import annotations

import argparse
import sys

from vstore.base.jsonio import to_jsonable
from vstore.cli.common import add_common_args, print_json, reading, refuse_overwrite


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p, bucket=True)
    p.add_argument("--camera", required=True, help="camera id")
    p.add_argument("--at", required=True, metavar="T", help="instant (ISO 8601, now, -5m)")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="frame.jpg or .png ('-': stdout)"
    )
    p.add_argument(
        "--format", choices=["jpg", "png"], help="image format (default: from FILE; stdout: jpg)"
    )
    p.add_argument(
        "-y", "--overwrite", action="store_true", help="replace FILE if it exists (else refused)"
    )


def run(args: argparse.Namespace) -> int:
    from vstore.base.timebase import format_time, parse_time_ns
    from vstore.export.snapshot import snapshot

    at = parse_time_ns(args.at, args.now_ns)
    to_stdout = args.output == "-"
    if to_stdout and args.json:
        from vstore.base.errors import UsageError

        raise UsageError("-o - and --json both want stdout: give -o FILE, or drop --json")
    if to_stdout and sys.stdout.isatty():
        from vstore.base.errors import UsageError

        raise UsageError(
            "-o - writes an image to stdout, which is a terminal: pipe it or give -o FILE"
        )
    if not to_stdout:
        refuse_overwrite(args.output, args.overwrite)
    with reading(args.store, [args.camera], at - 60 * 10**9, at + 1) as store:
        out = sys.stdout.buffer if to_stdout else args.output
        snap = snapshot(store, args.camera, at, out, args.format)
    if to_stdout:
        return 0
    if args.json:
        print_json(to_jsonable(snap))
    else:
        print(
            f"wrote {snap.path} ({snap.width}x{snap.height}), frame at {format_time(snap.frame_at_ns)}"
        )
    return 0
