"""Recording over cores: the same cameras and bytes recorded by one recorder process, and
split over two (each with its own store, a shard, as one recorder process per core runs),
started at the same instant. Into the page cache (20 KB packets, 8 cameras): what the
interpreter lock holds a process to, and whether a second process on the second core lifts
it, at the same CPU per byte. To disk (8 and 32 cameras, every GOP fsynced): whether two
processes together still keep up with a plain sequential write of the same bytes. The
"linked" variants are what `vstore serve` runs with ``[service] recorders = 2``: two
recorder processes writing one store whose index the node's process owns and writes for
them (store_link.py; its CPU is counted with theirs), each kept to a core of its own as
serve keeps them (``pin_recorders``, cpus.pin_plan). The "core" variants pin each process
of its own store to a core (one process on one core, two on two): what a core adds, where
the unpinned process already spreads its hashing and writes over both cores. Rounds
of every variant interleave (this VM's disk drifts between rounds); each figure is the
median of its rounds. Nothing else runs meanwhile: no camera senders compete for the cores."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from bench.bench_disk import SIZE, _plain_write
from bench.conftest import tmpfs_root
from vstore.api import open_store
from vstore.base import cpus
from vstore.store.store_link import serve_link

ROOT = Path(__file__).resolve().parent.parent
PACKETS = 24000  # 20 KB each: ~480 MB a round, whatever the split
ROUNDS = 5
SMOKE_PACKETS = 2400
# variant: (where, cameras, processes, linked to one node's store, each process on a core)
VARIANTS = {
    "cache-8cams-1proc": ("cache", 8, 1, False, False),
    "cache-8cams-2procs": ("cache", 8, 2, False, False),
    "cache-8cams-2linked": ("cache", 8, 2, True, True),
    "cache-8cams-1core": ("cache", 8, 1, False, True),
    "cache-8cams-2cores": ("cache", 8, 2, False, True),
    "disk-8cams-1proc": ("disk", 8, 1, False, False),
    "disk-8cams-2procs": ("disk", 8, 2, False, False),
    "disk-8cams-2linked": ("disk", 8, 2, True, True),
    "disk-32cams-1proc": ("disk", 32, 1, False, False),
    "disk-32cams-2procs": ("disk", 32, 2, False, False),
    "disk-32cams-2linked": ("disk", 32, 2, True, True),
}


def _round(
    base: Path,
    cameras: int,
    procs: int,
    packets: int,
    fsync_s: float,
    linked: bool = False,
    pinned: bool = False,
) -> dict:
    """One round: ``procs`` recorder processes, the cameras split evenly, released at once
    (``linked``: into one store, its index owned by this process; ``pinned``: process k on
    core k alone). Wall seconds (the slowest process), CPU seconds (all), bytes (all)."""
    per_camera = packets // cameras
    children = []
    # (as serve pins its recorder processes; one process on a core of the first)
    pins = (cpus.pin_plan(procs) or cpus.one_per_core()[:1] * procs) if pinned else []
    node: Any = None
    links = []
    if linked:
        base.mkdir(parents=True)
        (base / "vstore.toml").write_text(f"[store]\nfsync_interval_s = {fsync_s}\n")
        node = open_store(base)
        node.recording_signer()  # (its key made before the clock, as a node's at its start)
    c0 = _cpu_s()
    for k in range(procs):
        cmd = [sys.executable, "-m", "bench.recorder_child", str(base / f"shard{k}"),
               str(cameras // procs), str(per_camera), str(SIZE), str(fsync_s)]  # fmt: skip
        fds: tuple[int, ...] = ()
        if linked:
            here, there = socket.socketpair()
            links.append(serve_link(node, Connection(here.detach()), f"bench-{k}"))
            cmd[3] = str(base)
            cmd += [f"p{k}-cam", str(there.fileno()), node.uuid]
            fds = (there.fileno(),)
        if pins:  # (every thread of the process, its writer pool's too)
            cmd = ["taskset", "-c", str(pins[k]), *cmd]
        children.append(subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, pass_fds=fds,
                                         stdout=subprocess.PIPE, text=True))  # fmt: skip
        if linked:
            there.close()
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        c0 = _cpu_s()
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        out = [json.loads(c.communicate(timeout=600)[0]) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
        for t in links:
            t.join(60)
        if node is not None:
            node.close()
    assert all(c.returncode == 0 for c in children)
    node_cpu_s = _cpu_s() - c0 if linked else 0.0
    return {
        "seconds": max(o["seconds"] for o in out),
        "cpu_s": sum(o["cpu_s"] for o in out) + node_cpu_s,
        "bytes": sum(o["bytes"] for o in out),
    }


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@pytest.fixture(scope="module")
def core_rounds(request, tmp_path_factory) -> dict[str, dict]:
    cfg = request.config
    smoke = cfg.getoption("benchmark_disable") and not cfg.getoption("benchmark_enable")
    packets = SMOKE_PACKETS if smoke else PACKETS
    disk = tmp_path_factory.mktemp("cores")
    shm = tmpfs_root()
    cache = Path(__import__("tempfile").mkdtemp(prefix="vstore-cores-", dir=shm)) if shm else disk
    out: dict[str, dict] = {v: {"rounds": []} for v in VARIANTS}
    out["plain"] = {"rounds": []}
    try:
        for r in range(1 if smoke else ROUNDS):
            total = packets * SIZE
            dd = disk / f"dd-{r}"
            out["plain"]["rounds"].append({"seconds": _plain_write(dd, total, "dropped"),
                                           "bytes": total, "cpu_s": 0.0})  # fmt: skip
            dd.unlink()
            for variant, (where, cams, procs, linked, pinned) in VARIANTS.items():
                base = (cache if where == "cache" else disk) / f"{variant}-{r}"
                # (into the page cache, a GOP fsync costs nothing: the default durability)
                got = _round(base, cams, procs, packets, 0, linked, pinned)
                out[variant]["rounds"].append(got)
                shutil.rmtree(base)
    finally:
        if shm:
            shutil.rmtree(cache, ignore_errors=True)
    for v in out.values():
        rs = v["rounds"]
        v["mb_per_s"] = statistics.median(x["bytes"] / x["seconds"] / 1e6 for x in rs)
        v["cpu_s_per_gb"] = statistics.median(x["cpu_s"] / (x["bytes"] / 1e9) for x in rs)
        v["range_mb_per_s"] = [min(x["bytes"] / x["seconds"] / 1e6 for x in rs),
                               max(x["bytes"] / x["seconds"] / 1e6 for x in rs)]  # fmt: skip
    out["cpus"] = {"count": os.cpu_count()}
    return out


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("variant", [*VARIANTS, "plain"])
def test_recording_over_cores(benchmark, core_rounds, variant):
    """Each variant's median MB/s, CPU seconds per GB and range over its rounds (timed in
    core_rounds, interleaved)."""
    r = benchmark.pedantic(lambda: core_rounds[variant], rounds=1, iterations=1)
    benchmark.extra_info.update(
        mb_per_s=r["mb_per_s"], cpu_s_per_gb=r["cpu_s_per_gb"], range_mb_per_s=r["range_mb_per_s"],
        rounds=len(r["rounds"]), cpus=core_rounds["cpus"]["count"],
    )  # fmt: skip
    assert r["mb_per_s"] > 0
