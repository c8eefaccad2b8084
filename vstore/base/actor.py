"""Who is acting: the OS user, host and command behind each audit record.

A command line's actor is its own process's (user, host, argv); a job a serving process runs
for a client carries the client's actor, set around the job with ``acting_as`` (a service
will set its authenticated principal the same way)."""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


def hostname() -> str:
    """This host's name (what ``socket.gethostname`` gives on Linux, without loading the
    socket module into every command)."""
    return os.uname().nodename


_current: ContextVar[dict[str, Any] | None] = ContextVar("vstore_actor", default=None)


def _process_actor() -> dict[str, Any]:
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        user = str(os.geteuid())
    argv = list(sys.argv)
    if argv:
        argv[0] = os.path.basename(argv[0])
    return {"user": user, "uid": os.geteuid(), "host": hostname(), "command": argv}


def current() -> dict[str, Any]:
    """The actor of what runs now: the one set by ``acting_as``, else this process's."""
    return _current.get() or _process_actor()


@contextmanager
def acting_as(actor: dict[str, Any] | None) -> Iterator[None]:
    """Attribute what runs in the block to ``actor`` (None: this process's own)."""
    token = _current.set(dict(actor) if actor else None)
    try:
        yield
    finally:
        _current.reset(token)
