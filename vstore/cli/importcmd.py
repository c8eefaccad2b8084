"""Import an existing recording (MP4, MKV, MPEG-TS from another system) at a wall-clock start,
keeping its frame timing: packets are remuxed, never re-encoded."""

from __future__ import annotations

import argparse
import sys

from vstore.cli.common import add_common_args, fmt_bytes, fmt_time, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="recording to import")
    p.add_argument("--camera", required=True, help="camera id to store it under")
    p.add_argument(
        "--start", required=True, metavar="T", help="wall-clock time of the first frame (ISO 8601)"
    )
    p.add_argument(
        "--max-rate",
        metavar="RATE",
        help="footage written per second, e.g. 50MB, so that live recording on the same disk "
        "keeps its share (default: none, as fast as the disk takes it)",
    )
    p.add_argument(
        "--abandon",
        choices=["keep", "discard"],
        help="give up the unfinished import at --camera and --start (`vstore check` lists "
        "them; no file needed): keep what it stored, or discard it (deleted and audited; a "
        "hold refuses it)",
    )
    add_common_args(p)


def _abandon(args: argparse.Namespace, start_ns: int) -> int:
    from vstore.service.job_client import run_job
    from vstore.store.store import resolve_store_path

    params = {"camera": args.camera, "start_ns": start_ns, "abandon": args.abandon}
    doc = run_job(str(resolve_store_path(args.store)), "import", params, None)
    if args.json:
        print_json(doc)
        return 0
    what = "kept" if doc["abandoned"] == "keep" else "deleted (see `vstore audit`)"
    print(f"gave up the import of {doc['file']} into camera {doc['camera']} at {doc['start']}: "
          f"its {doc['segments']} segment(s) {what}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from datetime import UTC
    from pathlib import Path

    from vstore.base.errors import NotFound, UsageError
    from vstore.base.layout import validate_camera_id
    from vstore.base.timebase import parse_time_ns
    from vstore.cli.common import progress_bar
    from vstore.service.job_client import run_job
    from vstore.store.config import parse_fixed_rate
    from vstore.store.store import resolve_store_path

    validate_camera_id(args.camera)
    start = parse_time_ns(args.start, args.now_ns)
    if args.abandon:
        if args.file:
            raise UsageError("--abandon gives up an unfinished import: give no file with it")
        return _abandon(args, start)
    if not args.file:
        raise UsageError("give the recording to import (or --abandon keep|discard)")
    rate = parse_fixed_rate(args.max_rate) if args.max_rate else 0
    root = resolve_store_path(args.store)
    # A new store is made in an existing directory only (a typo deep in a path must not
    # create a tree), and a failed first import leaves no empty store behind.
    new_store = not root.exists()
    if new_store and not root.absolute().parent.is_dir():
        raise NotFound(f"{root.absolute().parent} does not exist: make it, or `vstore init` there")
    made = not (root / "index").exists()
    if made:  # no store there yet: the import makes one
        from vstore.api import open_store

        open_store(root).close()
    params = {
        # Absolute: a node holding the store runs the job from its own directory.
        "file": str(Path(args.file).absolute()),
        "camera": args.camera,
        "start_ns": start,
        "max_rate": rate,
    }
    try:
        with progress_bar(None, "importing", not args.json, "s") as progress:
            # A store a recorder or node holds open runs the import through it (its socket).
            doc = run_job(str(root), "import", params, progress)
    except BaseException as exc:
        if new_store and root.is_dir() and not any(root.glob("segments/**/*.vseg")):
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        elif isinstance(exc, KeyboardInterrupt):
            print(
                "vstore import: the import is unfinished (`vstore check` lists it): run the "
                "same command again to replace what it stored, or give it up with --abandon "
                "keep|discard and its --camera and --start",
                file=sys.stderr,
            )
        raise
    if made:  # (said: a mistyped --store must not pass silently for the store meant)
        print(f"vstore import: there was no store at {root}: made a new one", file=sys.stderr)
    for w in doc["warnings"]:  # on stderr, --json or not: stdout stays one document
        print(f"vstore import: warning: {w}", file=sys.stderr)
    if args.json:
        print_json({**doc, "file": args.file})
        return 0
    print(f"imported {args.file} as camera {doc['camera']}")
    print(f"  {fmt_time(doc['from_ns'], UTC)} .. {fmt_time(doc['to_ns'], UTC)}")
    print(f"  {doc['packets']} packets, {fmt_bytes(doc['bytes'])}, {doc['segments']} segment(s)")
    if doc["replaced_segments"]:
        print(
            f"  replaced {doc['replaced_segments']} segment(s) an earlier, unfinished run of "
            "this import had written (see `vstore audit`)"
        )
    stats = doc["stats"]
    dropped = stats["dropped_before_keyframe"] + stats["dropped_no_params"]
    if dropped:
        print(f"  {dropped} packet(s) before the first decodable keyframe were not stored")
    if stats["corrupt_packets"]:
        print(
            f"  {stats['corrupt_packets']} packet(s) the file marks as damaged were stored as "
            "they are, flagged (see `vstore timeline`: source_damage)"
        )
    if stats["discontinuities"]:
        print(
            f"  {stats['discontinuities']} timestamp discontinuities recorded "
            "(see `vstore timeline`)"
        )
    return 0
