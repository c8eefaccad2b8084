"""The store's segments, hot and tiered, as the planner's columnar table, and which
of them live leases cover."""

from __future__ import annotations

from collections.abc import Iterable

from vstore.lifecycle.retention_plan import SegmentInfo, SegmentTable
from vstore.store.lease import LeaseSet
from vstore.store.store import Store


def catalog(store: Store, cameras: Iterable[str] | None = None) -> SegmentTable:
    """Every segment of the store (or of some cameras), hot and tiered, as a columnar table."""
    wanted = set(cameras) if cameras is not None else None
    out = []
    for cam, num in store.index.cameras():
        if wanted is not None and cam not in wanted:
            continue
        out.extend(
            SegmentInfo(
                cam,
                num,
                r.segment_id,
                r.start_ns,
                r.end_ns,
                r.size_bytes,
                r.path,
                r.state,
                r.location,
            )
            for r in store.index.segments(num)
            if not r.foreign  # another store's objects are its own to keep or delete (D6)
        )
    return SegmentTable.from_infos(out)


def leased_ids(leases: LeaseSet, table: SegmentTable) -> frozenset[int]:
    """The catalog's segments that live leases cover (by id or by camera range)."""
    if not leases:
        return frozenset()
    return frozenset(
        int(table.segment_id[i])
        for i in range(len(table))
        if leases.covers(
            table.cameras[int(table.cam_idx[i])],
            int(table.start_ns[i]),
            int(table.end_ns[i]),
            int(table.segment_id[i]),
        )
    )
