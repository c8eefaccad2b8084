"""Rebuild the catalog of tiered footage from an object store alone (each object is a
self-describing segment): a replaced recording node, or a second node, serves clips from it.

Objects another store wrote are indexed read-only: this store serves clips from them but
never deletes, trims or changes their object holds; that stays the writing store's job.
``--adopt`` takes them over (a replacement for a store that is gone), and is audited."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, print_json, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        "--from-s3",
        dest="source",
        required=True,
        metavar="URL",
        help="s3://BUCKET/PREFIX or a directory holding tiered segments",
    )
    p.add_argument(
        "--adopt",
        action="store_true",
        help="take over objects another store wrote (only when that store is gone for good): "
        "this store's retention then deletes them. Without it they are read-only here",
    )
    add_common_args(p)


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store

    if not args.source.startswith("s3://"):  # an S3 tier is built with the store's config
        from vstore.base.errors import NotFound
        from vstore.tier.factory import open_tier

        # Checked before the store opens: rebuilding into a new store is what this command is
        # for, but not from a mistyped source, which would index nothing into it. open_tier
        # parses the URL (and refuses unknown schemes) as the rebuild below will.
        root = open_tier(args.source).root  # type: ignore[attr-defined]
        if not root.is_dir():
            raise NotFound(f"no tier directory at {root}")
    from vstore.base.errors import StoreLocked
    from vstore.service.job_client import run_job

    try:  # a new store is what this command is often for: make it when there is none
        open_store(args.store).close()
    except StoreLocked:
        pass  # held by a node or recorder: the job runs through it
    params = {"source": args.source, "adopt": args.adopt}
    with progress_bar(None, "indexing", not args.json, "obj") as progress:
        doc = run_job(args.store, "rebuild-index", params, progress)
    if args.json:
        print_json(doc)
    else:
        print(
            f"{doc['objects']} object(s): indexed {doc['indexed']} segment(s) "
            f"({doc['chunks']} chunks), {doc['already_indexed']} already indexed"
        )
        if doc["foreign"] and not doc["adopted"]:
            print(
                f"  {doc['foreign']} object(s) were written by another store: indexed "
                "read-only (clips work; this store never deletes them; --adopt takes them over)"
            )
        if doc["adopted_objects"]:
            print(f"  {doc['adopted_objects']} object(s) another store wrote are now this "
                  "store's")  # fmt: skip
        if doc["not_adopted"]:
            print(f"  {doc['not_adopted_objects']} object(s) not adopted, indexed read-only:")
            for uuid, why in doc["not_adopted"].items():
                print(f"    store {uuid}: {why}")
        for p in doc["problems"]:
            print(f"  problem: {p}")
    if doc["problems"]:
        return 5
    return 2 if doc["not_adopted"] else 0  # (--adopt not done for those: said above)
