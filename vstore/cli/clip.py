"""Export a clip of one camera for a time range: MP4 that starts on the exact frame asked
for (default), or the streamable forms fMP4 and MPEG-TS. `--plan` prints what the clip would
contain (segments, byte ranges, gaps) without reading footage."""

from __future__ import annotations

import argparse
import sys

from vstore.cli.common import (
    add_common_args,
    add_range_args,
    fmt_bytes,
    fmt_time,
    print_json,
    progress_bar,
    reading,
    refuse_overwrite,
    resolve_tz,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p, tz=True, bucket=True)
    add_range_args(
        p,
        camera="camera id",
        start="first frame time",
        end="end time (exclusive); relative: --to=-5m. A clip spans at most 7 days",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="output file ('-' for stdout)")
    p.add_argument(
        "-y", "--overwrite", action="store_true", help="replace FILE if it exists (else refused)"
    )
    p.add_argument(
        "--format",
        choices=["mp4", "fmp4", "ts", "mov"],
        help="container (default: from the file name: .mp4/.m4v mp4, .fmp4/.m4s fmp4, .ts ts, "
        ".mov mov; stdout: mp4). Audio is remuxed, never transcoded: AAC goes in every one; "
        "G.711 (mu-law/A-law), the usual IP-camera audio, only in mov",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 5) on a chunk that does not verify, instead of leaving it out as a "
        "gap listed as damaged",
    )
    p.add_argument("--plan", action="store_true", help="only print the plan")


# File name endings and the container each means; anything else needs --format.
SUFFIX_FORMATS = {
    "mp4": "mp4",
    "m4v": "mp4",
    "fmp4": "fmp4",
    "m4s": "fmp4",
    "ts": "ts",
    "mov": "mov",
}


def format_for(output: str | None) -> str:
    """The container a file name asks for: .mp4/.m4v MP4, .fmp4/.m4s fragmented MP4, .ts
    MPEG-TS; stdout and --plan default to MP4; any other ending is an error."""
    from vstore.base.errors import UsageError

    if output is None or output == "-":
        return "mp4"
    import os

    if os.path.isdir(output):
        raise UsageError(f"{output} is a directory: give a file name")
    name = output.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in SUFFIX_FORMATS:
        raise UsageError(
            f"cannot tell the container from {output!r}: name it .mp4, .fmp4 (or .m4s), .ts or "
            ".mov, or give --format"
        )
    return SUFFIX_FORMATS[suffix]


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import UsageError, VstoreError
    from vstore.base.timebase import format_duration, parse_time_ns
    from vstore.export.clip import write_clip
    from vstore.export.clip_plan import plan_clip

    tz = resolve_tz(args.tz)

    def format_time(ns: int) -> str:
        return fmt_time(ns, tz)

    start, end = parse_time_ns(args.start, args.now_ns), parse_time_ns(args.end, args.now_ns)
    if end <= start:
        raise UsageError("--to must be after --from")
    fmt = args.format
    if fmt is None:
        fmt = format_for(args.output)
    if not args.plan and not args.output:
        raise UsageError("give -o FILE (or --plan)")
    if not args.plan and args.output == "-" and args.json:
        raise UsageError("-o - and --json both want stdout: give -o FILE, or drop --json")
    if not args.plan and args.output == "-" and sys.stdout.isatty():
        raise UsageError(
            "-o - writes video to stdout, which is a terminal: pipe it or give -o FILE"
        )
    if not args.plan and args.output != "-":
        refuse_overwrite(args.output, args.overwrite)
    with (
        reading(args.store, [args.camera], start, end) as store,
        # Leased before planning: no segment of the plan can be deleted while it is read.
        store.lease(ranges=[(args.camera, start, end)]),
    ):
        plan = plan_clip(store, args.camera, start, end)
        if args.plan:
            print_json(plan.as_json()) if args.json else _print_plan(plan, tz)
            return 0
        # A pipe gets the same frame-exact MP4 as a file: vstore's muxer computes the index
        # first and streams the rest, so nothing needs a seek.
        out = sys.stdout.buffer if args.output == "-" else args.output
        with progress_bar(
            plan.bytes, "clip", not args.json and args.output != "-", "B"
        ) as progress:
            try:
                res = write_clip(
                    store, plan, out, format=fmt, progress=progress, strict=args.strict
                )
            except BrokenPipeError:
                # (an `ls | head` may end early; a clip cut short must not pass for whole)
                raise VstoreError(
                    "standard output was closed before the clip was whole: its reader got "
                    "part of it"
                ) from None
        plan = res.plan  # (without chunks that did not verify, if any)
    if args.json:
        print_json({**res.as_json(), "output": args.output})
    elif args.output != "-":
        print(
            f"wrote {args.output} ({fmt}, {fmt_bytes(res.bytes_written)}) in {res.elapsed_s:.2f}s"
        )
        # fMP4 and MPEG-TS have no edit list: they start at the keyframe before `from`.
        first = plan.start_ns if fmt in ("mp4", "mov") else plan.preroll_ns
        hidden = (
            " (counted from the keyframe before, whose frames the edit list hides)"
            if first > plan.preroll_ns
            else ""
        )
        print(
            f"  {format_time(first)} .. {format_time(plan.end_ns)} "
            f"({format_duration(plan.end_ns - first)}), "
            f"{res.video_packets} video / {res.audio_packets} audio packets{hidden}"
        )
        for s, e in plan.gaps:
            print(
                f"  GAP {format_time(s)} .. {format_time(e)} ({format_duration(e - s)}): no footage"
            )
        for s, e in plan.damaged:
            print(
                f"  DAMAGED {format_time(s)} .. {format_time(e)} ({format_duration(e - s)}): "
                "indexed but unreadable (its bytes do not verify, or its file is gone), left out "
                "(see `vstore check`)"
            )
        for note in plan.notes + res.dropped_tracks:
            print(f"  note: {note}")
    if plan.damaged:
        print(
            f"vstore clip: warning: {len(plan.damaged)} damaged range(s) left out of the clip",
            file=sys.stderr,
        )
    return 0


def _print_plan(plan, tz) -> None:
    from vstore.base.timebase import format_duration

    def format_time(ns: int) -> str:
        return fmt_time(ns, tz)

    print(
        f"camera {plan.camera}: {format_time(plan.start_ns)} .. {format_time(plan.end_ns)}"
        f" (decode from {format_time(plan.preroll_ns)})"
    )
    for part in plan.read_parts:
        print(
            f"  segment {part.segment.segment_id} {part.segment.location}:"
            f"{part.segment.path}  {len(part.chunks)} chunk(s), {fmt_bytes(part.bytes)}"
        )
    for s, e in plan.gaps:
        print(f"  GAP {format_time(s)} .. {format_time(e)} ({format_duration(e - s)})")
    for ev in plan.events:
        print(f"  event {format_time(ev['at_ns'])} {ev['kind']} {ev['detail']}")
