"""Export evidence: frame-exact clips of one or more cameras and ranges, with a signed
manifest, the signer's public key and a README, as a directory or a ZIP."""

from __future__ import annotations

import argparse
import sys

from vstore.cli.common import add_common_args, fmt_bytes, print_json, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera", action="append", required=True,
        help="camera id; repeat --camera/--from/--to for several clips in one package",
    )  # fmt: skip
    p.add_argument("--from", dest="start", action="append", required=True, metavar="T",
                   help="start of a clip (ISO 8601); one --from serves every --camera")  # fmt: skip
    p.add_argument("--to", dest="end", action="append", required=True, metavar="T",
                   help="end of a clip (exclusive); one --to serves every --camera")  # fmt: skip
    p.add_argument("--case", required=True, help="case or reference number the export is for")
    p.add_argument("--purpose", required=True, help="why the footage is exported")
    p.add_argument("--by", required=True, metavar="NAME", help="the person exporting")
    p.add_argument(
        "-o", "--output", required=True, metavar="PATH",
        help="the package: a ZIP when PATH ends in .zip, else a new directory (never replaced)",
    )  # fmt: skip
    add_common_args(p)


def run(args: argparse.Namespace) -> int:

    from vstore.base.errors import UsageError
    from vstore.base.layout import validate_camera_id
    from vstore.base.timebase import format_duration, parse_time_ns
    from vstore.evidence.package import package_path
    from vstore.service.job_client import run_job
    from vstore.store.store import resolve_store_path

    cams = [validate_camera_id(c) for c in args.camera]
    starts, ends = args.start, args.end
    if len(starts) == 1:
        starts = starts * len(cams)
    if len(ends) == 1:
        ends = ends * len(cams)
    if not len(starts) == len(ends) == len(cams):
        raise UsageError("give one --from and --to for every --camera, or one of each for all")
    items = []
    for cam, a, b in zip(cams, starts, ends, strict=True):
        start, end = parse_time_ns(a, args.now_ns), parse_time_ns(b, args.now_ns)
        if end <= start:
            raise UsageError(f"camera {cam}: --to must be after --from")
        items.append({"camera": cam, "from_ns": start, "to_ns": end})
    out = package_path(args.output).absolute()
    if out.exists():
        raise UsageError(f"{args.output} exists: an evidence package is never overwritten")
    params = {"items": items, "out": str(out), "case": args.case, "purpose": args.purpose,
              "by": args.by}  # fmt: skip
    root = resolve_store_path(args.store)
    with progress_bar(None, "exporting", not args.json, "B") as progress:
        doc = run_job(str(root), "export", params, progress)
    if args.json:
        print_json(doc)
        return 0
    print(f"wrote {doc['path']} ({doc['container']}, {fmt_bytes(doc['bytes_written'])})")
    for c in doc["clips"]:
        print(f"  {c['file']}  camera {c['camera']}  {c['from']} .. {c['to']}")
        print(f"      SHA-256 {c['sha256']}")
        for g in c["gaps"]:
            span = format_duration(g["to_ns"] - g["from_ns"])
            print(f"      GAP {g['from']} .. {g['to']} ({span}): no footage")
        for d in c["damaged"]:
            span = format_duration(d["to_ns"] - d["from_ns"])
            print(f"      DAMAGED {d['from']} .. {d['to']} ({span}): unreadable, left out")
        for note in c["notes"]:
            print(f"      note: {note}")
        for note in c.get("left_out", ()):
            print(f"vstore export: warning: {c['file']}: {note}", file=sys.stderr)
        if c["damaged"]:
            print(
                f"vstore export: warning: {c['file']}: {len(c['damaged'])} damaged range(s) "
                "left out (listed in its manifest; see `vstore check`)",
                file=sys.stderr,
            )
    print(f"  manifest signed by export key {doc['key_id']} (Ed25519)")
    print(
        f"  check it: vstore verify {args.output} --key EXPORT-KEY.pem (the key this node "
        "publishes: `vstore key public`; without --key, only the package's own key is used)"
    )
    return 0
