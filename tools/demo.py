"""`make demo`: record simulated cameras over real sockets into a fresh store, then list it.

Three cameras (two H.264, one H.265 with AAC audio) stream MPEG-TS over loopback TCP from
tools.camsim; vstore records them concurrently for about 20 seconds, then prints `vstore ls`,
one camera's timeline, the `check` result, and where the data lies.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from tools.camsim import StreamSpec, TcpCamera


def _served(store_dir: Path) -> bool:
    """Whether a node is serving the store (its Unix socket answers)."""
    import socket

    sock = store_dir / "vstore.sock"
    if not sock.is_socket():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default="demo-data", help="store directory (recreated)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds to record")
    args = ap.parse_args(argv)

    from vstore.api import open_store
    from vstore.cli.main import main as vstore_main
    from vstore.ingest.recorder import record_many
    from vstore.lifecycle.check import check_store

    store_dir = Path(args.store)
    if _served(store_dir):
        print(f"a vstore serve is running on {store_dir}/: stop it first (Ctrl-C)", file=sys.stderr)
        return 1
    if store_dir.exists():
        shutil.rmtree(store_dir)
    store_dir.mkdir(parents=True)
    # Short segments so that the demo has several per camera to tier and to clip across.
    (store_dir / "vstore.toml").write_text("[store]\nsegment_duration_s = 5\n")
    specs = {
        "gate-1": StreamSpec(codec="h264", width=640, height=360, fps=25, gop_frames=50),
        "gate-2": StreamSpec(
            codec="h264", width=640, height=360, fps=25, gop_frames=50, start_index=1000
        ),
        "lobby": StreamSpec(
            codec="hevc", width=640, height=360, fps=25, gop_frames=50, audio="aac"
        ),
    }
    cams = [TcpCamera(spec) for spec in specs.values()]
    try:
        print(
            f"recording {len(cams)} simulated cameras for {args.duration:g}s into {store_dir}/ ...",
            flush=True,
        )
        for name, cam in zip(specs, cams, strict=True):
            print(
                f"  {name:<7} {cam.url}  ({specs[name].codec}"
                f"{' + ' + specs[name].audio if specs[name].audio else ''})"
            )
        t0 = time.monotonic()
        with open_store(store_dir) as store:
            statuses = record_many(
                store,
                [(n, c.url) for n, c in zip(specs, cams, strict=True)],
                duration_s=args.duration,
            )
            elapsed = time.monotonic() - t0
            rep = check_store(store)
    finally:
        for cam in cams:
            cam.close()
    for s in statuses:
        w = s.writer
        print(
            f"  {s.camera}: {w.get('packets', 0)} packets, {w.get('segments', 0)} segment(s)"
            + (f", error: {s.last_error}" if s.last_error else "")
        )
    print(
        f"recorded in {elapsed:.1f}s; check: "
        f"{'clean' if rep.ok else 'PROBLEMS'} ({rep.segments} segments, {rep.chunks} chunks)\n"
    )
    print("$ vstore ls --store", store_dir)
    vstore_main(["ls", "--store", str(store_dir)])
    print(f"\n$ vstore timeline --store {store_dir} --camera lobby")
    vstore_main(["timeline", "--store", str(store_dir), "--camera", "lobby"])
    # Tier the lobby camera's oldest footage to the embedded object store (a directory; the
    # same code talks to S3), then clip across cold and hot footage.
    from vstore.base.timebase import format_time
    from vstore.export.clip import write_clip
    from vstore.export.clip_plan import plan_clip
    from vstore.lifecycle.tiering import tier_segment
    from vstore.tier import LocalTier

    cold = LocalTier(store_dir / "object-store")
    with open_store(store_dir) as store:
        segs = list(store.index.segments(store.camera_num("lobby")))
        for row in segs[:2]:
            tier_segment(store, cold, row, "lobby")
        moved = sum(r.size_bytes for r in segs[:2])
    print(f"\ntiered 2 of lobby's {len(segs)} segments ({moved / 1024:.0f} KiB) to {cold.url}")

    with open_store(store_dir, read_only=True) as store:
        [lobby] = [c for c in store.cameras() if c.camera == "lobby"]
        assert lobby.first_ns is not None
        start = lobby.first_ns + 5_500_000_000
        end = start + 10_000_000_000
        out = store_dir / "clip-lobby.mp4"
        t_clip = time.perf_counter()
        res = write_clip(store, plan_clip(store, "lobby", start, end), out)
        clip_s = time.perf_counter() - t_clip
    print(
        f"\n$ vstore clip --camera lobby --from {format_time(start)} "
        f"--to {format_time(end)} -o {out}"
    )
    where = sorted({"cold" if p.segment.location != "local" else "hot" for p in res.plan.parts})
    print(
        f"clip: {out.resolve()} ({res.bytes_written / 1024:.0f} KiB, "
        f"{res.video_packets} video + {res.audio_packets} audio packets) "
        f"built in {clip_s * 1000:.0f} ms from {len(res.plan.parts)} segments "
        f"({' and '.join(where)}); it starts on the exact frame at "
        f"{format_time(res.plan.start_ns)}"
    )
    files = sorted(store_dir.glob("segments/*/*/*/*/*.vseg"))
    objects = sorted((store_dir / "object-store").rglob("*.vseg"))
    print(
        f"\ndata: {store_dir.resolve()}/segments/ ({len(files)} segment files), "
        f"object store: {store_dir.resolve()}/object-store/ ({len(objects)} objects), "
        f"index: {store_dir.resolve()}/index/"
    )
    if files:
        print(f"  e.g. {files[0]}")

    # The last lines: the one command that serves this store, and a token to ask it with.
    from vstore.service.tokens import create_audited, token_file

    with open_store(store_dir) as st:
        token, _rec = create_audited(
            st, token_file(store_dir), "demo", "investigator", ["*"], None, "demo"
        )
    # Every record above signed, as a node does each hour and when it stops: the log's
    # tampering would now show.
    print(f"\n$ vstore audit digest --store {store_dir} && vstore audit verify --store {store_dir}")
    vstore_main(["audit", "digest", "--store", str(store_dir)])
    verified = vstore_main(["audit", "verify", "--store", str(store_dir)]) == 0
    url = "http://127.0.0.1:8480/api/v1/cameras"
    clip_url = (
        f"{url}/lobby/clip.mp4?from={format_time(start).replace('+', '%2B')}"
        f"&to={format_time(end).replace('+', '%2B')}"
    )
    print("\nserve this store over HTTP (Ctrl-C stops), open http://127.0.0.1:8480/ in a browser")
    print("and sign in with the token below; or ask it from another shell:")
    print(f"  .venv/bin/vstore serve --store {store_dir}")
    print(f"  token: {token}")
    print(f"  curl -H 'Authorization: Bearer {token}' {url}")
    print(f"  curl -H 'Authorization: Bearer {token}' -o lobby.mp4 '{clip_url}'")
    return 0 if rep.ok and verified and all(s.writer.get("packets") for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
