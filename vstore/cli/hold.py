"""Legal holds: pin a camera's footage in a time range so that nothing deletes it.
Holds and releases are recorded permanently (who, when, why): see `vstore audit`."""

from __future__ import annotations

import argparse
import getpass

from vstore.cli.common import (
    add_json_arg,
    add_store_arg,
    add_tz_arg,
    fmt_time,
    print_json,
    resolve_tz,
    table,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="place a hold")
    a.add_argument("--camera", required=True)
    a.add_argument("--from", dest="start", required=True, metavar="T")
    a.add_argument("--to", dest="end", required=True, metavar="T")
    a.add_argument("--reason", required=True, help="case number, request, ...")
    a.add_argument("--by", default=None, help="who places it (default: login name)")
    ls = sub.add_parser("list", help="active holds (--all: released ones too)")
    ls.add_argument("--all", action="store_true")
    r = sub.add_parser("release", help="release a hold")
    r.add_argument("id", type=int)
    r.add_argument("--by", required=True, help="who releases it")
    r.add_argument("--reason", default="", help="why")
    for q in (a, ls, r):
        add_store_arg(q)
        add_json_arg(q)
        add_tz_arg(q)


def run(args: argparse.Namespace) -> int:
    from vstore.retention import add_hold, list_holds, release_hold
    from vstore.store import open_store
    from vstore.timebase import parse_time_ns

    tz = resolve_tz(args.tz)
    if args.action == "list":
        with open_store(args.store, read_only=True) as store:
            holds = list_holds(store, include_released=args.all)
        if args.json:
            print_json({"holds": [h.as_json() for h in holds]})
        elif not holds:
            print("no holds")
        else:
            print(
                table(
                    [
                        [
                            str(h.id),
                            h.camera,
                            fmt_time(h.from_ns, tz),
                            fmt_time(h.to_ns, tz),
                            h.by,
                            "active" if h.active else f"released by {h.released_by}",
                            h.reason,
                        ]
                        for h in holds
                    ],
                    ["ID", "CAMERA", "FROM", "TO", "BY", "STATE", "REASON"],
                )
            )
        return 0
    with open_store(args.store) as store:
        if args.action == "add":
            by = args.by or getpass.getuser()
            hold = add_hold(
                store,
                args.camera,
                parse_time_ns(args.start),
                parse_time_ns(args.end),
                args.reason,
                by,
            )
        else:
            hold = release_hold(store, args.id, args.by, args.reason)
    if args.json:
        print_json(hold.as_json())
    elif args.action == "add":
        print(
            f"hold #{hold.id} placed on {hold.camera} {fmt_time(hold.from_ns, tz)} .. "
            f"{fmt_time(hold.to_ns, tz)} by {hold.by}"
        )
    else:
        print(f"hold #{hold.id} released by {hold.released_by}")
    return 0
