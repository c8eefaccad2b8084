"""Show a camera's covered time ranges, the gaps between them, and recorded discontinuities."""

from __future__ import annotations

import argparse

from vstore.cli.common import (
    add_common_args,
    add_range_args,
    fmt_time,
    print_json,
    reading,
    resolve_tz,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p, tz=True, bucket=True)
    add_range_args(
        p,
        camera="camera id",
        start="start time (default: first)",
        end="end time (default: last); relative: --to=-5m",
        range_required=False,
    )


def run(args: argparse.Namespace) -> int:
    from vstore.base.timebase import format_duration, parse_time_ns

    tz = resolve_tz(args.tz)
    start = parse_time_ns(args.start, args.now_ns) if args.start is not None else None
    end = parse_time_ns(args.end, args.now_ns) if args.end is not None else None
    if start is not None and end is not None and end <= start:
        from vstore.base.errors import UsageError

        raise UsageError("--to must be after --from")
    with reading(args.store, [args.camera], start, end) as store:
        tl = store.timeline(args.camera, start, end)
    if args.json:
        from vstore.jobs.reports import timeline_doc

        print_json(timeline_doc(tl))
        return 0
    print(
        f"camera {tl.camera}: {fmt_time(tl.range.start_ns, tz)} .. {fmt_time(tl.range.end_ns, tz)}"
    )
    items = [(s, "recorded", e) for s, e in tl.covered] + [(s, "GAP", e) for s, e in tl.gaps]
    for s, kind, e in sorted(items):
        print(f"  {kind:<9} {fmt_time(s, tz)} .. {fmt_time(e, tz)}  ({format_duration(e - s)})")
    for s, e in tl.open:
        print(
            f"  open      {fmt_time(s, tz)} .. {fmt_time(e, tz)}  (durable, in a segment still "
            "being written or not yet sealed after a crash)"
        )
    if tl.events:
        print("events:")
        from vstore.base.timebase import format_detail

        for ev in tl.events:
            print(f"  {fmt_time(ev['at_ns'], tz)}  {ev['kind']}  {format_detail(ev['detail'], tz)}")
    return 0
