"""Issue 4 workload: plan retention for a month of 100 cameras (1-minute segments,
4.32 M segments) with holds, age, byte budgets and a watermark."""

from __future__ import annotations

import numpy as np
import pytest

from vstore.lifecycle.retention_plan import SegmentTable, plan_retention
from vstore.store.config import RetentionPolicy
from vstore.store.disk import DiskUsage
from vstore.store.holds import Hold

MIN = 60 * 10**9
DAY = 1440 * MIN


@pytest.fixture(scope="module")
def month(request):
    """A columnar catalog (what vstore.lifecycle.catalog.catalog returns) of 1-minute segments."""
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    cams, minutes = (10, 1440) if smoke else (100, 30 * 1440)
    cam = np.repeat(np.arange(cams), minutes)
    i = np.tile(np.arange(minutes, dtype=np.int64), cams)
    table = SegmentTable(
        [f"cam{c:03d}" for c in range(cams)],
        cam,
        cam + 1,
        cam.astype(np.int64) * 10**6 + i,
        i * MIN,
        (i + 1) * MIN,
        np.full(len(i), 30_000_000),
        np.ones(len(i), dtype=bool),
    )
    holds = [
        Hold(
            k,
            f"cam{k:03d}",
            (k + 1) * DAY // 3,
            (k + 1) * DAY // 3 + 600 * 10**9,
            "case",
            "bench",
            0,
        )
        for k in range(0, cams, 7)
    ]
    return table, holds, minutes


def test_retention_plan_month_100_cameras(benchmark, month):
    """Plan: 20-day age, 500 GB per camera, and a watermark short by 4 % of the footage
    (5 TB of the full month's 130 TB; a target no deletion could meet deletes nothing)."""
    segs, holds, minutes = month
    pol = RetentionPolicy(20 * DAY, 500 * 10**9)
    now = minutes * MIN
    need = int(segs.size_bytes.sum()) // 25
    plan = benchmark.pedantic(
        plan_retention,
        args=(segs, holds, lambda c: pol, now),
        kwargs={"disk": DiskUsage(10**14, 5 * 10**12), "min_free_bytes": 5 * 10**12 + need},
        rounds=3,
        iterations=1,
    )
    assert plan.deletions and not any(
        h.covers(d.segment.camera, d.segment.start_ns, d.segment.end_ns)
        for d in plan.deletions
        for h in holds[:1]
    )
    benchmark.extra_info["segments"] = len(segs)
