"""List the cameras of a store: first and last recorded time, size, segments and gaps."""

from __future__ import annotations

import argparse

from vstore.base.jsonio import to_jsonable
from vstore.cli.common import (
    BUCKET_SCHEME,
    add_common_args,
    fmt_bytes,
    fmt_time,
    print_json,
    reading,
    resolve_tz,
    table,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p, tz=True, bucket=True)


def run(args: argparse.Namespace) -> int:
    from vstore.base.timebase import format_duration

    tz = resolve_tz(args.tz)
    if args.store is not None and args.store.startswith(BUCKET_SCHEME):
        # A bucket: each camera's catalog summary, not every hour of every camera.
        from vstore.lifecycle.shared_catalog import bucket_cameras

        cams, root = bucket_cameras(args.store), args.store
    else:
        with reading(args.store) as store:
            cams = store.cameras()
            root = str(store.root.resolve())
    if args.json:
        print_json({"store": root, "cameras": [to_jsonable(c) for c in cams]})
        return 0
    if not cams:
        if args.store is not None and args.store.startswith(BUCKET_SCHEME):
            # (its catalog exists, else bucket_cameras said so: every camera's footage went)
            print(f"{root}: no camera has footage there now: retention deleted all of it "
                  f"(`vstore timeline --store {root} --camera CAMERA` says when, and by "
                  "whom)")  # fmt: skip
        else:
            print(f"{root}: no cameras recorded yet")
        return 0
    rows = [
        [
            c.camera,
            fmt_time(c.first_ns, tz),
            fmt_time(c.last_ns, tz),
            format_duration(c.recorded_ns),
            fmt_bytes(c.size_bytes)
            + (f" ({fmt_bytes(c.tiered_bytes)} tiered)" if c.tiered_bytes else ""),
            str(c.segments) + (f" (+{c.open_segments} open)" if c.open_segments else ""),
            str(c.gaps) + (f" (+{c.damaged_ranges} damaged)" if c.damaged_ranges else ""),
        ]
        for c in cams
    ]
    print(table(rows, ["CAMERA", "FIRST", "LAST", "RECORDED", "SIZE", "SEGMENTS", "GAPS"]))
    print(f"\nstore: {root}")
    return 0
