"""Show the permanent audit log: holds placed and released, footage deleted, trimmed and
tiered (who, from which host and command, when, what, why, and the settings that decided it),
and on a node every access over its API (views, clips, snapshots, denied requests: the
principal, its role, token and address, and the purpose given)."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action", nargs="?", choices=["show", "verify", "digest", "prune"], default="show",
        help="show (default) the records; verify the log against its signed digests; "
        "digest: sign the records since the last digest now (a node does it every hour); "
        "prune: remove records older than [audit] max_age (a node does it daily)",
    )  # fmt: skip
    p.add_argument("--key", metavar="PEM", help="verify: the audit key to check digests with "
                   "(default: the store's current and retired audit keys)")  # fmt: skip
    add_common_args(p, tz=True)
    p.add_argument("--camera", help="only records about this camera")
    p.add_argument("--since", metavar="T", help="only records made at or after T")
    p.add_argument("--until", metavar="T", help="only records made before T")
    p.add_argument("--action", dest="actions", action="append", metavar="NAME",
                   help="only records of this action (export, hold_add, delete, ...); repeatable")  # fmt: skip
    p.add_argument("--by", metavar="NAME", help="only records made by this principal or person")
    p.add_argument("--jsonl", action="store_true",
                   help="one JSON record a line (for log shippers and jq), oldest first")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import sys

    from vstore.base.errors import UsageError
    from vstore.base.free_text import printable
    from vstore.base.timebase import format_time, parse_time_ns
    from vstore.cli.common import resolve_tz
    from vstore.store import audit_log
    from vstore.store.store import open_read_only

    if args.action == "verify":
        return _verify(args)
    if args.action == "digest":
        from vstore.service.job_client import run_job
        from vstore.store.store import resolve_store_path

        doc = run_job(str(resolve_store_path(args.store)), "audit-digest", {}, None)
        if args.json:
            print_json(doc)
        else:
            print(f"audit digest #{doc['digest']}: records #{doc['first_seq']}..#{doc['last_seq']}"
                  f" ({doc['records']}), signed by audit key {doc['key_id']}")  # fmt: skip
            c = doc.get("copies")
            if c is not None and (c["copied"] or c["error"]):
                lock = (
                    "under a legal hold"
                    if c["locked"]
                    else "with no object lock (the bucket has none)"
                )
                print(f"  {c['copied']} digest(s) copied to the object store, {lock}"
                      + (f"; copying stopped: {c['error']}" if c["error"] else ""))  # fmt: skip
        return 0
    if args.action == "prune":
        import getpass

        from vstore.service.job_client import run_job
        from vstore.store.store import resolve_store_path

        doc = run_job(
            str(resolve_store_path(args.store)), "audit-prune", {"by": getpass.getuser()}, None
        )
        if args.json:
            print_json(doc)
        elif doc["kept_forever"]:
            print("the audit log is kept forever: set [audit] max_age to prune it")
        else:
            print(f"pruned {doc['pruned']} record(s) made before {doc['before']} (their hashes "
                  f"stay signed in digest #{doc['first_digest']}); {doc['kept_for_chains']} "
                  "kept: they account for deleted footage in a recording chain")  # fmt: skip
        return 0
    tz = resolve_tz(args.tz)
    since = parse_time_ns(args.since, args.now_ns) if args.since else None
    until = parse_time_ns(args.until, args.now_ns) if args.until else None
    if since is not None and until is not None and until <= since:
        raise UsageError("--until must be after --since")
    with open_read_only(args.store) as store:
        found = audit_log.query(
            store,
            camera=args.camera,
            actions=args.actions or (),
            by=args.by,
            since_ns=since,
            until_ns=until,
        )
        recs = list(found)
        unknown = sorted(
            set(args.actions or ()) - {r["action"] for r in store.index.audit_records()}
        )
    if args.jsonl:
        import json

        for r in recs:
            print(json.dumps({**r, "at": format_time(r["at_ns"])}, separators=(",", ":")))
        return 0
    if args.json:
        print_json({"records": [{**r, "at": format_time(r["at_ns"])} for r in recs]})
        return 0
    for r in recs:
        d = r["detail"]
        # A release says why it was released; the hold's own reason is in its hold_add.
        keys = ("id", "camera", "from", "to", "release_reason", "bytes")
        if r["action"] != "hold_release":
            keys = ("id", "camera", "from", "to", "at", "live", "case", "reason", "purpose", "format",
                    "bytes", "path", "offset", "length", "token", "name", "role", "groups",
                    "started", "restarted", "stopped", "key_id", "retired", "records",
                    "before", "noticed", "sha256", "store")  # fmt: skip
        what = ", ".join(f"{k}={d[k]}" for k in keys if d.get(k) not in (None, "", []))
        if d.get("overrides"):
            what += ", overrides=" + " ".join(f"{k}={v}" for k, v in d["overrides"].items())
        who = r["by"]
        a = r.get("actor")
        if a and "principal" in a:  # over the node's API: the principal's role and address
            who += f" ({a.get('role')}, {a.get('via')} from {a.get('remote') or '?'})"
        elif a:  # records made before actors were kept have none
            who += f" ({a.get('user')}@{a.get('host')}: {' '.join(a.get('command') or [])})"
        # (text kept before input was checked, or from elsewhere, cannot pass for a line)
        line = f"#{r['seq']}  {r['action']:<13} by {who}: {what}"
        print(f"{format_time(r['at_ns'], tz)}  {printable(line)}")
    if not recs:
        filtered = args.camera or since or until or args.actions or args.by
        print("no audit records" + (" match" if filtered else ""))
    if unknown:
        print(f"note: no record in this log has the action {', '.join(unknown)}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vstore.base.errors import UsageError, VerificationFailed
    from vstore.evidence.audit_chain import verify
    from vstore.store.store import open_read_only

    key_pem = None
    if args.key:
        try:
            key_pem = Path(args.key).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.key}: {exc.strerror}") from None
    with open_read_only(args.store) as store:
        rep = verify(store, key_pem=key_pem)
    bad = [f for f in rep.findings if not f.ok]
    if args.json:
        print_json({"ok": rep.ok, "records": rep.records, "digests": rep.digests,
                    "uncovered": rep.uncovered, "pruned": rep.pruned,
                    "findings": [f._asdict() for f in rep.findings]})  # fmt: skip
    else:
        for f in rep.findings:
            print(f"{'ok  ' if f.ok else 'FAIL'}  {f.where}: {f.detail}")
        print(f"{rep.records} record(s), {rep.digests} digest(s); {rep.uncovered} record(s) "
              "after the last digest (not yet signed)"
              + (f"; {rep.pruned} pruned by the log's own retention" if rep.pruned else ""))  # fmt: skip
    if not args.json and rep.uncovered and not rep.digests:
        print("(`vstore audit digest` signs the records so far; a node signs them every hour)")
    if bad:
        raise VerificationFailed(
            f"{len(bad)} problem(s) in the audit log: "
            + "; ".join(f"{f.where}: {f.detail}" for f in bad[:3])
        )
    return 0
