"""The node's signing keys: list them (with their public halves) and rotate one (the old
public half is kept, so what it signed still verifies)."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every key, current and retired")
    ls.add_argument("--pem", action="store_true", help="print each key's public half (PEM)")
    add_common_args(ls)
    pub = sub.add_parser(
        "public", help="the current key's public half as PEM (for eff: its certificate)"
    )
    pub.add_argument("--purpose", default="export",
                     choices=["export", "recording", "audit", "eff"], help="(default: export)")  # fmt: skip
    pub.add_argument("--key-id", help="this key, current or retired (for packages signed "
                     "before a rotation)")  # fmt: skip
    add_common_args(pub)
    rot = sub.add_parser("rotate", help="make a new current key for a purpose")
    rot.add_argument(
        "--purpose", required=True, choices=["export", "recording", "audit", "eff"],
        help="what the key signs",
    )  # fmt: skip
    add_common_args(rot)


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store
    from vstore.base.errors import ConfigError, NotFound
    from vstore.base.timebase import format_time
    from vstore.store.keys import PURPOSES, KeyRing

    if args.action == "rotate":
        import getpass

        from vstore.service.job_client import run_job
        from vstore.store.store import resolve_store_path

        # Through the node or recorder that holds the store, when one does: it signs with
        # the new key from then on, and the rotation is audited either way.
        doc = run_job(
            str(resolve_store_path(args.store)),
            "key-rotate",
            {"purpose": args.purpose, "by": getpass.getuser()},
            None,
        )
        if args.json:
            print_json(doc)
        else:
            print(f"new current {doc['purpose']} key {doc['key_id']} ({doc['algorithm']})")
            print("  the old key is retired: what it signed still verifies")
        return 0
    # The keys live beside the store (or where [keys] dir says): reading the config is all
    # that needs the store, so this works while a node holds it.
    with open_store(args.store, read_only=True) as st:
        ring = KeyRing.of_store(st)
        if not ring.create and not ring.dir.is_dir():
            raise ConfigError(f"the key directory {ring.dir} ([keys] dir) does not exist")
        if args.action == "public":
            if args.key_id:
                info = next((k for k in ring.all_keys() if k.key_id == args.key_id), None)
                if info is None:
                    raise NotFound(f"no key {args.key_id} in {ring.dir} (`vstore key list`)")
            else:
                info = ring.signer(args.purpose).info
            pem = info.cert_pem if info.purpose == "eff" else info.public_pem
            if args.json:
                print_json({**info.as_json(), "pem": pem})
            else:
                print(pem, end="")
            return 0
        if not any(k.purpose == "export" for k in ring.all_keys()) and ring.create:
            for purpose in PURPOSES:  # made on first use; listing is a use
                ring.signer(purpose)
        keys = ring.all_keys()
    if args.json:
        print_json({"directory": str(ring.dir), "keys": [k.as_json() for k in keys]})
        return 0
    print(f"keys in {ring.dir}")
    for k in keys:
        print(f"  {k.purpose:<10} {k.key_id}  {k.algorithm:<9} {k.state:<8} "
              f"created {format_time(k.created_ns)}")  # fmt: skip
        if args.pem:
            print("    " + k.public_pem.strip().replace("\n", "\n    "))
    return 0
