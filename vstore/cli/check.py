"""Verify the store: every index entry resolves to bytes whose checksums match, no segment is
left open, no orphan files, no pending deletion of held footage. ``--repair`` seals crashed
segments, adopts orphans, takes damaged chunks out of the index (their bytes kept and
recorded), and cancels deletions of held footage; it never deletes footage."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, fmt_bytes, print_json, progress_bar
from vstore.cli.exit_codes import exit_code_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p)
    p.add_argument("--repair", action="store_true", help="fix what can be fixed without loss")
    p.add_argument(
        "--quick", action="store_true", help="skip whole-segment SHA-256 (chunk CRCs only)"
    )
    p.add_argument(
        "--max-rate",
        metavar="RATE",
        help="bytes read back per second, e.g. 50MB, so that live recording on the same disk "
        "keeps its share (default: none, as fast as the disk reads)",
    )


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store
    from vstore.base.errors import CheckFailed
    from vstore.jobs.check import check_job
    from vstore.service.job_client import holder_socket, run_job
    from vstore.store.config import parse_fixed_rate

    params = {
        "repair": args.repair,
        "quick": args.quick,
        "max_rate": parse_fixed_rate(args.max_rate) if args.max_rate else 0,
    }
    with progress_bar(None, "checking", not args.json, "seg") as progress:
        if args.repair or holder_socket(args.store) is not None:
            # Repairs write: a store a recorder or node holds runs them through it; and so
            # does a check of a held store (only the holder knows what it is still writing:
            # an open segment or an import of its own is no problem, one of nobody's is).
            doc = run_job(args.store, "check", params, progress)
        else:
            # Read-only, so a check works beside a running recorder and cannot change
            # anything (a writable open would run recovery).
            with open_store(args.store, read_only=True, create=False) as store:
                doc = check_job(store, params, progress)
    if args.json:
        print_json(doc)
    else:
        for p in doc["problems"]:
            mark = "repaired" if p["repaired"] else "PROBLEM"
            print(f"{mark:8} {p['code']} {p['path']}: {p['message']}")
        open_problems = sum(not p["repaired"] for p in doc["problems"])
        state = "clean" if doc["ok"] else f"{open_problems} problem(s)"
        chains = [c for c in doc.get("chains", []) if c["links"] or c["problems"]]
        if chains:
            links = sum(c["links"] for c in chains)
            gone = sum(c["accounted"] for c in chains)
            broken = sum(bool(c["problems"]) for c in chains)
            print(
                f"recording chains: {len(chains)} camera(s), {links} link(s), {gone} of them "
                f"deleted or trimmed with an audit record; "
                + (f"{broken} broken" if broken else "all whole, heads signed")
            )
        print(
            f"checked {doc['segments']} segments, {doc['chunks']} chunks, "
            f"{fmt_bytes(doc['bytes_verified'])} hashed: {state}"
        )
    if not doc["ok"]:
        if args.json:
            return exit_code_of(CheckFailed)
        raise CheckFailed(
            "store has problems (see above)"
            + ("" if args.repair else "; `check --repair` fixes what it can without loss")
        )
    return 0
