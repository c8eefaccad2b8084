"""One recorder process of bench_cores.py: its own store (a shard), its cameras' writers run
by its writer pool as `vstore record` runs them. It sets up (the store, every camera's first
GOP), says "ready", waits for "go" on stdin so that every process of a round starts at once,
records, and prints its figures as JSON: wall seconds and CPU seconds (every thread of the
process) of the recording, bytes recorded.

    python -m bench.recorder_child STORE_DIR CAMERAS PACKETS_PER_CAMERA PACKET_BYTES FSYNC_S
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from bench.bench_disk import T0, VIDEO, WARM_PACKETS, _Camera, run_on_pool
from bench.conftest import camera_packets
from vstore.api import open_store
from vstore.ingest import writer_pool


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    d, cameras, per_camera, size, fsync_s = sys.argv[1:6]
    d_path = Path(d)
    d_path.mkdir(parents=True)
    (d_path / "vstore.toml").write_text(f"[store]\nfsync_interval_s = {fsync_s}\n")
    packets = camera_packets(int(per_camera) + WARM_PACKETS, int(size))
    st = open_store(d_path)
    writers = [st.writer(f"cam{c}", [VIDEO], start_ns=T0) for c in range(int(cameras))]
    for w in writers:
        for i in range(WARM_PACKETS):
            w.write_raw(0, i * 3600, i * 3600, False, packets[i])
        w.flush()
    jobs = [_Camera(w, packets) for w in writers]
    writer_pool.shared()  # (its threads started before the clock)
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
