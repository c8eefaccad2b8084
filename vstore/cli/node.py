"""`vstore node drain NAME`: a cluster member hands its cameras to the others, then stops
(it leaves the cluster by itself once it holds none)."""

from __future__ import annotations

import argparse
import time

from vstore.cli.cluster import add_where_args, cluster_where
from vstore.cli.common import print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dr = sub.add_parser("drain", help="a member hands its cameras to the others, then stops")
    dr.add_argument("member", metavar="NAME", help="the member's [cluster] name")
    dr.add_argument("--cancel", action="store_true", help="take back a drain not yet done")
    dr.add_argument("--wait", action="store_true", help="wait until the member has left")
    dr.add_argument("--timeout", type=float, default=300.0, metavar="S",
                    help="with --wait: give up after S seconds (default 300)")  # fmt: skip
    add_where_args(dr)


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import NotFound, VstoreError
    from vstore.cluster.ownership import Ownership

    client, prefix, _cameras, _pins = cluster_where(args)
    own = Ownership(client, prefix)
    names = [m.name for m in own.members()]
    if args.cancel:
        own.drain(args.member, on=False)
        print_json({"member": args.member, "draining": False}) if args.json else print(
            f"{args.member}: drain cancelled"
        )
        return 0
    if args.member not in names:
        raise NotFound(f"no member {args.member!r} in cluster {prefix} (members: "
                       f"{', '.join(names) or 'none'})")  # fmt: skip
    own.drain(args.member)
    left = False
    if args.wait:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            held = [c for c, cl in own.claims().items() if cl.member == args.member]
            if args.member not in [m.name for m in own.members()]:
                left = True
                break
            if not args.json:
                print(f"{args.member}: {len(held)} camera(s) still to hand over", flush=True)
            time.sleep(1.0)
        if not left:
            raise VstoreError(f"{args.member} did not finish draining in {args.timeout:g} s")
        own.drain(args.member, on=False)  # (gone: a later start of it takes cameras again)
    doc = {"member": args.member, "draining": not left, "left": left}
    if args.json:
        print_json(doc)
    else:
        print(f"{args.member}: " + ("drained and stopped" if left else
              "draining: it hands its cameras over, then stops (--wait to follow)"))  # fmt: skip
    return 0
