"""The HTTP status and error code of every engine error, mapped in one place (the HTTP face's
twin of the CLI's exit codes)."""

from __future__ import annotations

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
    StoreReadOnly,
    TierError,
    UsageError,
    VstoreError,
)

# Checked in order, so a subclass must come before its base.
_STATUSES: tuple[tuple[type[BaseException], int, str], ...] = (
    (UsageError, 400, "bad_request"),
    (ConfigError, 400, "bad_config"),
    (NotFound, 404, "not_found"),
    (StoreLocked, 409, "store_locked"),
    (StoreReadOnly, 409, "store_read_only"),
    (CorruptSegment, 500, "corrupt_footage"),
    (CorruptStore, 500, "corrupt_store"),
    (SourceError, 502, "source_error"),
    (StorageFull, 507, "storage_full"),
    (CheckFailed, 500, "check_failed"),
    (TierError, 502, "tier_error"),
    (ClusterError, 503, "cluster_unavailable"),
    (Cancelled, 409, "cancelled"),
)


def http_status(exc: BaseException) -> tuple[int, str]:
    """(status, error code) for an engine error; anything unmapped is a 500."""
    for cls, status, code in _STATUSES:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal"


def error_for_code(code: str) -> type[VstoreError]:
    """The engine error a JSON error's code stands for (a client rebuilding it)."""
    for cls, _status, c in _STATUSES:
        if c == code and issubclass(cls, VstoreError):
            return cls
    return VstoreError
