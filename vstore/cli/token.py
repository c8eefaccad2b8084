"""API tokens for `vstore serve`: create (shown once, stored only as a hash), list, revoke.
A token carries a role (viewer, investigator, custodian, operator, admin) and the camera
groups it may see ([groups.NAME] in vstore.toml, or * for every camera)."""

from __future__ import annotations

import argparse
from typing import Any

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
    from vstore.base.errors import NotFound
    from vstore.service.tokens import token_file
    from vstore.store.store import resolve_store_path

    root = resolve_store_path(args.store)
    if not (root / "meta.json").exists() and not (root / "index").exists():
        raise NotFound(f"{root} is not a vstore store (`vstore init` makes one)")
    tokens = token_file(root)
    if args.action in ("create", "revoke"):
        doc = _change(root, tokens, args)
        if args.json:
            print_json(doc)
        elif args.action == "create":
            print(f"token {doc['id']} for {doc['name']}: {doc['role']} of "
                  f"{', '.join(doc['groups'])}")  # fmt: skip
            print("shown this once; keep it secret (revoke: vstore token revoke " + doc["id"] + ")")
            print(doc["token"])
        else:
            print(f"token {doc['id']} ({doc['name']}) revoked")
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


def _change(root: Any, tokens: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Create or revoke a token, audited: through the process that holds the store (a node
    or a recorder: the one that writes the audit log) when one does, else here."""
    import getpass

    from vstore.api import open_store
    from vstore.base.errors import StoreLocked
    from vstore.service.job_client import holder_socket, request
    from vstore.service.tokens import create_audited, expires_s_of, revoke_audited

    if args.action == "create":
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        expires_s = expires_s_of(args.expires, "--expires")
    try:
        store = open_store(root, create=False)
    except StoreLocked:
        sock = holder_socket(root)
        if sock is None:
            raise
        if args.action == "revoke":
            return request(sock, "DELETE", f"/api/v1/tokens/{args.id}")
        body = {"name": args.name, "role": args.role, "groups": groups}
        if args.expires:
            body["expires"] = args.expires
        return request(sock, "POST", "/api/v1/tokens", body)
    with store:
        if args.action == "revoke":
            return dict(revoke_audited(store, tokens, args.id, getpass.getuser()).public())
        token, rec = create_audited(
            store, tokens, args.name, args.role, groups, expires_s, getpass.getuser()
        )
        return {**rec.public(), "token": token}
