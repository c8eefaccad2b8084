"""Create a store (if needed) and write a commented vstore.toml with every default shown."""

from __future__ import annotations

import argparse

from vstore.cli.common import add_common_args, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p)


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store
    from vstore.store.config import CONFIG_TEMPLATE

    with open_store(args.store) as store:
        cfg = store.layout.config_path
        wrote = not cfg.exists()
        if wrote:
            cfg.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        root = str(store.root.resolve())
        ring = store.keys
        if ring.create:  # the Ed25519 keys now; the RSA key for EFF when first needed
            for purpose in ("export", "recording", "audit"):
                ring.signer(purpose)
    if args.json:
        print_json({"store": root, "config": str(cfg), "config_written": wrote})
    else:
        print(f"store   {root}")
        print(f"config  {cfg} ({'written' if wrote else 'kept as it was'})")
    return 0
