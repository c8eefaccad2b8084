"""The exception hierarchy of vstore. Each error carries the CLI exit code that reports it."""

from __future__ import annotations


class VstoreError(Exception):
    """Base class: every error vstore raises on purpose is one of these."""

    exit_code = 1


class UsageError(VstoreError):
    """Bad arguments: a malformed time, duration, camera id or range."""

    exit_code = 2


class ConfigError(VstoreError):
    """The store's vstore.toml is malformed or holds an invalid value."""

    exit_code = 2


class NotFound(VstoreError):
    """A camera, segment or time range that the store does not hold."""

    exit_code = 3


class StoreReadOnly(VstoreError):
    """The store may not be written by this process (read-only media, another user's)."""


class StoreLocked(VstoreError):
    """Another process holds the store open for writing."""

    exit_code = 4


class CorruptSegment(VstoreError):
    """Segment bytes fail their structure or checksum checks."""

    exit_code = 5


class CorruptStore(VstoreError):
    """A store file other than a segment (meta.json) is damaged."""

    exit_code = 5


class SourceError(VstoreError):
    """An input (file, URL, packet) cannot be read or makes no sense as video."""

    exit_code = 6


class StorageFull(VstoreError):
    """The disk is full (ENOSPC) or a quota was hit while writing."""

    exit_code = 7


class CheckFailed(VstoreError):
    """`vstore check` found invariant violations."""

    exit_code = 8


class TierError(VstoreError):
    """The object store failed: unreachable, refused credentials, missing bucket, or a
    verification mismatch after an upload."""

    exit_code = 9
