"""Legal holds: pin a camera's footage in a time range so that nothing deletes it.
Holds and releases are recorded permanently (who, when, why): see `vstore audit`."""

from __future__ import annotations

import argparse
import getpass

from vstore.cli.common import (
    add_common_args,
    add_range_args,
    fmt_time,
    print_json,
    resolve_tz,
    table,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="place a hold")
    add_range_args(
        a,
        camera="the camera whose footage to hold",
        start="start of the held range",
        end="end of the held range (exclusive)",
    )
    a.add_argument("--reason", required=True, help="case number, request, ...")
    a.add_argument("--by", default=None, help="who places it (default: login name)")
    ls = sub.add_parser("list", help="active holds (--all: released ones too)")
    ls.add_argument("--all", action="store_true", help="released holds too")
    add_range_args(
        ls,
        camera="only this camera's holds",
        start="only holds that reach past T",
        end="only holds that begin before T",
        camera_required=False,
        range_required=False,
    )
    r = sub.add_parser("release", help="release a hold")
    r.add_argument(
        "id",
        metavar="HOLD",
        help="the hold's number on this node, or its name NODE:N on any node of the cluster "
        "(vstore hold list)",
    )
    r.add_argument("--by", default=None, help="who releases it (default: login name)")
    r.add_argument("--reason", default="", help="why")
    r.add_argument(
        "--camera",
        default=None,
        help="the camera the hold is of: a hold of another is not released (a number is "
        "each node's own)",
    )
    sy = sub.add_parser(
        "sync",
        help="exchange holds with the other stores of the bucket, and re-apply S3 object "
        "legal holds to tiered footage (after an outage)",
    )
    for q in (a, ls, r, sy):
        add_common_args(q, tz=True)


def run(args: argparse.Namespace) -> int:
    import sys

    from vstore.api import open_store
    from vstore.base.errors import TierError
    from vstore.base.timebase import parse_time_ns
    from vstore.service.job_client import run_job
    from vstore.store.holds import hold_doc, list_holds

    tz = resolve_tz(args.tz)
    if args.action == "list":
        with open_store(args.store, read_only=True) as store:
            lo = parse_time_ns(args.start, args.now_ns) if args.start else None
            hi = parse_time_ns(args.end, args.now_ns) if args.end else None
            holds = [
                h
                for h in list_holds(store, include_released=args.all)
                if (args.camera is None or h.camera == args.camera)
                and (lo is None or h.to_ns > lo)
                and (hi is None or h.from_ns < hi)
            ]
            docs = [hold_doc(store, h) for h in holds]
        if args.json:
            print_json({"holds": docs})
        elif not holds:
            print("no holds")
        else:
            named = any("name" in d for d in docs)  # (shared holds: a lone store's have none)
            rows = [
                [
                    str(h.id),
                    *([str(d.get("name", ""))] if named else []),
                    h.camera,
                    fmt_time(h.from_ns, tz),
                    fmt_time(h.to_ns, tz),
                    h.by,
                    "active" if h.active else f"released by {h.released_by}",
                    h.reason,
                ]
                for h, d in zip(holds, docs, strict=True)
            ]
            head = ["ID", *(["NAME"] if named else []), "CAMERA", "FROM", "TO", "BY", "STATE"]
            print(table(rows, [*head, "REASON"]))
        return 0
    params: dict[str, object] = {"action": args.action}
    if args.action == "add":
        params.update(
            camera=args.camera,
            from_ns=parse_time_ns(args.start, args.now_ns),
            to_ns=parse_time_ns(args.end, args.now_ns),
            reason=args.reason,
            by=args.by if args.by is not None else getpass.getuser(),
        )
    elif args.action == "release":
        params.update(
            id=args.id, by=args.by if args.by is not None else getpass.getuser(), reason=args.reason
        )
        if args.camera is not None:
            params["camera"] = args.camera
    # Never a new store (a hold placed in a mistyped one would leave the footage unheld);
    # a store a recorder or node holds open runs the job through it (its socket).
    doc = run_job(args.store, "hold", params)
    objects = doc["objects"]
    if doc.get("warning"):
        print(f"vstore hold: warning: {doc['warning']}", file=sys.stderr)
    if args.json:
        print_json(doc)
    elif args.action == "sync":
        shared = doc.get("shared") or {}
        print(
            f"shared holds: {shared.get('shared', 0)} written to the bucket, "
            f"{shared.get('brought_in', 0)} brought in from other stores, "
            f"{shared.get('released', 0)} released by them"
        )
        print(
            f"object legal holds: {objects['held']} on, {objects['lifted']} lifted, "
            f"{objects['unsupported']} on tiers without object lock"
        )
        for e in shared.get("errors", []):
            print(f"vstore: warning: {e}", file=sys.stderr)
    elif args.action == "add":
        print(
            f"hold #{doc['id']}{_named(doc)} placed on {doc['camera']} {fmt_time(doc['from_ns'], tz)} .. "
            f"{fmt_time(doc['to_ns'], tz)} by {doc['by']}"
        )
        if objects["held"]:
            print(f"  {objects['held']} tiered object(s) also under an S3 object legal hold")
    else:
        print(
            f"hold #{doc['id']}{_named(doc)} released by {doc['released_by']}: "
            f"{doc['camera']} "
            f"{fmt_time(doc['from_ns'], tz)} .. {fmt_time(doc['to_ns'], tz)}, placed by "
            f"{doc['by']} for {doc['reason']!r}"
        )
        if objects["lifted"]:
            print(f"  object legal hold lifted on {objects['lifted']} tiered object(s)")
    failed = []
    if objects["errors"]:
        for e in objects["errors"][:10]:
            print(f"vstore: warning: {e}", file=sys.stderr)
        failed.append(f"{len(objects['errors'])} tiered object(s) could not be updated")
    released = args.action == "release"
    if doc.get("share_error"):
        print(f"vstore: warning: {doc['share_error']}", file=sys.stderr)
        what = "release" if released else "hold"
        failed.append(f"the {what} is not yet shared with the other stores of the bucket")
    if failed:
        here = (
            f"; the release of hold #{doc.get('id')} is recorded here"
            if released
            else (f"; hold #{doc['id']} itself is recorded here and binds" if "id" in doc else "")
        )
        raise TierError(
            "; ".join(failed)
            + here
            + "; rerun `vstore hold sync` when the object store is reachable (a running node "
            "tries again every 30 s)"
        )
    return 0


def _named(doc: dict) -> str:
    """ " (NODE:N)": the name a shared hold goes by on every node, when it has one."""
    return f" ({doc['name']})" if doc.get("name") else ""
