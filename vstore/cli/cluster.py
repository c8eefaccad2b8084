"""`vstore cluster status`: the members of a cluster, their leases and loads, and who records
which camera; `vstore cluster rebalance`: ask the assigner to even the loads out now."""

from __future__ import annotations

import argparse
from typing import Any

from vstore.cli.common import add_common_args, print_json


def add_where_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd", metavar="URLS",
                   help="etcd client URLs, comma-separated (default: [cluster] etcd of the store)")  # fmt: skip
    p.add_argument("--prefix", help="the cluster's etcd prefix (default: [cluster] prefix)")
    add_common_args(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    st = sub.add_parser("status", help="members, their leases and cameras; unowned cameras")
    add_where_args(st)
    rb = sub.add_parser(
        "rebalance",
        help="ask the elected assigner to even the members' bitrates out now",
        description="Ask the elected assigner to move cameras from members above their share "
        "of the cluster's bitrate to the least loaded ones now, instead of at its next "
        "periodic check; each moved camera is handed over (sealed, then taken).",
    )
    add_where_args(rb)


def cluster_where(args: argparse.Namespace) -> tuple[Any, str, list[str], dict[str, str]]:
    from vstore.base.errors import NotFound, UsageError
    from vstore.cluster.etcd_client import EtcdClient
    from vstore.store.config import ClusterConfig, load_config, valid_cluster_prefix
    from vstore.store.store import resolve_store_path

    cfg = ClusterConfig()
    cameras: list[str] = []
    if args.store is not None or args.etcd is None:
        from vstore.base.layout import StoreLayout

        path = StoreLayout(resolve_store_path(args.store)).config_path
        if args.store is not None and not path.exists():
            raise NotFound(f"no store at {args.store} (no vstore.toml there)")
        config = load_config(path)
        cfg = config.cluster
        cameras = [c for c, s in config.cameras.items() if s.url]
    endpoints = args.etcd.split(",") if args.etcd else list(cfg.etcd)
    if not endpoints:
        raise UsageError("no cluster: give --etcd URLS, or a store whose vstore.toml has [cluster]")
    if args.etcd and not args.prefix and args.store is None:
        raise UsageError("--etcd needs --prefix: the cluster's key path, its nodes' "
                         "[cluster] prefix (such as /vstore/city)")  # fmt: skip
    prefix = args.prefix or cfg.prefix
    if not valid_cluster_prefix(prefix):
        raise UsageError(
            f'--prefix {prefix!r}: give the cluster\'s key path, such as "/vstore/city"'
        )
    return EtcdClient(endpoints), prefix, cameras, dict(cfg.pins)


def run(args: argparse.Namespace) -> int:
    from vstore.base.jsonio import to_jsonable
    from vstore.base.timebase import format_time
    from vstore.cluster.status import cluster_status

    client, prefix, cameras, pins = cluster_where(args)
    if args.action == "rebalance":
        return _rebalance(client, prefix, args.json)
    st = cluster_status(client, prefix, cameras, pins)
    if args.json:
        doc = to_jsonable(st)
        doc["plan_at"] = format_time(st.plan_at_ns) if st.plan_at_ns else None
        print_json(doc)
        return 0
    print(f"cluster {prefix} ({', '.join(st.endpoints)}): {len(st.members)} member(s), "
          f"{len(st.owners)} camera(s) recorded")  # fmt: skip
    for m in st.members:
        state = " draining" if m.draining else ""
        print(f"  {m.name:<16} {m.node:<16} weight {m.weight:g}  lease {m.lease_left_s:>3} s "
              f"{len(m.cameras):>5} camera(s) {_mbps(m.load_bits_per_s)}{state}")  # fmt: skip
        if m.cameras:
            more = f" and {len(m.cameras) - 12} more" if len(m.cameras) > 12 else ""
            print(f"    {', '.join(m.cameras[:12])}{more}")
    if st.deleter is not None:
        print(f"  deleter of tiered footage: {st.deleter['member']} "
              f"(epoch {st.deleter['epoch']})")  # fmt: skip
    else:
        print("  deleter of tiered footage: none elected (no member running)")
    asked = "; a rebalance is asked for" if st.rebalance_asked else ""
    if st.assigner is not None:
        at = f", plan written {format_time(st.plan_at_ns)}" if st.plan_at_ns else ", no plan yet"
        print(f"  assigner: {st.assigner['member']} (epoch {st.assigner['epoch']}){at}{asked}")
    else:
        print(f"  assigner: none elected (cameras go by rendezvous hashing){asked}")
    if st.plan_damaged:
        print(
            f"  the stored plan cannot be read ({st.plan_damaged}): the assigner writes a new one"
        )
    print("  (bitrates as each member last published them, every 10 s)")
    if st.unowned:
        print(f"  not recorded by any member: {', '.join(st.unowned)}")
    if st.misplaced:
        print(f"  moving to another member: {', '.join(st.misplaced)}")
    if not st.members and not st.owners:
        print(f"  no member runs under {prefix}, and no camera is claimed there: is the prefix "
              "right? (--prefix, or [cluster] prefix in vstore.toml)")  # fmt: skip
    return 0


def _mbps(bits_per_s: int) -> str:
    return f"{bits_per_s / 1e6:7.2f} Mbit/s"


def _rebalance(client: Any, prefix: str, as_json: bool) -> int:
    from vstore.cluster import assignment

    assigner = assignment.ask_rebalance(client, prefix)
    if as_json:
        print_json({"asked": True, "assigner": assigner})
    elif assigner is not None:
        print(f"asked the assigner ({assigner}) to even the members' loads out; "
              "`vstore cluster status` shows the cameras moving")  # fmt: skip
    else:
        print("asked for a rebalance; no assigner is elected at this moment: the next one "
              "to be elected does it")  # fmt: skip
    return 0
