"""The exit code of every outcome of a `vstore` command, mapped from the engine's errors."""

from __future__ import annotations

import errno

from vstore.base.errors import (
    Cancelled,
    CheckFailed,
    ClusterError,
    ConfigError,
    CorruptSegment,
    CorruptStore,
    NotFound,
    SourceError,
    StorageFull,
    StoreLocked,
    TierError,
    UsageError,
    VerificationFailed,
)

OK = 0
FAILED = 1  # any other error
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

# Checked in order, so a subclass must come before its base.
_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, 2),
    (ConfigError, 2),
    (NotFound, 3),
    (StoreLocked, 4),
    (CorruptSegment, 5),
    (CorruptStore, 5),
    (SourceError, 6),
    (StorageFull, 7),
    (CheckFailed, 8),
    (TierError, 9),
    (ClusterError, 11),
    (VerificationFailed, 10),
    (Cancelled, INTERRUPTED),
)


def exit_code(exc: BaseException) -> int:
    """The code a command exits with when ``exc`` ends it."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return 7  # as StorageFull: the disk filled under something no layer translated
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return FAILED


def exit_code_of(cls: type[BaseException]) -> int:
    """The code for an error of class ``cls`` (a command that reports it without raising)."""
    for known, code in _CODES:
        if issubclass(cls, known):
            return code
    return FAILED
