"""API tokens for `vstore serve`: create (shown once, stored only as a hash), list, revoke.
A token carries a role (viewer, investigator, custodian, operator, admin) and the camera
groups it may see ([groups.NAME] in vstore.toml, or * for every camera)."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, fmt_time, print_json, resolve_tz, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="make a token (printed once, on the last line)")
    c.add_argument("--name", required=True, help="who or what uses it")
    c.add_argument(
        "--role",
        required=True,
        choices=["viewer", "investigator", "custodian", "operator", "admin"],
        help="what it may do (each role includes the ones before it)",
    )
    c.add_argument(
        "--groups", required=True, help="camera groups it may see, comma-separated (* = all)"
    )
    c.add_argument(
        "--expires", metavar="DURATION", help="valid this long (30d, 12h); default: until revoked"
    )
    ls = sub.add_parser("list", help="tokens and their scope (never the tokens themselves)")
    r = sub.add_parser("revoke", help="revoke a token at once, even while the node runs")
    r.add_argument("id", help="the token's id (vstore token list)")
    add_common_args(c)
    add_common_args(ls, tz=True)
    add_common_args(r)


def run(args: argparse.Namespace) -> int:
    from vstore.base.errors import NotFound, UsageError
    from vstore.base.timebase import NS_PER_S, parse_duration_ns
    from vstore.service.tokens import token_file
    from vstore.store.config import load_config
    from vstore.store.store import resolve_store_path

    root = resolve_store_path(args.store)
    if not (root / "meta.json").exists() and not (root / "index").exists():
        raise NotFound(f"{root} is not a vstore store (`vstore init` makes one)")
    tokens = token_file(root)
    if args.action == "create":
        expires_s = None
        if args.expires:
            expires_s = parse_duration_ns(args.expires) / NS_PER_S
            if expires_s <= 0:
                raise UsageError("--expires must be more than 0")
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        token, rec = tokens.create(
            args.name, args.role, groups, load_config(root / "vstore.toml"), expires_s
        )
        if args.json:
            print_json({**rec.public(), "token": token})
        else:
            print(f"token {rec.id} for {rec.name}: {rec.role} of {', '.join(rec.groups)}")
            print("shown this once; keep it secret (revoke: vstore token revoke " + rec.id + ")")
            print(token)
        return 0
    if args.action == "revoke":
        rec = tokens.revoke(args.id)
        if args.json:
            print_json(rec.public())
        else:
            print(f"token {rec.id} ({rec.name}) revoked")
        return 0
    recs = list(tokens.records().values())
    if args.json:
        print_json({"tokens": [r.public() for r in recs]})
        return 0
    if not recs:
        print("no tokens (vstore token create makes one)")
        return 0
    tz = resolve_tz(args.tz)
    rows = [
        [
            r.id,
            r.name,
            r.role,
            ",".join(r.groups),
            fmt_time(r.created_ns, tz),
            fmt_time(r.expires_ns, tz) if r.expires_ns else "-",
            r.state(),
        ]
        for r in recs
    ]
    print(table(rows, ["ID", "NAME", "ROLE", "GROUPS", "CREATED", "EXPIRES", "STATE"]))
    return 0
