"""Move sealed segments older than the hot age to object storage (S3, MinIO, Ceph, or a
directory). They stay in the same index: clips read them with ranged GETs. A local file is
removed only after its upload is verified."""

from __future__ import annotations

import argparse

from vstore.base.jsonio import to_jsonable
from vstore.cli.common import add_common_args, fmt_bytes, print_json, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="tier what is old enough (or --dry-run)")
    r.add_argument(
        "--to",
        metavar="URL",
        help="s3://BUCKET/PREFIX or a directory (default: [tier] url in vstore.toml)",
    )
    r.add_argument(
        "--older-than", metavar="DURATION", help="hot-tier age (default: [tier] older_than, 7d)"
    )
    r.add_argument("--camera", action="append", help="only these cameras (repeatable)")
    r.add_argument(
        "--parallel", type=int, metavar="N", help="uploads at a time (default: [tier] parallel)"
    )
    r.add_argument(
        "--max-rate",
        metavar="RATE",
        help="footage per second: auto (4x what the cameras record, at least 20 MB/s), "
        "none, or a size such as 50MB (default: [tier] max_rate, auto)",
    )
    r.add_argument("--dry-run", action="store_true", help="only say what would move")
    add_common_args(r)


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store
    from vstore.base.errors import TierError, UsageError
    from vstore.base.timebase import parse_age_ns
    from vstore.lifecycle.tiering import run_tiering
    from vstore.store.config import parse_rate

    with open_store(args.store, create=False) as store:
        url = args.to or store.config.tier.url
        if not url:
            raise UsageError("no tier: give --to s3://BUCKET/PREFIX (or set [tier] url)")
        # Without --older-than each camera tiers at its own configured hot age.
        older = (
            parse_age_ns(args.older_than, "--older-than") if args.older_than is not None else None
        )
        if args.parallel is not None and not 1 <= args.parallel <= 64:
            raise UsageError("--parallel must be within 1..64")
        rate = parse_rate(args.max_rate) if args.max_rate else None
        tier = store.tier(url)
        with progress_bar(None, "tiering", not args.json and not args.dry_run, "seg") as progress:
            try:
                res = run_tiering(
                    store,
                    tier,
                    older,
                    cameras=args.camera,
                    dry_run=args.dry_run,
                    parallel=args.parallel,
                    max_rate_bytes=rate,
                    progress=progress,
                )
            except TierError as exc:
                partial = getattr(exc, "result", None)
                if args.json and partial is not None:
                    print_json(
                        {"to": url, "dry_run": False, **to_jsonable(partial), "error": str(exc)}
                    )
                raise
    if args.json:
        print_json({"to": url, "dry_run": args.dry_run, **to_jsonable(res)})
    elif args.dry_run:
        print(f"would move {res.planned} segment(s), {fmt_bytes(res.bytes)} to {url}")
    else:
        pace = f", paced at {res.max_rate_bytes / 1e6:.0f} MB/s" if res.max_rate_bytes else ""
        print(
            f"moved {res.tiered} segment(s), {fmt_bytes(res.bytes)} to {url} in "
            f"{res.seconds:.1f}s ({res.mb_per_s:.1f} MB/s{pace})"
        )
        if res.object_holds:
            print(f"  {res.object_holds} held segment(s) also under an S3 object legal hold")
        if res.skipped_leased:
            print(f"  {res.skipped_leased} segment(s) being read by a clip: left for next run")
    return 0
