"""One recorder process of bench_cores.py: its own store (a shard), its cameras' writers run
by its writer pool as `vstore record` runs them. It sets up (the store, every camera's first
GOP), says "ready", waits for "go" on stdin so that every process of a round starts at once,
records, and prints its figures as JSON: wall seconds and CPU seconds (every thread of the
process) of the recording, bytes recorded.

    python -m bench.recorder_child STORE_DIR CAMERAS PACKETS_PER_CAMERA PACKET_BYTES FSYNC_S
        [CAMERA_PREFIX LINK_FD STORE_UUID]

With a link, it is a recorder process of ``vstore serve`` (``[service] recorders``): the
store is the node's, whose process owns the index and answers on LINK_FD (store_link.py).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.bench_disk import T0, VIDEO, WARM_PACKETS, _Camera, run_on_pool
from bench.conftest import camera_packets
from vstore.api import open_store
from vstore.base import heap
from vstore.ingest import writer_pool
from vstore.store.camera_writer import open_writer
from vstore.store.config import load_config
from vstore.store.store_link import LinkedStore


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    d, cameras, per_camera, size, fsync_s = sys.argv[1:6]
    d_path = Path(d)
    packets = camera_packets(int(per_camera) + WARM_PACKETS, int(size))
    if len(sys.argv) > 6:
        prefix, link_fd, uuid = sys.argv[6:9]
        st: Any = LinkedStore(d_path, Connection(int(link_fd)), load_config(d_path / "vstore.toml"),
                              uuid)  # fmt: skip
    else:
        prefix = "cam"
        d_path.mkdir(parents=True)
        (d_path / "vstore.toml").write_text(f"[store]\nfsync_interval_s = {fsync_s}\n")
        st = open_store(d_path)
        # Its recording key made before the clock (a node has it from its start: it refuses
        # to start without it), not at the first seal of the timed run.
        st.recording_signer()
    writers = [open_writer(st, f"{prefix}{c}", [VIDEO], start_ns=T0) for c in range(int(cameras))]
    for w in writers:
        for i in range(WARM_PACKETS):
            w.write_raw(0, i * 3600, i * 3600, False, packets[i])
        w.flush()
    jobs = [_Camera(w, packets) for w in writers]
    writer_pool.shared()  # (its threads started before the clock)
    # As every recorder process of `vstore serve` (and `vstore record`) does once started:
    # the collector keeps off the packet path.
    heap.settle_for_recording()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    t0, c0 = time.perf_counter(), _cpu_s()
    run_on_pool(jobs)
    st.close()
    secs, cpu = time.perf_counter() - t0, _cpu_s() - c0
    timed = sum(map(len, packets[WARM_PACKETS:])) * len(writers)
    print(json.dumps({"seconds": secs, "cpu_s": cpu, "bytes": timed}), flush=True)


if __name__ == "__main__":
    main()
