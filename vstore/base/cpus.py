"""The CPUs this process may run on, and pinning a process to one of them: how many cores a
node has for its recorder processes, and which core each recorder process keeps to
(docs/design/service.md, M1)."""

from __future__ import annotations

import os
from pathlib import Path

_TOPOLOGY = Path("/sys/devices/system/cpu")


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity, as taskset or a container's
    cpuset leaves it), not only the machine's."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not on every platform)
        return list(range(os.cpu_count() or 1))


def one_per_core() -> list[int]:
    """Of the usable CPUs, one logical CPU per physical core, the first of each: two
    hyperthreads of one core share its execution units, so processes pinned apart must not
    land on siblings. Without topology information, every CPU counts."""
    seen: set[str] = set()
    out: list[int] = []
    for cpu in usable_cpus():
        try:
            core = (_TOPOLOGY / f"cpu{cpu}" / "topology" / "core_cpus_list").read_text().strip()
        except OSError:
            core = str(cpu)
        if core not in seen:
            seen.add(core)
            out.append(cpu)
    return out


def pin_plan(count: int) -> list[int]:
    """The CPU each of ``count`` recorder processes keeps to: one per physical core of
    those this process may run on, when there are as many; else none (the scheduler places
    them). One process needs no pin: the node's own work runs beside it."""
    per_core = one_per_core()
    if count < 2 or count > len(per_core):
        return []
    return per_core[:count]


def pin_process(cpu: int) -> None:
    """Keep every thread of this process, and those it starts later, to ``cpu``. (The
    affinity of a thread is its own: each running thread is set, and new threads take
    their creator's.)"""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # (a thread that ended meanwhile)
            pass
