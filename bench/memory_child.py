"""Child for bench_memory: opens N camera writers, feeds each 1.5 GOPs of 1080p-sized
packets (so every writer holds an open chunk), and prints peak RSS before and after (KiB)."""

from __future__ import annotations

import sys
import tempfile

from bench.conftest import camera_packets
from vstore import TrackInfo
from vstore.api import open_store

T0 = 1_737_075_600_000_000_000


def rss_kib() -> int:
    """Current resident set size (not the peak: earlier phases must not mask the writers)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    cams = int(sys.argv[1])
    packets = camera_packets(75, 20_000)  # 4 Mbit/s at 25 fps, 2 s GOP: 1.5 GOPs
    video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
    with tempfile.TemporaryDirectory() as d, open_store(d) as st:
        before = rss_kib()
        writers = [st.writer(f"cam{i}", [video], start_ns=T0) for i in range(cams)]
        for i, data in enumerate(packets):
            for w in writers:
                # A distinct buffer per camera, as demuxed packets are.
                w.write_raw(0, i * 3600, i * 3600, False, data[:-1] + b"\x00")
        after = rss_kib()
        for w in writers:
            w.close()
    print(before, after, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
