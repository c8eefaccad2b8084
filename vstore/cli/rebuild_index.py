"""Rebuild the catalog of tiered footage from an object store alone (each object is a
self-describing segment): a replaced recording node, or a second node, serves clips from it.

Objects another store wrote are indexed read-only: this store serves clips from them but
never deletes, trims or changes their object holds; that stays the writing store's job.
``--adopt`` takes them over (a replacement for a store that is gone), and is audited."""

from __future__ import annotations

import argparse

from vstore.base.jsonio import to_jsonable
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
    from vstore.lifecycle.tiering import rebuild_index_from_tier

    if not args.source.startswith("s3://"):  # an S3 tier is built with the store's config
        from vstore.base.errors import NotFound
        from vstore.tier.factory import open_tier

        # Checked before the store opens: rebuilding into a new store is what this command is
        # for, but not from a mistyped source, which would index nothing into it. open_tier
        # parses the URL (and refuses unknown schemes) as the rebuild below will.
        root = open_tier(args.source).root  # type: ignore[attr-defined]
        if not root.is_dir():
            raise NotFound(f"no tier directory at {root}")
    with (
        open_store(args.store) as store,
        progress_bar(None, "indexing", not args.json, "obj") as progress,
    ):
        res = rebuild_index_from_tier(
            store, store.tier(args.source), progress=progress, adopt=args.adopt
        )
    if args.json:
        print_json({"from": args.source, **to_jsonable(res)})
    else:
        print(
            f"{res.objects} object(s): indexed {res.indexed} segment(s) ({res.chunks} chunks),"
            f" {res.already_indexed} already indexed"
        )
        if res.foreign and not res.adopted:
            print(
                f"  {res.foreign} object(s) were written by another store: indexed read-only "
                "(clips work; this store never deletes them; --adopt takes them over)"
            )
        elif res.foreign:
            print(f"  {res.foreign} object(s) another store wrote are now this store's")
        for p in res.problems:
            print(f"  problem: {p}")
    return 0 if not res.problems else 5
