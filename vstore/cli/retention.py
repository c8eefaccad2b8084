"""Apply the retention policies: delete footage past its age or beyond its camera's byte
budget, and the oldest footage when free disk space falls below the watermark. Never held
footage, never a segment being written or read. `--dry-run` shows the plan."""

from __future__ import annotations

import argparse
import sys
import time

from vstore.cli.common import add_json_arg, add_store_arg, fmt_bytes, print_json, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="plan and delete (or --dry-run)")
    r.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    r.add_argument("--camera", action="append", help="only these cameras (repeatable)")
    r.add_argument("--max-age", metavar="DURATION", help="override max age, e.g. 30d")
    r.add_argument("--max-bytes", metavar="SIZE", help="override bytes per camera, e.g. 2TB")
    r.add_argument("--every", metavar="DURATION", help="run repeatedly (e.g. 5m) until interrupted")
    add_store_arg(r)
    add_json_arg(r)


def run(args: argparse.Namespace) -> int:
    from vstore.config import parse_size_bytes, retention_limit
    from vstore.errors import StorageFull, UsageError
    from vstore.retention import run_retention, watermark_unmet_after
    from vstore.store import open_store
    from vstore.timebase import NS_PER_S, format_time, parse_age_ns, parse_duration_ns

    max_age = max_bytes = None
    if args.max_age is not None:
        max_age = retention_limit(parse_age_ns(args.max_age, "--max-age"), "--max-age")
    if args.max_bytes is not None:
        max_bytes = retention_limit(parse_size_bytes(args.max_bytes), "--max-bytes")
    every = parse_duration_ns(args.every) / NS_PER_S if args.every is not None else None
    if every is not None and not 1 <= every <= 7 * 86400:
        raise UsageError("--every must be within 1s..7d")
    while True:
        with (
            open_store(args.store, create=False) as store,
            progress_bar(None, "deleting", not args.json and not args.dry_run, "seg") as bar,
        ):

            def progress(done: int, total: int) -> None:
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            plan, res = run_retention(
                store,
                cameras=args.camera,
                max_age_ns=max_age,
                max_bytes=max_bytes,
                dry_run=args.dry_run,
                progress=progress,
            )
            disk_full = store.config.retention.disk_full
        doc = plan.as_json()
        if res is not None:
            doc["deleted_segments"] = res.deleted_segments
            doc["deleted_bytes"] = res.deleted_bytes
            doc["skipped_leased"] = res.skipped_leased
            doc["trimmed_segments"] = res.trimmed_segments
            doc["trimmed_bytes"] = res.trimmed_bytes
            doc["errors"] = res.errors
        doc["dry_run"] = args.dry_run
        if args.json:
            print_json(doc)
        else:
            verb = "would delete" if args.dry_run else "deleted"
            n = len(plan.deletions) if args.dry_run else res.deleted_segments  # type: ignore[union-attr]
            print(f"{verb} {n} segment(s), {fmt_bytes(plan.bytes)}")
            for cam, c in sorted(plan.by_camera().items()):
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(c["reasons"].items()))
                print(
                    f"  {cam}: {c['segments']} segment(s) {fmt_bytes(c['bytes'])} "
                    f"{format_time(c['from_ns'])} .. {format_time(c['to_ns'])} ({reasons})"
                )
            if plan.kept_for_holds:
                print(f"  kept {len(plan.kept_for_holds)} segment(s) under legal hold")
            if res is not None and res.trimmed_segments:
                print(
                    f"  trimmed {res.trimmed_segments} held segment(s) to their held chunks, "
                    f"freeing {fmt_bytes(res.trimmed_bytes)}"
                )
        unmet = watermark_unmet_after(plan, res)
        if unmet:
            msg = (
                f"free space stays {fmt_bytes(unmet)} below the "
                "watermark: only held or in-use footage is left to delete"
            )
            if disk_full == "stop-recording" or not every:
                raise StorageFull(msg + " (held footage is never deleted)")
            print(f"WARNING: {msg}")
        if res is not None and res.errors:
            for e in res.errors[:10]:
                print(f"vstore: warning: {e}", file=sys.stderr)
            if not every:
                from vstore.errors import TierError

                raise TierError(
                    f"{len(res.errors)} tiered object(s) are out of the index but not yet "
                    "deleted from the object store; the next run deletes them"
                )
        if not every:
            return 0
        time.sleep(every)
