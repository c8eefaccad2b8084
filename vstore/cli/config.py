"""Show the settings in force: the retention policy of a camera, each value with the section
of vstore.toml it comes from (camera, group or store), the disk watermark and the tier age."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, fmt_bytes, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="the resolved settings (of one camera with --camera)")
    s.add_argument("--camera", metavar="ID", help="the camera whose policy to resolve")
    add_common_args(s)


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import NotFound
    from vstore.base.layout import StoreLayout, validate_camera_id
    from vstore.base.timebase import NS_PER_S, format_duration
    from vstore.store.config import load_config
    from vstore.store.store import resolve_store_path

    lay = StoreLayout(resolve_store_path(args.store))
    if not lay.root.is_dir():
        raise NotFound(f"no store at {lay.root}")
    cfg = load_config(lay.config_path)
    r = cfg.retention
    cam = args.camera
    if cam is not None:
        validate_camera_id(cam)
    sources = r.policy_sources(cam if cam is not None else "\0")  # no camera: the store's

    def show(field: str, value: object) -> str:
        if value is None:
            return "no limit"
        return fmt_bytes(int(value)) if field == "max_bytes" else format_duration(int(value))  # type: ignore[call-overload]

    policy = {f: {"value": v, "text": show(f, v), "from": src} for f, (v, src) in sources.items()}
    if (
        sources["tiered_max_age_ns"][0] is None
    ):  # tiered footage follows max_age unless it has its own
        policy["tiered_max_age_ns"]["text"] = f"as max_age ({show('', sources['max_age_ns'][0])})"
    doc = {
        "store": str(lay.root),
        "config": str(lay.config_path) if lay.config_path.exists() else None,
        "camera": cam,
        "retention": policy,
        "min_free_bytes": r.min_free_bytes,
        "min_free_ratio": r.min_free_ratio,
        "disk_full": r.disk_full,
        "tier": {
            "url": cfg.tier.url,
            "older_than_ns": cfg.tier.older_than_for(cam or "\0"),
        },
    }
    known = None
    if cam is not None and lay.index_dir.exists():
        from vstore.store.store import open_read_only

        with open_read_only(lay.root) as store:
            known = store.index.camera_num(cam) is not None
    doc["camera_recorded"] = known
    doc["groups"] = {g: list(m) for g, m in cfg.groups.items()}
    c = cfg.cluster
    doc["cluster"] = (
        None
        if not c.etcd
        else {
            "etcd": list(c.etcd),
            "name": c.name or None,
            "prefix": c.prefix,
            "lease_ttl_s": c.lease_ttl_s,
            # What the elected deleter waits between the catalog and the objects.
            "deletion_delay_s": (
                c.deletion_delay_s
                if c.deletion_delay_s is not None
                else 2 * (r.every_ns or 300 * NS_PER_S) / NS_PER_S
            ),
        }
    )
    doc["notes"] = list(cfg.notes)
    if args.json:
        print_json(doc)
        return 0
    if known is False:
        print(f"note: camera {cam!r} has no footage in this store yet (its policy is shown)")
    print(f"store   {doc['store']}  (config: {doc['config'] or 'none, all defaults'})")
    print(f"retention of {'camera ' + cam if cam else 'a camera in no group or section'}:")
    for name, label in (
        ("max_age_ns", "max_age"),
        ("tiered_max_age_ns", "tiered_max_age"),
        ("max_bytes", "max_bytes"),
    ):
        p = policy[name]
        print(f"  {label:<15} {p['text']:<24} from {p['from']}")
    if r.min_free_bytes is not None:
        watermark = fmt_bytes(r.min_free_bytes)
    elif r.min_free_ratio is not None:
        watermark = f"{r.min_free_ratio * 100:g}% of the disk"
    else:
        watermark = "none"
    print(f"  {'min_free':<15} {watermark:<24} (store-wide), disk_full = {r.disk_full}")
    older = format_duration(int(doc["tier"]["older_than_ns"]))  # type: ignore[index]
    print(f"tier    {cfg.tier.url or 'none'}, segments older than {older}")
    if cfg.groups:
        member_of = [g for g, m in cfg.groups.items() if cam in m] if cam else list(cfg.groups)
        print(f"groups  {', '.join(member_of) or 'none'}")
    if doc["cluster"] is not None:
        cl = doc["cluster"]
        print(f"cluster {cl['prefix']} on {', '.join(cl['etcd'])}, member "
              f"{cl['name'] or '(the host name)'}: tiered footage is deleted by the elected "
              f"deleter, objects {cl['deletion_delay_s']:g} s after the catalog stops listing "
              "them")  # fmt: skip
    for note in cfg.notes:
        print(f"note: {note}")
    return 0
