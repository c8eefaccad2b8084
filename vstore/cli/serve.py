"""Run this node: record every camera with a url in vstore.toml, serve the HTTP API (and a Unix
socket in the store for local clients) until SIGTERM or Ctrl-C. SIGHUP re-reads vstore.toml:
cameras added, changed or removed start, restart or stop without touching the others.
Clients authenticate with tokens from `vstore token create`."""

from __future__ import annotations

import argparse
import sys

from vstore.cli.common import add_common_args, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default="127.0.0.1:8480",
        metavar="HOST:PORT",
        help="address of the HTTP API (default 127.0.0.1:8480; port 0 picks a free one)",
    )
    p.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="serve plain HTTP beyond loopback (only behind a TLS-terminating proxy)",
    )
    add_common_args(p)


def run(args: argparse.Namespace) -> int:
    from vstore.service.node import Node
    from vstore.service.server import serve

    def ready(url: str, node: Node) -> None:
        cams = node.recorded()  # (started: a source connects a moment later)
        procs = node.recorders.processes
        if args.json:
            print_json({"url": url, "store": str(node.store.root), "recording": cams,
                        "recorder_processes": procs})  # fmt: skip
        else:
            print(f"serving {node.store.root} on {url} (Ctrl-C stops)")
            over = f" over {procs} recorder processes" if procs else ""
            print(f"  recording {len(cams)} camera(s){over}"
                  + (f": {', '.join(cams)}" if cams else ""))  # fmt: skip
            print(f"  API: {url}/api/v1/cameras  OpenAPI: {url}/openapi.json")
        sys.stdout.flush()

    import logging

    # The node's own account of what it does (cameras started and stopped, reloads, jobs
    # that fail) goes to stderr: a service's log.
    vlog = logging.getLogger("vstore")
    if vlog.getEffectiveLevel() > logging.INFO:
        vlog.setLevel(logging.INFO)
    serve(args.store, args.listen, args.allow_plain_http, ready)
    if not args.json:
        print("stopped: every camera's footage sealed")
    return 0
