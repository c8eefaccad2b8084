"""`vstore` dispatcher: the subcommand registry, logging setup, and error -> exit code mapping.

Subcommand modules are imported lazily so that start-up stays fast (no PyAV or RocksDB import
for `--help`).

Exit codes: 0 success; 1 error; 2 bad usage or configuration; 3 not found (camera, footage);
4 store locked by another process; 5 corrupt data; 6 source unreadable; 7 disk full;
8 `check` found problems; 9 object store failed; 10 evidence does not verify; 11 the
cluster's etcd unreachable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import NoReturn

COMMANDS = {
    "init": ("vstore.cli.init", "create a store and write a commented vstore.toml"),
    "record": ("vstore.cli.record", "record live sources (RTSP, tcp://, udp://, files)"),
    "import": ("vstore.cli.importcmd", "import an existing recording at a wall-clock start"),
    "ls": ("vstore.cli.ls", "list cameras with first/last time, size, segments, gaps"),
    "timeline": ("vstore.cli.timeline", "covered ranges, gaps and discontinuities of a camera"),
    "clip": ("vstore.cli.clip", "export a frame-exact clip of a time range (mp4, fmp4, ts)"),
    "snapshot": ("vstore.cli.snapshot", "write the frame at an instant as JPEG/PNG"),
    "hold": ("vstore.cli.hold", "legal holds: add, list, release"),
    "retention": ("vstore.cli.retention", "delete footage by age, size and disk watermark"),
    "tier": ("vstore.cli.tier", "move old segments to object storage (S3 or a directory)"),
    "rebuild-index": ("vstore.cli.rebuild_index", "index tiered footage from an object store"),
    "audit": ("vstore.cli.audit", "the permanent log of holds, deletions and tiering"),
    "config": ("vstore.cli.config", "show the settings in force, and where each comes from"),
    "check": ("vstore.cli.check", "verify the store's invariants (and --repair)"),
    "serve": ("vstore.cli.serve", "run this node: record, serve the HTTP API and jobs"),
    "token": ("vstore.cli.token", "API tokens for `vstore serve`: create, list, revoke"),
    "export": ("vstore.cli.export", "a signed evidence package of clips (directory or ZIP)"),
    "verify": ("vstore.cli.verify", "check an evidence package offline (signature, hashes)"),
    "key": ("vstore.cli.key", "the node's signing keys: list, rotate"),
    "cluster": ("vstore.cli.cluster", "a cluster's members, leases and camera owners"),
    "node": (
        "vstore.cli.node",
        "drain a cluster member (hand over its cameras, then stop), or forget one gone for good",
    ),
}
# Short read-only commands skip logging set-up unless -v is given (its import is a good part
# of a fresh process's start-up); their rare warnings still reach stderr, unformatted.
QUICK_COMMANDS = {"clip", "snapshot", "ls", "timeline", "audit"}


def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size`` answers (COLUMNS, then the terminal, then 80),
    without importing shutil: argparse imports it for every parser it builds, and with it
    bz2, lzma and fnmatch, about 4 ms of a short command's start-up."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose help formatter is given its width (subcommand parsers are of the
    same class: argparse makes them with ``type(parent)``)."""

    # What the last usage error said (argparse prints it and exits; under --json, main
    # prints it as the JSON error document too).
    usage_error = ""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)  # type: ignore[call-arg]

    def error(self, message: str) -> NoReturn:
        _Parser.usage_error = f"{self.prog}: {message}"
        super().error(message)


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """The parser with every subcommand, or with just ``only`` (what a run needs: building
    all of them imports every command module, a good part of a short command's start-up)."""
    from vstore._version import __version__

    parser = _Parser(
        prog="vstore",
        description="vstore: storage engine for video surveillance footage.",
        epilog="Times: ISO 8601 with offset (2025-01-17T08:00:00+07:00, ...Z), 'now', or -15m.",
    )
    parser.add_argument("--version", action="version", version=f"vstore {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name, (modname, helptext) in COMMANDS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(modname)
        # Module docstrings are the commands' descriptions; their RST ``code`` reads as `code`.
        doc = (mod.__doc__ or "").replace("``", "`")
        p = sub.add_parser(name, help=helptext, description=doc)
        mod.add_arguments(p)
        modules[name] = mod
    return parser, modules


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in argv (after the global -v flags), if it is a known one."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if arg not in ("-v", "-vv", "--verbose"):
            return None
    return None


# Options that take a time: a relative one (-15m) would look like an option to argparse.
TIME_OPTIONS = ("--from", "--to", "--at", "--start", "--since", "--until")


def _join_relative_times(argv: list[str]) -> list[str]:
    """``--from -15m`` as ``--from=-15m``: argparse refuses a value that starts with a dash
    and is not a number, and relative times are how people type them."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in TIME_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and nxt[1].isdigit():
            out.append(f"{arg}={nxt}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_relative_times(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2 and "--json" in argv:  # (a script parses every outcome the same way)
            from vstore.cli.common import print_json

            message = _Parser.usage_error or "usage error"
            print_json({"error": {"command": _command_in(argv), "message": message,
                                  "exit_code": 2}})  # fmt: skip
        raise
    if not args.command:
        parser.print_help()
        return 2
    # Relative times (-15m) in one command line count from one instant.
    args.now_ns = time.time_ns()
    if args.verbose or args.command not in QUICK_COMMANDS:
        from vstore.base.logger import configure

        level = 30 - 10 * min(args.verbose, 2)  # (logging.WARNING, INFO, DEBUG)
        configure(level, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vstore.base.errors import VstoreError
    from vstore.cli.common import json_printed
    from vstore.cli.exit_codes import exit_code

    json_printed(reset=True)
    try:
        return _run_as(modules[args.command], args, argv)
    except VstoreError as exc:
        print(f"vstore {args.command}: error: {exc}", file=sys.stderr)
        _json_error(args, str(exc), exit_code(exc))
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        print(f"vstore {args.command}: interrupted", file=sys.stderr)
        _json_error(args, "interrupted", exit_code(exc))
        return exit_code(exc)
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # The last resort for an OS error no layer below translated, such as writing the
        # output itself (a full disk under a redirect): one line, the traceback with -v.
        if args.verbose:
            raise
        try:
            print(f"vstore {args.command}: error: {exc}", file=sys.stderr)
            _json_error(args, str(exc), exit_code(exc))
        except OSError:
            pass
        return exit_code(exc)


def _run_as(module: object, args: argparse.Namespace, argv: list[str]) -> int:
    """Run the command, with its audit records naming this command line (not the process
    that embeds main(), such as a test runner)."""
    from vstore.base import actor

    me = actor.current()
    with actor.acting_as({**me, "command": ["vstore", *argv]}):
        return int(module.run(args) or 0)  # type: ignore[attr-defined]


def _json_error(args: argparse.Namespace, message: str, code: int) -> None:
    """Under --json a failed command still prints one JSON document on stdout (unless it
    printed its own, with its partial results), so a script parses every outcome the same
    way: ``{"error": {"command", "message", "exit_code"}}``."""
    from vstore.cli import common

    if getattr(args, "json", False) and not common.json_printed():
        common.print_json(
            {"error": {"command": args.command, "message": message, "exit_code": code}}
        )


def entry() -> None:
    """The `vstore` console script: ``main()``, then a quick exit after a short read-only command.

    Interpreter teardown (module finalization, GC of every imported module) is about a tenth
    of a fresh `vstore clip`'s time. A quick command has closed its store and files by the
    time ``main()`` returns and starts no threads that outlive it, so after flushing stdout
    and stderr there is nothing left for teardown to do; every other command exits normally.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if _command_in(argv) in QUICK_COMMANDS and "logging" not in sys.modules:
        import os

        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None: started with that descriptor closed
                    stream.flush()
        except BrokenPipeError:
            pass  # the reader went away (`| head`): as main() treats it
        except OSError as exc:  # output lost (a full disk under a redirect): say so
            try:
                os.write(2, f"vstore: cannot write output: {exc}\n".encode())
            except OSError:
                pass
            from vstore.cli.exit_codes import exit_code

            code = code or exit_code(exc)
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
