"""The three-node example of docs/deploy.md, run as written where containers cannot run: each
node service of docs/deploy/cluster-compose.yaml runs its own command (`vstore init`, its
vstore.toml made from docs/deploy/cluster-node.toml by the same `sed`, `exec vstore serve`)
with its own environment, against a real three-member etcd and a SeaweedFS bucket. Only what
names the compose network is mapped to loopback: the etcd members, the S3 endpoint, the
bucket (the session's SeaweedFS bucket under a prefix of this test's: a new bucket is a new
collection of volumes, which the session's server bounds), the cameras' addresses, the
store's volume and the listening port. The nodes share the cameras one owner each,
record them, and stop cleanly on the SIGTERM `docker compose stop` sends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config

from tests.service_helpers import covered_spans, free_port, vstore, wait_for, wait_for_port
from tools.camsim import StreamSpec, TcpCamera

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy"
SPEC = StreamSpec(width=160, height=120, fps=10, gop_frames=10)


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "cluster-compose.yaml").read_text())


def test_the_compose_file_names_three_etcd_members_a_locked_bucket_and_three_nodes():
    doc = _compose()
    services = doc["services"]
    etcds = sorted(s for s in services if s.startswith("etcd"))
    nodes = sorted(s for s in services if s.startswith("node"))
    assert etcds == ["etcd1", "etcd2", "etcd3"] and nodes == ["node1", "node2", "node3"]
    cluster = services["etcd1"]["environment"]["ETCD_INITIAL_CLUSTER"]
    assert cluster == ",".join(f"{e}=http://{e}:2380" for e in etcds)
    assert "--with-lock" in services["bucket"]["entrypoint"]
    toml = (DEPLOY / "cluster-node.toml").read_text()
    assert all(f"http://{e}:2379" in toml for e in etcds)
    for n in nodes:
        assert set(services[n]["depends_on"]) >= {*etcds, "bucket"}
        assert services[n]["environment"]["VSTORE_NODE"] == n
        # (compose stops a node with SIGTERM and waits this long before SIGKILL: sealing
        # every camera takes a moment)
        assert services[n]["stop_grace_period"] == "60s"


def _node_toml(etcd_endpoints: list[str], prefix: str, bucket_url: str, cams: dict) -> str:
    """docs/deploy/cluster-node.toml with the compose network's names mapped to loopback."""
    text = (DEPLOY / "cluster-node.toml").read_text()
    members = ", ".join(f'"http://{e}:2379"' for e in ("etcd1", "etcd2", "etcd3"))
    assert members in text
    text = text.replace(members, ", ".join(json.dumps(e) for e in etcd_endpoints))
    assert 'prefix = "/vstore/city"' in text and 'url = "s3://cctv/city"' in text
    text = text.replace('prefix = "/vstore/city"', f'prefix = "{prefix}"')
    text = text.replace('url = "s3://cctv/city"', f'url = "{bucket_url}"')
    for k, (name, cam) in enumerate(cams.items()):
        given = f'[cameras.{name}]\nurl = "rtsp://192.0.2.{11 + k}/stream1"'
        assert given in text
        text = text.replace(given, f'[cameras.{name}]\nurl = "{cam.url}"')
    return text


@pytest.fixture
def cameras():
    cams = {f"junction-{k}": TcpCamera(SPEC) for k in range(1, 5)}
    yield cams
    for c in cams.values():
        c.close()


def _start_nodes(tmp_path: Path, seaweed, etcd, cameras) -> tuple[dict, dict, str]:
    services = _compose()["services"]
    prefix = f"/vstore/city-{time.time_ns()}"
    bucket = seaweed.bucket
    toml = tmp_path / "cluster-node.toml"
    toml.write_text(_node_toml(etcd.endpoints, prefix, f"s3://{bucket}{prefix}", cameras))
    stores, procs = {}, {}
    for name in ("node1", "node2", "node3"):
        svc = services[name]
        store = tmp_path / name
        store.mkdir()
        port = free_port()
        script = svc["command"][2].replace("$$", "$")  # compose's escape of a shell's $
        script = script.replace("/var/lib/vstore", str(store))
        script = script.replace("/etc/vstore/node.toml", str(toml))
        assert "0.0.0.0:8480" in script
        script = script.replace("0.0.0.0:8480", f"127.0.0.1:{port}")
        env = {**os.environ, **svc["environment"], "AWS_ENDPOINT_URL": seaweed.endpoint}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `vstore`
        assert svc["command"][:2] == ["sh", "-c"]
        with open(tmp_path / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen(["sh", "-c", script], env=env, stdout=log,
                                           stderr=subprocess.STDOUT)  # fmt: skip
        stores[name] = store
        wait_for_port(port, procs[name])
    return stores, procs, prefix


def test_the_compose_file_s_three_nodes_share_record_and_stop_cleanly(
    tmp_path, seaweed, etcd, cameras
):
    started_ns = time.time_ns()
    stores, procs, prefix = _start_nodes(tmp_path, seaweed, etcd, cameras)
    s3 = boto3.client("s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
                      aws_access_key_id="vstore", aws_secret_access_key="change-me-please",
                      config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    try:

        def shared() -> dict | None:
            r = vstore("cluster", "status", "--store", str(stores["node1"]), "--json")
            doc = json.loads(r.stdout)
            held = {m["name"]: m["cameras"] for m in doc["members"]}
            owned = sorted(c for cams in held.values() for c in cams)
            if sorted(held) != ["node1", "node2", "node3"] or doc["unowned"]:
                return None
            # (the first node up takes every camera, and hands each over to the member
            # the shares name once the others have joined)
            return doc if owned == sorted(cameras) and not doc["misplaced"] else None

        doc = wait_for(shared, 60, "three members sharing the four cameras")
        assert doc["prefix"] == prefix
        owners = {c: m["name"] for m in doc["members"] for c in m["cameras"]}
        assert len(set(owners.values())) > 1

        # Each by its owner, whose member name is the compose service's (the `sed`).
        wait_for(lambda: all(covered_spans(stores[n], c) for c, n in owners.items()), 60,
                 "every camera recorded by its owner")  # fmt: skip

        # Each node tells the bucket which cameras it records, and since when (what a reader
        # marks lost should the node be declared gone before it tiered them).
        def said() -> dict[str, list[str]]:
            out = {}
            where = f"{prefix[1:]}/_nodes_cameras/"  # (the bucket's prefix: the etcd one)
            listed = s3.list_objects_v2(Bucket=seaweed.bucket, Prefix=where)
            for o in listed.get("Contents", []):
                got = s3.get_object(Bucket=seaweed.bucket, Key=o["Key"])
                doc = json.loads(got["Body"].read())
                if doc["member"] in stores and doc["at_ns"] > started_ns:
                    out[doc["member"]] = sorted(doc["cameras"])
            return out

        def owned_now() -> dict[str, list[str]]:  # (the assigner may still move one)
            r = vstore("cluster", "status", "--store", str(stores["node1"]), "--json")
            return {m["name"]: sorted(m["cameras"]) for m in json.loads(r.stdout)["members"]}

        wait_for(lambda: said() == owned_now(), 30, "each node's cameras said in the bucket")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # `docker compose stop`
        codes = {n: p.wait(60) for n, p in procs.items()}  # stop_grace_period: 60s
    assert codes == {"node1": 0, "node2": 0, "node3": 0}
    for store in stores.values():
        assert vstore("check", "--store", str(store), check=False).returncode == 0
    for cam in cameras:  # handed over, never recorded by two nodes at once
        spans = sorted(s for store in stores.values() for s in covered_spans(store, cam))
        assert all(a[1] <= b[0] for a, b in pairwise(spans)), (cam, spans)
