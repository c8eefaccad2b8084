"""Verify an evidence package offline: the manifest's signature, every clip's hash, nothing
added or missing; with --store, each clip built again from the recorded chunks."""

from __future__ import annotations

import argparse

from vstore.cli.common import print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help="an evidence package: a directory or a ZIP")
    key = p.add_mutually_exclusive_group()
    key.add_argument(
        "--key", metavar="PEM",
        help="the export key you trust (public key PEM, from `vstore key list --pem`); "
        "without it the package's own signer.pem is used, which proves integrity, not origin",
    )  # fmt: skip
    key.add_argument("--cert", metavar="PEM", help="a certificate whose key you trust")
    p.add_argument(
        "--store", metavar="DIR",
        help="also build each clip again from this store's recorded chunks (read-only); "
        "s3://BUCKET/PREFIX: from a bucket's tiered footage, through its shared catalog",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vstore.base.errors import UsageError, VerificationFailed
    from vstore.evidence.verify import verify_package

    key_pem = None
    key_path = args.key or args.cert
    if key_path:
        try:
            key_pem = Path(key_path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {key_path}: {exc.strerror}") from None
    if args.store:
        from vstore.cli.common import reading
        from vstore.evidence.verify import package_scope

        cameras, start_ns, end_ns = package_scope(args.package)
        with reading(args.store, cameras, start_ns, end_ns) as st:
            rep = verify_package(args.package, key_pem=key_pem, store=st)
    else:
        rep = verify_package(args.package, key_pem=key_pem)
    if args.json:
        print_json(
            {
                "path": rep.path,
                "ok": rep.ok,
                "key_id": rep.key_id,
                "key_given": rep.key_given,
                "checks": [c._asdict() for c in rep.checks],
            }
        )
    else:
        for c in rep.checks:
            mark = {True: "ok  ", False: "FAIL", None: "n/a "}[c.ok]
            print(f"{mark}  {c.check:<9} {c.target}: {c.detail}")
        if rep.ok:
            unmade = len(rep.unmade())
            print(
                f"verified: {len(rep.checks) - unmade} check(s) passed"
                + (f", {unmade} could not be made (n/a above)" if unmade else "")
            )
            if not rep.key_given and rep.lone_clip:
                print(
                    "note: checked against the certificate inside the clip; give --cert with "
                    "the node's published EFF certificate to prove who signed it"
                )
            elif not rep.key_given:
                print(
                    "note: checked against the package's own signer.pem; give --key with "
                    "the node's published export key to prove who signed it"
                )
    if not rep.ok:
        raise VerificationFailed(
            f"{len(rep.failures())} of {len(rep.checks)} check(s) failed: "
            + "; ".join(f"{c.target}: {c.detail}" for c in rep.failures()[:3])
        )
    return 0
