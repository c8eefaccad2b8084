"""`vstore cluster status`: the members of a cluster, their leases, and who records which
camera."""

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


def cluster_where(args: argparse.Namespace) -> tuple[Any, str, list[str], dict[str, str]]:
    from vstore.base.errors import UsageError
    from vstore.cluster.etcd_client import EtcdClient
    from vstore.store.config import ClusterConfig, load_config
    from vstore.store.store import resolve_store_path

    cfg = ClusterConfig()
    cameras: list[str] = []
    if args.store is not None or args.etcd is None:
        from vstore.base.layout import StoreLayout

        config = load_config(StoreLayout(resolve_store_path(args.store)).config_path)
        cfg = config.cluster
        cameras = [c for c, s in config.cameras.items() if s.url]
    endpoints = args.etcd.split(",") if args.etcd else list(cfg.etcd)
    if not endpoints:
        raise UsageError("no cluster: give --etcd URLS, or a store whose vstore.toml has [cluster]")
    return EtcdClient(endpoints), args.prefix or cfg.prefix, cameras, dict(cfg.pins)


def run(args: argparse.Namespace) -> int:
    from vstore.base.jsonio import to_jsonable
    from vstore.cluster.status import cluster_status

    client, prefix, cameras, pins = cluster_where(args)
    st = cluster_status(client, prefix, cameras, pins)
    if args.json:
        print_json(to_jsonable(st))
        return 0
    print(f"cluster {prefix} ({', '.join(st.endpoints)}): {len(st.members)} member(s), "
          f"{len(st.owners)} camera(s) recorded")  # fmt: skip
    for m in st.members:
        state = " draining" if m.draining else ""
        print(f"  {m.name:<16} {m.node:<16} weight {m.weight:g}  lease {m.lease_ttl_s:>3} s "
              f"{len(m.cameras):>5} camera(s){state}")  # fmt: skip
    if st.deleter is not None:
        print(f"  deleter of tiered footage: {st.deleter['member']} "
              f"(epoch {st.deleter['epoch']})")  # fmt: skip
    else:
        print("  deleter of tiered footage: none elected (no member running)")
    if st.unowned:
        print(f"  not recorded by any member: {', '.join(st.unowned)}")
    if st.misplaced:
        print(f"  moving to another member: {', '.join(st.misplaced)}")
    return 0
