"""The exception hierarchy of vstore: what went wrong, in terms of the engine.

The faces map these to what their users see: exit codes in ``vstore.cli.exit_codes`` and, in
the node service, HTTP statuses. Nothing here knows about either.
"""

from __future__ import annotations


class VstoreError(Exception):
    """Base class: every error vstore raises on purpose is one of these."""


class UsageError(VstoreError):
    """Bad arguments: a malformed time, duration, camera id or range."""


class ConfigError(VstoreError):
    """The store's vstore.toml is malformed or holds an invalid value."""


class NotFound(VstoreError):
    """A camera, segment or time range that the store does not hold."""


class StoreReadOnly(VstoreError):
    """The store may not be written by this process (read-only media, another user's)."""


class StoreLocked(VstoreError):
    """Another process holds the store open for writing."""


class LinkLost(VstoreError):
    """The node whose index a recorder process writes through is gone: it stops."""


class CorruptSegment(VstoreError):
    """Segment bytes fail their structure or checksum checks."""


class SegmentMissing(CorruptSegment):
    """An indexed segment whose file is gone from the disk: footage the index names and the
    disk lost (invariant I1 broken, `vstore check` reports it), shown as damage, never as a
    range that holds no footage."""


class FootageUnreachable(CorruptSegment):
    """Footage the index places on another machine (a node's API) that could not be read
    from there: shown as a gap, as chunks that fail their checks are."""


class CorruptStore(VstoreError):
    """A store file other than a segment (meta.json) is damaged."""


class SourceError(VstoreError):
    """An input (file, URL, packet) cannot be read or makes no sense as video."""


class StorageFull(VstoreError):
    """The disk is full (ENOSPC) or a quota was hit while writing."""


class CheckFailed(VstoreError):
    """`vstore check` found invariant violations."""


class VerificationFailed(VstoreError):
    """Evidence does not verify: a signature, a hash or a chain does not match."""


class Cancelled(VstoreError):
    """An operation was asked to stop, and stopped at a safe point."""


class TierError(VstoreError):
    """The object store failed: unreachable, refused credentials, missing bucket, or a
    verification mismatch after an upload."""


class ClusterError(VstoreError):
    """The cluster's coordination (etcd) is unreachable or refused a request, or this member
    has lost its lease: it must not act for the cluster until it has one again."""


class PreconditionFailed(TierError):
    """A conditional write refused: the object exists (create-if-absent) or has changed
    since it was read (If-Match): another writer came first."""


def error_class(name: str) -> type[VstoreError]:
    """The error class called ``name`` (as another process reported it), else VstoreError."""
    todo: list[type[VstoreError]] = [VstoreError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return VstoreError
