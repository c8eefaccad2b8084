"""Crash recovery: kill -9 a recording process at random moments, restart, verify.

Invariants checked after every kill (docs/design/lifecycle.md): the store opens and recovers,
`vstore check` is clean, and every chunk the child acknowledged as durable is indexed and
reads back with its own bytes. Torn tails are truncated to the last whole chunk.
"""

from __future__ import annotations

import itertools
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.crash_writer import START_NS, payload
from vstore.api import open_store
from vstore.lifecycle.check import check_store

ROOT = Path(__file__).resolve().parents[1]


def run_and_kill(store_dir: Path, delay_s: float) -> list[int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    (store_dir).mkdir(parents=True, exist_ok=True)
    cfg = store_dir / "vstore.toml"
    if not cfg.exists():
        cfg.write_text("[store]\nsegment_duration_s = 3\n")
    buf = b""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(store_dir), "cam", "400"],
        stdout=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        t_start = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([fd], [], [], 0.002)
            if ready:
                buf += os.read(fd, 65536)
            if t_start is None and b"start " in buf:
                t_start = time.monotonic()
            if t_start is not None and time.monotonic() - t_start >= delay_s:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        buf += proc.stdout.read()
    acks: list[int] = []
    for line in buf.decode().splitlines():
        if line.startswith("ack "):
            acks.append(int(line.split()[1]))
    return acks


def verify(store_dir: Path, acked: list[int], full: bool = True) -> None:
    with open_store(store_dir) as st:  # opening for writing runs recovery
        rep = check_store(st, verify_hashes=full)
        assert rep.ok, rep.problems
        cam = st.camera_num("cam")
        starts = {c.start_ns: c for c in st.index.chunks(cam, START_NS, 2**62)}
        for t in acked:
            assert t in starts, f"acknowledged chunk at {t} lost"
            pk = list(st.read_packets("cam", t, t + 1))
            frame = (t - START_NS) // 100_000_000
            assert bytes(pk[0].data) == payload(frame, True)
        # Frames are contiguous: recovery never leaves a hole inside the recorded span.
        rows = sorted(starts.values(), key=lambda c: c.start_ns)
        for a, b in itertools.pairwise(rows):
            assert a.end_ns <= b.start_ns


def test_kill9_during_recording_loses_no_acknowledged_chunk(tmp_path):
    rng = random.Random(1234)
    store_dir = tmp_path / "store"
    all_acked: list[int] = []
    for _ in range(12):
        acks = run_and_kill(store_dir, rng.uniform(0.0, 0.6))
        all_acked.extend(acks)
        verify(store_dir, all_acked)
    assert len(all_acked) > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill9_soak(tmp_path):
    rng = random.Random()
    store_dir = tmp_path / "store"
    all_acked: list[int] = []
    for i in range(150):
        all_acked.extend(run_and_kill(store_dir, rng.uniform(0.0, 1.5)))
        # Chunk CRCs every cycle; whole-segment SHA-256 every 10th (the store keeps growing).
        verify(store_dir, all_acked, full=i % 10 == 9)


def test_torn_tail_is_truncated_to_last_whole_chunk(tmp_path):
    from tests.test_timestamps import VIDEO, au
    from vstore import Packet

    store_dir = tmp_path / "store"
    st = open_store(store_dir)
    w = st.writer("cam", [VIDEO], start_ns=START_NS)
    for i in range(60):
        key, data = au(i)
        w.write(Packet(0, i * 3600, i * 3600, key, data))
    w.flush()
    seg = next(st.index.segments(st.camera_num("cam")))
    path = st.layout.path(seg.path)
    # Simulate a crash: the process dies with a half-written chunk at the end of the file.
    w._seg.abandon()
    st._writers.clear()
    st.index.close()
    with open(path, "ab") as f:
        f.write(b"VCHK" + b"\x00" * 17)
    size_before = path.stat().st_size
    with open_store(store_dir) as st2:
        rep = st2.last_recovery
        assert rep.recovered_segments == 1 and rep.truncated_bytes == 21
        assert path.stat().st_size != size_before
        assert check_store(st2).ok
        pk = list(st2.read_packets("cam", START_NS, START_NS + 10**12))
        assert len(pk) == 60  # flush() made all 60 durable


def test_open_marker_without_file_is_cleaned(tmp_path):
    import json

    from vstore.base import layout
    from vstore.index.time_index import Batch

    store_dir = tmp_path / "store"
    with open_store(store_dir) as st:
        num = st.index.camera_num("cam", create=True)
        b = Batch()
        b.put(
            layout.open_key(99),
            json.dumps(
                {
                    "camera": "cam",
                    "path": "segments/cam/x.vseg",
                    "start_ns": START_NS,
                    "camera_num": num,
                }
            ).encode(),
        )
        st.index.commit(b)
    with open_store(store_dir) as st:
        assert st.last_recovery.discarded_segments == 1
        assert st.index.open_segments() == []
        assert check_store(st).ok
