"""Move sealed segments older than the hot age to object storage (S3, MinIO, Ceph, or a
directory). They stay in the same index: clips read them with ranged GETs. A local file is
removed only after its upload is verified."""

from __future__ import annotations

import argparse

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
    from vstore.base.errors import TierError
    from vstore.base.timebase import parse_age_ns
    from vstore.service.job_client import run_job
    from vstore.store.config import parse_rate

    # Without --older-than each camera tiers at its own configured hot age.
    older = parse_age_ns(args.older_than, "--older-than") if args.older_than is not None else None
    # A directory tier named relatively is the user's directory, not the one of the node
    # that may run the job.
    to = args.to
    if to and "://" not in to:
        from pathlib import Path

        to = str(Path(to).absolute())
    params = {
        "to": to,
        "older_than_ns": older,
        "cameras": args.camera,
        "dry_run": args.dry_run,
        "parallel": args.parallel,
        "max_rate": parse_rate(args.max_rate) if args.max_rate else None,
    }
    # A store a recorder or node holds open runs the job through it (its socket).
    with progress_bar(None, "tiering", not args.json and not args.dry_run, "seg") as progress:
        try:
            doc = run_job(args.store, "tier", params, progress)
        except TierError as exc:
            partial = getattr(exc, "partial", None)
            if args.json and partial is not None:
                print_json({**partial, "error": str(exc)})
            raise
    url = doc["to"]
    if args.json:
        print_json(doc)
    elif args.dry_run:
        print(f"would move {doc['planned']} segment(s), {fmt_bytes(doc['bytes'])} to {url}")
    else:
        rate = doc["max_rate_bytes"]
        pace = f", paced at {rate / 1e6:.0f} MB/s" if rate else ""
        print(
            f"moved {doc['tiered']} segment(s), {fmt_bytes(doc['bytes'])} to {url} in "
            f"{doc['seconds']:.1f}s ({doc['mb_per_s']:.1f} MB/s{pace})"
        )
        if doc["object_holds"]:
            print(f"  {doc['object_holds']} held segment(s) also under an S3 object legal hold")
        if doc["skipped_leased"]:
            print(f"  {doc['skipped_leased']} segment(s) being read by a clip: left for next run")
        if doc.get("rewritten"):
            print(
                f"  {len(doc['rewritten'])} segment(s) cut short (damage recorded by check "
                "--repair) written again whole from what the disk held, then moved"
            )
        if doc.get("kept_local"):
            print(
                f"  {len(doc['kept_local'])} segment(s) cut short with no chunk left in the "
                "index stay on this disk as they are"
            )
        if doc.get("changed"):
            print(
                f"  {doc['changed']} segment(s) deleted, trimmed or repaired while they uploaded: "
                "left as they are now (their uploads removed)"
            )
    return 0
