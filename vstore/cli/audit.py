"""Show the permanent audit log: holds placed and released, footage deleted (who, when,
what, why)."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_json_arg, add_store_arg, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arg(p)
    add_json_arg(p)


def run(args: argparse.Namespace) -> int:
    from vstore.store import open_store
    from vstore.timebase import format_time

    with open_store(args.store, read_only=True) as store:
        recs = store.index.audit_records()
    if args.json:
        print_json({"records": [{**r, "at": format_time(r["at_ns"])} for r in recs]})
        return 0
    for r in recs:
        d = r["detail"]
        # A release says why it was released; the hold's own reason is in its hold_add.
        keys = ("id", "camera", "from", "to", "release_reason", "bytes")
        if r["action"] != "hold_release":
            keys = ("id", "camera", "from", "to", "reason", "bytes")
        what = ", ".join(f"{k}={d[k]}" for k in keys if k in d)
        print(f"{format_time(r['at_ns'])}  #{r['seq']}  {r['action']:<13} by {r['by']}: {what}")
    if not recs:
        print("audit log is empty")
    return 0
