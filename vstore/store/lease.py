"""Read leases: a reader's claim on footage that no deletion may remove while it reads.

A lease is a file in ``STORE/leases/`` naming segment ids and (camera, start, end) ranges.
Its holder keeps the file open with an exclusive ``flock`` for as long as it reads; the
lease is live exactly while that lock is held. Liveness therefore needs no process id: a
reader in another PID namespace (a container) or, on a shared file system that carries
locks, on another host keeps its lease, and a reader that dies loses it with its file
descriptors, whatever its pid is reused for (lifecycle L1-L3).

The holder writes and locks a temporary file and only then renames it into place, so a
checker never sees a lease file that is not yet locked.
"""

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from vstore.base.actor import hostname


class LeaseSet(NamedTuple):
    """The live leases of a store at one moment."""

    segment_ids: frozenset[int] = frozenset()
    ranges: tuple[tuple[str, int, int], ...] = ()  # (camera, start_ns, end_ns)

    def covers(self, camera: str, start_ns: int, end_ns: int, segment_id: int) -> bool:
        """Whether a segment (its id, camera and span) is being read."""
        if segment_id in self.segment_ids:
            return True
        return any(c == camera and s < end_ns and e > start_ns for c, s, e in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.segment_ids or self.ranges)


@contextmanager
def hold_lease(
    path: Path,
    segment_ids: Iterable[int] = (),
    ranges: Iterable[tuple[str, int, int]] = (),
) -> Iterator[None]:
    """Hold a lease (at ``path``, a name of the layout's) on segments and camera ranges for
    the life of the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    doc = {
        "host": hostname(),
        "pid": os.getpid(),  # for people reading the file; liveness is the lock
        "segments": sorted({int(s) for s in segment_ids}),
        "ranges": [[str(c), int(s), int(e)] for c, s, e in ranges],
    }
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(doc).encode())
        os.replace(tmp, path)
        try:
            yield
        finally:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)  # the lock goes with the last descriptor
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def live_leases(leases_dir: Path) -> LeaseSet:
    """Every live lease in the directory; the files of dead holders are removed."""
    try:
        names = os.listdir(leases_dir)
    except FileNotFoundError:
        return LeaseSet()
    seg_ids: set[int] = set()
    ranges: list[tuple[str, int, int]] = []
    for name in names:
        if not name.endswith(".json"):
            continue
        p = leases_dir / name
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: live
            else:
                try:
                    p.unlink()  # nobody holds it: its reader is gone
                except OSError:
                    pass
                continue
            raw = os.pread(fd, 1 << 20, 0)
        finally:
            os.close(fd)
        try:
            doc = json.loads(raw)
            seg_ids.update(int(x) for x in doc.get("segments", []))
            ranges.extend((str(c), int(s), int(e)) for c, s, e in doc.get("ranges", []))
        except (ValueError, TypeError):
            # A live lease we cannot read: it may cover anything, so it covers everything.
            ranges.append(("*", -(2**63), 2**63 - 1))
    if any(c == "*" for c, _s, _e in ranges):
        return _EVERYTHING
    return LeaseSet(frozenset(seg_ids), tuple(ranges))


class _Everything(LeaseSet):
    def covers(self, camera: str, start_ns: int, end_ns: int, segment_id: int) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


_EVERYTHING = _Everything()
