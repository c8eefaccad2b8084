#!/usr/bin/python3
"""A real RTSP server for tests and demos: serves MPEG-TS files as RTSP streams, the way IP
cameras do, using GStreamer's RTSP server (GstRtspServer).

Run it with Debian's /usr/bin/python3 (it needs the system's python3-gi and
gir1.2-gst-rtsp-server-1.0, not the venv):

    /usr/bin/python3 tools/rtsp_server.py --port 8554 cam1=/tmp/a.ts cam2=/tmp/b.ts

Each NAME=FILE becomes rtsp://127.0.0.1:PORT/NAME, played in real time from the start for
every client (shared=False), with SPS/PPS repeated before every keyframe. The server prints
"ready" when it listens and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("streams", nargs="+", metavar="NAME=FILE.ts[:h264|h265]")
    args = ap.parse_args(argv)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"rtsp_server: GStreamer RTSP server not available: {exc}", file=sys.stderr)
        return 3
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.streams:
        name, _, rest = spec.partition("=")
        path, _, codec = rest.partition(":")
        codec = codec or "h264"
        if not name or not path or codec not in ("h264", "h265"):
            print(f"rtsp_server: bad stream spec {spec!r}", file=sys.stderr)
            return 2
        launch = (
            f"( filesrc location={path} ! tsdemux ! {codec}parse config-interval=-1 ! "
            f"rtp{codec}pay name=pay0 pt=96 )"
        )
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
