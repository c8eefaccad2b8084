"""Child process for the kill -9 tests: records synthetic GOPs and acknowledges durable chunks.

Usage: python -m tests.crash_writer STORE CAMERA GOPS
Prints "ack START_NS" once the chunk starting at START_NS is durable: the writer's
``durable_end_ns`` has passed its end (its fsync, behind the writer, has returned and its rows
are indexed or rebuilt by recovery), as a host that acknowledges upstream would decide.
"""

from __future__ import annotations

import sys

from vstore import Packet, TrackInfo, open_store

SPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f\xaa"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
GOP = 10
FRAME = 9000  # 10 fps at 90 kHz: one GOP per second
START_NS = 1_737_075_600_000_000_000


def payload(frame: int, key: bool) -> bytes:
    nal = b"\x00\x00\x00\x01" + (b"\x65" if key else b"\x41")
    body = frame.to_bytes(8, "big") * 32  # 256 bytes that identify the frame
    return (SPS + PPS if key else b"") + nal + body


def main() -> int:
    store_dir, camera, gops = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(store_dir)
    num = store.index.camera_num(camera)
    start = START_NS
    first_frame = 0
    if num is not None:
        last = store.index.last_chunk(num)
        if last is not None:
            start = last.end_ns
            first_frame = (last.end_ns - START_NS) // 100_000_000
    video = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
    w = store.writer(camera, [video], start_ns=start)
    print(f"start {start}", flush=True)
    pending: list[int] = []  # starts of chunks not acknowledged yet (each 1 s long)
    for g in range(gops):
        for i in range(GOP):
            frame = first_frame + g * GOP + i
            ts = (g * GOP + i) * FRAME
            w.write(Packet(0, ts, ts, i == 0, payload(frame, i == 0)))
            if i == 0:
                pending.append(start + g * 1_000_000_000)
            durable = w.durable_end_ns
            while durable is not None and pending and pending[0] + 1_000_000_000 <= durable:
                print(f"ack {pending.pop(0)}", flush=True)
    w.close()
    store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
