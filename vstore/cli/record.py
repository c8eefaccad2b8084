"""Record live sources: RTSP, MPEG-TS over tcp:// or udp://, or anything FFmpeg opens.
Reconnects with backoff when a source drops and records the gap. Several cameras record at
once: repeat URL/--camera pairs, or use --all to record every camera with a url in
vstore.toml."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING

from vstore.cli.common import add_common_args, fmt_bytes, print_json
from vstore.cli.exit_codes import INTERRUPTED, exit_code_of

if TYPE_CHECKING:
    from vstore.store.store import Store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "url",
        nargs="*",
        help="source URL(s), paired in order with the --camera options (URL1 URL2 --camera A "
        "--camera B)",
    )
    p.add_argument("--camera", action="append", default=[], help="camera id (one per URL)")
    p.add_argument("--all", action="store_true", help="record every camera with a url in config")
    p.add_argument(
        "--duration",
        metavar="DURATION",
        help="stop after this long (e.g. 90s, 15m, 2h, or seconds)",
    )
    p.add_argument("--no-reconnect", action="store_true", help="stop when a source ends")
    add_common_args(p)


def run(args: argparse.Namespace) -> int:
    from vstore.api import open_store
    from vstore.base import heap
    from vstore.base.errors import UsageError
    from vstore.base.layout import validate_camera_id
    from vstore.ingest.recorder import record_many
    from vstore.service.job_server import JobServer

    if args.duration is not None:
        from vstore.base.timebase import NS_PER_S, parse_duration_ns

        try:
            args.duration = parse_duration_ns(args.duration) / NS_PER_S
        except UsageError:
            raise UsageError(
                f"--duration {args.duration!r}: give a duration such as 90s, 15m or 2h"
            ) from None
        if not 0 < args.duration < float("inf"):
            raise UsageError("--duration must be more than 0")  # not nan, not inf
    with open_store(args.store) as store:
        sources: list[tuple[str, str]] = []
        if args.all:
            sources = [(c, s.url) for c, s in store.config.cameras.items() if s.url]
            if not sources:
                raise UsageError("--all: no camera in vstore.toml has a url")
        if len(args.url) != len(args.camera):
            raise UsageError("give exactly one --camera per URL")
        for url, cam in zip(args.url, args.camera, strict=True):
            sources.append((validate_camera_id(cam), url))
        if not sources:
            raise UsageError("nothing to record: give URL --camera ID, or --all")
        cams = [cam for cam, _ in sources]
        if len(set(cams)) != len(cams):
            twice = sorted({c for c in cams if cams.count(c) > 1})
            raise UsageError(f"camera id(s) given more than once: {', '.join(twice)}")
        stop = threading.Event()
        interrupted = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        # Ctrl-C ends the run as SIGTERM does (every camera's footage sealed), then exits 130.
        signal.signal(signal.SIGINT, lambda *_: (interrupted.set(), stop.set()))
        if not args.json:
            for cam, url in sources:
                print(
                    f"recording {cam} from {url}"
                    + (f" for {args.duration:g}s" if args.duration else " (Ctrl-C stops)")
                )
        heap.settle_for_recording()
        # This process holds the store for as long as it records: `vstore hold`,
        # `retention run`, `tier run`, `import` and `check --repair` reach the store
        # through it (its socket, vstore.service.job_server).
        with JobServer(store):
            statuses = record_many(
                store,
                sources,
                duration_s=args.duration,
                stop=stop,
                reconnect=not args.no_reconnect,
            )
        _sign_audit_log(store)
    failed = [s for s in statuses if s.last_error and not s.writer.get("packets")]
    if args.json:
        print_json({"cameras": [s.__dict__ for s in statuses]})
    else:
        for s in statuses:
            w = s.writer
            full = w.get("dropped_disk_full", 0)
            print(
                f"{s.camera}: {w.get('packets', 0)} packets, {fmt_bytes(w.get('bytes', 0))}, "
                f"{w.get('segments', 0)} segment(s), {s.reconnects} reconnect(s)"
                + (f", {s.dropped_queue_full} dropped (queue full)" if s.dropped_queue_full else "")
                + (f", {full} dropped (disk full: recording paused)" if full else "")
                + (f"; last error: {s.last_error}" if s.last_error else "")
            )
    from vstore.base import errors

    # Footage lost to a full disk is the run's outcome even where the rest recorded (7).
    full = [
        s
        for s in statuses
        if s.writer.get("dropped_disk_full") or s.stopped_by == errors.StorageFull.__name__
    ]
    if full:
        why = "; ".join(
            f"{s.camera} ({s.last_error or 'paused for space'}, "
            f"{s.writer.get('dropped_disk_full', 0)} packet(s) dropped while paused)"
            for s in full
        )
        if args.json:
            return exit_code_of(errors.StorageFull)
        raise errors.StorageFull(f"the disk filled: footage was not recorded from {why}")
    if failed:
        if args.json:
            return exit_code_of(errors.SourceError)
        raise errors.SourceError(
            "recorded nothing from "
            + "; ".join(f"{s.camera} ({s.last_error or 'no packets'})" for s in failed)
        )
    return INTERRUPTED if interrupted.is_set() else 0


def _sign_audit_log(store: Store) -> None:
    """Sign the audit records up to the stop, as a node does when it stops (and hourly): a
    store only ever recorded by this command otherwise had no digest, and `vstore audit
    verify` failed it. A key this process may not read is said, not fatal."""
    import logging
    import time

    from vstore.base.errors import VstoreError
    from vstore.evidence.audit_chain import write_digest

    try:
        write_digest(store, store.keys, time.time_ns())
    except VstoreError as exc:
        logging.getLogger(__name__).warning("audit records not signed at the stop: %s", exc)
