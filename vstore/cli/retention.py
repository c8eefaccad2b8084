"""Apply the retention policies: delete footage past its age or beyond its camera's byte
budget, and the oldest footage when free disk space falls below the watermark. Never held
footage, never a segment being written or read. `--dry-run` shows the plan."""

from __future__ import annotations

import argparse
import sys
import time

from vstore.cli.common import add_common_args, fmt_bytes, print_json, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="plan and delete (or --dry-run)")
    r.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    r.add_argument("--camera", action="append", help="only these cameras (repeatable)")
    r.add_argument(
        "--max-age",
        metavar="DURATION",
        help="override the max age of local (hot) footage, e.g. 30d; tiered footage keeps its own",
    )
    r.add_argument(
        "--tiered-max-age",
        metavar="DURATION",
        help="override the max age of tiered footage, e.g. 3650d",
    )
    r.add_argument("--max-bytes", metavar="SIZE", help="override bytes per camera, e.g. 2TB")
    r.add_argument(
        "--trust-clock",
        action="store_true",
        help="count ages from the host clock even where it disagrees with what the store "
        "last saw of it (after you checked it is right)",
    )
    r.add_argument("--every", metavar="DURATION", help="run repeatedly (e.g. 5m) until interrupted")
    add_common_args(r)


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import StorageFull, StoreLocked, UsageError
    from vstore.base.timebase import NS_PER_S, format_time, parse_age_ns, parse_duration_ns
    from vstore.service.job_client import JobChannelError, run_job
    from vstore.store.config import parse_size_bytes, retention_limit

    max_age = max_bytes = tiered_max_age = None
    if args.max_age is not None:
        max_age = retention_limit(parse_age_ns(args.max_age, "--max-age"), "--max-age")
    if args.tiered_max_age is not None:
        tiered_max_age = retention_limit(
            parse_age_ns(args.tiered_max_age, "--tiered-max-age"), "--tiered-max-age"
        )
    if args.max_bytes is not None:
        max_bytes = retention_limit(parse_size_bytes(args.max_bytes), "--max-bytes")
    every = parse_duration_ns(args.every) / NS_PER_S if args.every is not None else None
    if every is not None and not 1 <= every <= 7 * 86400:
        raise UsageError("--every must be within 1s..7d")
    params = {
        "cameras": args.camera,
        "max_age_ns": max_age,
        "tiered_max_age_ns": tiered_max_age,
        "max_bytes": max_bytes,
        "dry_run": args.dry_run,
        "trust_clock": args.trust_clock,
    }
    while True:
        with progress_bar(None, "deleting", not args.json and not args.dry_run, "seg") as progress:
            # Never a new store; a store a recorder or node holds open runs the job
            # through it (its socket), progress included.
            try:
                doc = run_job(args.store, "retention", params, progress)
            except (StoreLocked, JobChannelError) as exc:
                if not every:
                    raise
                # A recorder restarting, or busy: the schedule goes on.
                print(
                    f"vstore retention: warning: {exc}; trying again in {every:g}s", file=sys.stderr
                )
                time.sleep(every)
                continue
        if doc.get("clock_warning"):
            print(f"vstore retention: WARNING: {doc['clock_warning']}", file=sys.stderr)
        for cam in doc.get("unknown_policy_cameras") or ():
            print(
                f"vstore retention: warning: [retention.cameras.{cam}] names no camera of this "
                "store (a typo? its policy applies to nothing)",
                file=sys.stderr,
            )
            print(
                "  ages were counted from that time; fix the host clock, or run with "
                "--trust-clock once it is right",
                file=sys.stderr,
            )
        if args.json:
            print_json(doc)
        else:
            verb = "would delete" if args.dry_run else "deleted"
            n = doc["segments"] if args.dry_run else doc["deleted_segments"]
            print(f"{verb} {n} segment(s), {fmt_bytes(doc['bytes'])}")
            for cam, c in sorted(doc["cameras"].items()):
                reasons = ", ".join(f"{v} for {k}" for k, v in sorted(c["reasons"].items()))
                print(
                    f"  {cam}: {c['segments']} segment(s) {fmt_bytes(c['bytes'])} from "
                    f"{format_time(c['from_ns'])} .. {format_time(c['to_ns'])} ({reasons})"
                )
            if doc["kept_for_holds"]:
                print(
                    f"  {doc['kept_for_holds']} segment(s) under legal hold: none of them is "
                    "deleted, whatever its age"
                )
            if args.dry_run and doc["trims"]:
                print(
                    f"would trim {doc['trims']} held segment(s) to their held chunks, freeing "
                    f"about {fmt_bytes(doc['trim_estimated_freed_bytes'])}"
                )
                for t in doc["trim_segments"]:
                    print(f"  {t['camera']}: {t['from']} .. {t['to']} ({fmt_bytes(t['bytes'])})")
            cluster = doc.get("cluster")
            if cluster:
                _print_cluster(cluster, args.dry_run, doc.get("left_to_cluster_deleter", 0))
            if doc.get("trimmed_segments"):
                print(
                    f"  trimmed {doc['trimmed_segments']} held segment(s) to their held chunks, "
                    f"freeing {fmt_bytes(doc['trimmed_bytes'])}"
                )
        disk_full = doc["disk_full"]
        unmet = doc["watermark_unmet_after_bytes"]
        if unmet:
            why = doc.get("watermark_why") or "only held or in-use footage is left to delete"
            msg = f"free space stays {fmt_bytes(unmet)} below the watermark: {why}"
            if disk_full == "stop-recording" or not every:
                raise StorageFull(msg)
            print(f"WARNING: {msg}")
        if doc.get("errors"):
            for e in doc["errors"][:10]:
                print(f"vstore: warning: {e}", file=sys.stderr)
            if not every:
                from vstore.base.errors import TierError

                raise TierError(
                    f"{len(doc['errors'])} step(s) with the object store not done (above); "
                    "what was decided stands, and the next run finishes them"
                )
        if not every:
            return 0
        time.sleep(every)


def _print_cluster(c: dict, dry_run: bool, left: int) -> None:
    """A cluster member's share beyond its own disk: the bucket's deleter, and its index."""
    if c.get("deleter") is None or c.get("note"):
        print(f"  {c['bucket']}: {left or 'no'} tiered segment(s) past their age; "
              f"{c.get('note', '')}")  # fmt: skip
    run = c.get("bucket_run")
    if run is not None:
        who = c["deleter"]
        verb = "would take" if dry_run else "took"
        print(
            f"as the cluster's deleter ({who['member']}, epoch {who['epoch']}): {verb} "
            f"{run['deleted_segments']} segment(s), {fmt_bytes(run['deleted_bytes'])} out of "
            f"the catalog of {c['bucket']} ({run['cameras']} camera(s) read"
            f"{', a full pass' if run['full_pass'] else ''})"
        )
        if run["purged_segments"]:
            print(f"  deleted {run['purged_segments']} object(s) whose delay was over, "
                  f"{fmt_bytes(run['purged_bytes'])}")  # fmt: skip
        if run["kept_for_holds"]:
            print(f"  kept {run['kept_for_holds']} expired segment(s) under legal hold")
        if run["put_back"]:
            print(f"  listed {run['put_back']} segment(s) again: a hold came before their "
                  "objects went")  # fmt: skip
    caught = c.get("index_caught_up")
    if caught and (caught["dropped"] or caught["taken_back"]):
        verbs = ("would drop", "would take back") if dry_run else ("dropped", "took back")
        print(f"  this store's index {verbs[0]} {caught['dropped']} row(s) the deleter deleted "
              f"and {verbs[1]} {caught['taken_back']} it put back")  # fmt: skip
