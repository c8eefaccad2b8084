"""Child for test_clip_memory: streams a clip of HOURS hours as fMP4 (or MP4 staged on disk)
and prints its peak RSS in KiB. Usage: python -m tests.clip_memory_child STORE HOURS FORMAT"""

from __future__ import annotations

import resource
import sys

from vstore.api import open_store
from vstore.export.clip import clip_bytes

T0 = 1_737_075_600_000_000_000


def main() -> int:
    store_dir, hours, fmt = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    total = 0
    with open_store(store_dir, read_only=True) as st:
        for block in clip_bytes(st, "cam", T0, T0 + int(hours * 3600e9), format=fmt):
            total += len(block)
    print(total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
