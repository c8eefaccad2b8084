"""Shared CLI plumbing: store/output options, time formatting, JSON output, progress bars."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import tzinfo
from typing import Any

from vstore.base.errors import UsageError

BUCKET_SCHEME = "s3://"
DIRECTORY_TIER_SCHEME = "file://"  # (a directory tier is read as a bucket is)


@contextmanager
def reading(
    store_arg: str | None,
    cameras: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Iterator[Any]:
    """The store a read command reads: a store directory, read-only; or ``s3://BUCKET/PREFIX``:
    the tiered footage of a bucket, from its shared catalog alone (only the catalog hours of
    ``cameras`` that may hold [start_ns, end_ns) are read), and with $VSTORE_TOKEN, the
    footage of that range not tiered yet, from the APIs of the bucket's nodes that
    $VSTORE_NODES names ($VSTORE_PURPOSE: why, for their audit); what could not be had is
    said on stderr."""
    if store_arg and store_arg.startswith(DIRECTORY_TIER_SCHEME):
        from vstore.store.store import resolve_store_path

        path = resolve_store_path(store_arg)
        if (path / "index").exists():  # (a store directory, written as a URL)
            store_arg = str(path)
    if store_arg and store_arg.startswith((BUCKET_SCHEME, DIRECTORY_TIER_SCHEME)):
        import os

        from vstore.lifecycle.hot_footage import from_nodes
        from vstore.lifecycle.shared_catalog import open_bucket

        notes: list[str] = []
        token = os.environ.get("VSTORE_TOKEN", "").strip() or None
        nodes = [n for n in os.environ.get("VSTORE_NODES", "").split(",") if n.strip()]
        purpose = os.environ.get("VSTORE_PURPOSE", "").strip()
        more = from_nodes(cameras, start_ns, end_ns, token, notes, nodes, purpose)
        try:
            with open_bucket(store_arg, cameras, start_ns, end_ns, more) as st:
                yield st
        finally:
            for note in notes:
                print(f"vstore: note: {note}", file=sys.stderr)
    else:
        from vstore.store.store import open_read_only

        with open_read_only(store_arg) as st:
            yield st


def add_common_args(p: argparse.ArgumentParser, *, tz: bool = False, bucket: bool = False) -> None:
    """The options every command takes: --store and --json, and --tz where it prints times
    (``bucket``: a read command, whose --store may also be a bucket)."""
    also = (
        "; or s3://BUCKET/PREFIX (or file:///DIR, a directory tier): a bucket's tiered "
        "footage, from its shared catalog (and with $VSTORE_TOKEN and $VSTORE_NODES, what "
        "those nodes have not tiered yet)"
    )
    p.add_argument(
        "--store",
        metavar="DIR",
        help="store directory (default: $VSTORE_STORE, else ./vstore-data)"
        + (also if bucket else ""),
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    if tz:
        p.add_argument(
            "--tz",
            default="UTC",
            metavar="ZONE",
            help="zone for printed times: UTC (default), local, or an IANA name like Asia/Bangkok",
        )


def add_range_args(
    p: argparse.ArgumentParser,
    *,
    camera: str,
    start: str,
    end: str,
    camera_required: bool = True,
    range_required: bool = True,
) -> None:
    """--camera and the [--from, --to) range a command reads or acts on, with its help texts
    (--from and --to land in ``args.start`` and ``args.end``)."""
    p.add_argument("--camera", required=camera_required, help=camera)
    p.add_argument("--from", dest="start", required=range_required, metavar="T", help=start)
    p.add_argument("--to", dest="end", required=range_required, metavar="T", help=end)


def resolve_tz(name: str) -> tzinfo:
    from datetime import UTC, datetime

    if name.upper() == "UTC":
        return UTC
    if name.lower() == "local":
        tz = datetime.now().astimezone().tzinfo
        assert tz is not None
        return tz
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"unknown time zone {name!r}") from exc
    except Exception as exc:
        raise UsageError(f"unknown time zone {name!r}") from exc


def fmt_time(t_ns: int | None, tz: tzinfo) -> str:
    from vstore.base.timebase import format_time

    return "-" if t_ns is None else format_time(t_ns, tz)


def refuse_overwrite(path: str, overwrite: bool) -> None:
    """An existing output file is replaced only when asked (-y/--overwrite), as FFmpeg does:
    a clip written over the wrong file could destroy an earlier export."""
    import os

    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory: give a file name")
    if not overwrite and os.path.lexists(path):
        raise UsageError(f"{path} exists: give -y (--overwrite) to replace it")


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


_json_printed = False


def print_json(doc: Any) -> None:
    global _json_printed
    _json_printed = True
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def json_printed(reset: bool = False) -> bool:
    """Whether this command printed a JSON document (the dispatcher then adds no error one);
    ``reset`` starts a new command (``main()`` may run several in one process)."""
    global _json_printed
    printed = _json_printed
    if reset:
        _json_printed = False
    return printed


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "\n".join(out)


class Progress:
    """The callback a long job reports to: ``progress(done, total)`` moves the bar, when
    there is one (``total`` None keeps the bar's total). The bar only moves forward and
    stays within its total: a job's report can step back (an import's audio starts before
    its first frame; its packets come a little out of order)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, done: float, total: float | None = None) -> None:
        if self.bar is None:
            return
        if total is not None:
            self.bar.total = total
        top = self.bar.total
        done = max(self.bar.n, done, 0)
        if top is not None:
            done = min(done, top)
        if isinstance(done, float):
            done = round(done, 1)  # (tqdm shows the number as given: 119.55199999999999)
        self.bar.n = done
        self.bar.refresh()


@contextmanager
def progress_bar(
    total: float | None, desc: str, enabled: bool, unit: str = ""
) -> Iterator[Progress]:
    """A tqdm bar on stderr when it is a terminal and output is for a person (else a
    callback that does nothing), as the `Progress` callback to hand the job."""
    if not enabled or not sys.stderr.isatty():
        yield Progress(None)
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
    try:
        yield Progress(bar)
    finally:
        bar.close()
