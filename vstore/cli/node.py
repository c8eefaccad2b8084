"""`vstore node drain NAME`: a cluster member hands its cameras to the others, then stops
(it leaves the cluster by itself once it holds none). `vstore node forget NAME`: a node that
will never come back is declared gone in the bucket (lifecycle/gone_nodes.py)."""

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
    fg = sub.add_parser(
        "forget",
        help="declare a node that will never come back gone: readers of the bucket stop "
        "asking it, and what it never tiered shows as lost",
        description="Declare a node gone for good (its disk lost, the machine retired): its "
        "card in the bucket is replaced by a declaration, so bucket readers stop asking its "
        "API for footage not tiered yet, and the footage it recorded but never tiered shows "
        "as lost in their timelines instead of a bare gap. A live cluster member is refused "
        "(drain it first). If the node starts again, it takes the declaration back.",
    )
    fg.add_argument("member", metavar="NAME", help="the node's [cluster] name, or host name")
    fg.add_argument("--bucket", metavar="URL",
                    help="the shared bucket, s3://BUCKET/PREFIX (default: [tier] url of the store)")  # fmt: skip
    add_where_args(fg)


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import NotFound, UsageError, VstoreError
    from vstore.cluster.ownership import Ownership

    if args.action == "forget":
        return _forget(args)
    client, prefix, _cameras, _pins = cluster_where(args)
    own = Ownership(client, prefix)
    members = own.members()
    names = [m.name for m in members]
    if args.cancel:
        if not own.drain_asked(args.member):
            raise NotFound(
                f"no drain of {args.member!r} to cancel in cluster {prefix} (none was asked, "
                "or it finished: a drained node that left ended its drain)"
            )
        own.drain(args.member, on=False)
        print_json({"member": args.member, "draining": False}) if args.json else print(
            f"{args.member}: drain cancelled"
        )
        return 0
    if args.member not in names:
        raise NotFound(f"no member {args.member!r} in cluster {prefix} (members: "
                       f"{', '.join(names) or 'none'})")  # fmt: skip
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: give seconds above 0")
    takers = [m.name for m in members if m.name != args.member and not m.draining]
    if not takers:
        raise UsageError(
            f"{args.member} is the only member that records: drained, its cameras would be "
            "recorded by nobody (start another node first, or stop this one)"
        )
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
                print(f"{args.member}: {len(held)} camera(s) still to hand over" if held else
                      f"{args.member}: cameras handed over; it tiers what it holds, then stops",
                      flush=True)  # fmt: skip
            time.sleep(1.0)
        if not left:
            raise VstoreError(
                f"{args.member} did not finish draining in {args.timeout:g} s; the drain stays "
                f"asked and goes on (`vstore node drain {args.member} --cancel` takes it back)"
            )
        own.drain(args.member, on=False)  # (gone: a later start of it takes cameras again)
    doc = {"member": args.member, "draining": not left, "left": left}
    if args.json:
        print_json(doc)
    else:
        print(f"{args.member}: " + ("drained and stopped" if left else
              "draining: it hands its cameras over, then stops (--wait to follow)"))  # fmt: skip
    return 0


def _forget(args: argparse.Namespace) -> int:
    import time

    from vstore.base.errors import NotFound, UsageError
    from vstore.base.layout import StoreLayout
    from vstore.base.timebase import format_time
    from vstore.cluster.ownership import Ownership
    from vstore.lifecycle.gone_nodes import declare_gone
    from vstore.lifecycle.hot_footage import read_cards
    from vstore.store.config import load_config
    from vstore.store.store import resolve_store_path
    from vstore.tier.factory import open_tier

    bucket = args.bucket
    config = None
    if args.store is not None or not bucket or not args.etcd:
        path = StoreLayout(resolve_store_path(args.store)).config_path
        if path.exists():
            config = load_config(path)
        elif args.store is not None:
            raise NotFound(f"no store at {args.store} (no vstore.toml there)")
    bucket = bucket or (config.tier.url if config is not None else None)
    if not bucket:
        raise UsageError("no bucket: give --bucket s3://BUCKET/PREFIX, or a store with [tier] url")
    if args.etcd or (config is not None and config.cluster.etcd):
        client, prefix, _cameras, _pins = cluster_where(args)
        if args.member in [m.name for m in Ownership(client, prefix).members()]:
            raise UsageError(
                f"{args.member} is a live member of cluster {prefix}: it is not gone; hand "
                f"its cameras over with `vstore node drain {args.member} --wait` and stop it "
                "first"
            )
    tier = open_tier(bucket)
    done = declare_gone(tier, args.member, read_cards(tier), time.time_ns())
    if args.json:
        print_json({"declared": [{**d, "declared": format_time(d["declared_ns"])} for d in done]})
        return 0
    for d in done:
        print(f"node {d['member'] or d['node']} (store {d['store']}, API {d['api']}) declared "
              f"gone at {format_time(d['declared_ns'])}: readers of {bucket} no longer ask it, "
              "and the footage it never tiered shows as lost in their timelines; if it starts "
              "again, it takes this back")  # fmt: skip
    return 0
