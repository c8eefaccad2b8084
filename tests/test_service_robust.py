"""`vstore serve` under what a network brings: HTTPS with a configured certificate, SIGHUP,
a client that goes away mid-download (its export slot and leases are released), and a flood
of malformed requests (answered, in bounded memory, while the node keeps serving)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import START_NS
from tests.service_helpers import make_token, start_node, vstore
from vstore.base.timebase import format_time


def _q(ns: int) -> str:
    return format_time(ns).replace("+", "%2B")


def _self_signed(d) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = d / "node.crt", d / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def store(tmp_path, media):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("robust.ts", 6.0, codec="h264", gop_frames=25)
    vstore("import", str(src), "--camera", "gate", "--start", format_time(START_NS),
           "--store", str(store))  # fmt: skip
    return store


def test_https_serves_and_plain_http_is_refused(store, tmp_path):
    import http.client
    import json
    import subprocess
    import sys

    cert, key = _self_signed(tmp_path)
    (store / "vstore.toml").write_text(f'[service]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    tok = make_token(store, "viewer", "*")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vstore.cli.main", "serve", "--store", str(store), "--listen",
         "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        text = ""
        while True:
            text += proc.stdout.readline()
            try:
                url = json.loads(text)["url"]
                break
            except ValueError:
                continue
        assert url.startswith("https://")
        port = int(url.rsplit(":", 1)[1])
        ctx = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        conn.request("GET", "/api/v1/cameras", headers={"Authorization": f"Bearer {tok}"})
        r = conn.getresponse()
        assert r.status == 200 and b"gate" in r.read()
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/livez")
            plain.getresponse().read()
        plain.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        proc.stdout.close()


def test_sighup_reloads_the_cameras(store, media):
    src = media("robust-live.ts", 3.0, codec="h264", gop_frames=25)
    tok = make_token(store, "viewer", "*")
    n = start_node(store)
    try:
        with open(store / "vstore.toml", "a") as f:
            f.write(f'\n[cameras.door]\nurl = "{src}"\n')
        os.kill(n.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = n.get("/api/v1/cameras/door", tok)
            if st.status == 200 and st.json()["status"].get("connects"):
                break
            time.sleep(0.2)
        assert st.status == 200 and st.json()["status"]["connects"] == 1
        out = json.loads(vstore("audit", "--store", str(store), "--json").stdout)
        assert any(r["action"] == "config_reload" and r["by"] == "signal" for r in out["records"])
        # An invalid file changes nothing, and the node goes on.
        (store / "vstore.toml").write_text("[store\n")
        os.kill(n.proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert n.get("/readyz").status == 200
    finally:
        assert n.stop() == 0


def test_a_client_that_goes_away_mid_download_frees_its_export_slot(store):
    with open(store / "vstore.toml", "a") as f:
        f.write("\n[service]\nmax_exports = 1\n")
    tok = make_token(store, "investigator", "*")
    n = start_node(store)
    try:
        path = f"/api/v1/cameras/gate/clip.ts?from={_q(START_NS)}&to={_q(START_NS + 6 * 10**9)}"

        def start_and_leave() -> bytes:
            with socket.create_connection((n.host, n.port)) as s:
                s.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode()
                )
                return s.recv(4096)  # then gone, mid-stream

        for _ in range(3):
            # Each time the slot is free again soon after the client left.
            deadline = time.monotonic() + 20
            while not (head := start_and_leave()).startswith(b"HTTP/1.1 200"):
                assert b" 429 " in head.split(b"\r\n", 1)[0]
                assert time.monotonic() < deadline, "the slot was never freed"
                time.sleep(0.2)
    finally:
        assert n.stop() == 0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


def test_a_flood_of_malformed_requests_is_answered_in_bounded_memory(store):
    tok = make_token(store, "viewer", "*")
    n = start_node(store)
    bad = [
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/cameras/gate/clip.mp4?from=nonsense&to=x HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + tok.encode() + b"\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/cameras HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"j" * 20000 + b"\r\n\r\n",
        b"POST /api/v1/holds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer "
        + tok.encode()
        + b"\r\nContent-Length: 100000\r\n\r\n"
        + b"{" * 100000,
        b"GET /api/v1/cameras/%ZZ/timeline HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/jobs/..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/../../vstore.toml HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"b" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # past the line limit
    ]

    def hammer(k: int) -> None:
        for i in range(150):
            try:
                with socket.create_connection((n.host, n.port), timeout=10) as s:
                    s.sendall(bad[(i + k) % len(bad)])
                    s.recv(65536)
            except OSError:
                pass

    try:
        assert n.get("/api/v1/cameras", tok).status == 200
        before = _rss_kib(n.proc.pid)
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = _rss_kib(n.proc.pid)
        assert after - before < 64 * 1024, (before, after)  # 1,200 requests: well under 64 MiB
        # The parser's refusals: one line each, at most 20 a minute (the log stays bounded).
        log = (store.parent / "serve.log").read_text().splitlines()
        refused = [x for x in log if "Error handling request" in x or "BadStatusLine" in x]
        assert 0 < len(refused) <= 20, len(refused)
        assert not any(x.startswith((" ", "\t", "Traceback")) for x in log)
        time.sleep(1.5)  # (the flood spent this token's request allowance: 429 meanwhile)
        assert n.get("/api/v1/cameras", tok).status == 200
        r = n.get("/static/../../vstore.toml")
        assert r.status == 404 and b"[store]" not in r.body
        # A long (9 kB) query string still reaches the API and its JSON error.
        r = n.get("/api/v1/cameras/gate/timeline?to=now&from=" + "a" * 9000, tok)
        assert r.status == 400 and "bad time" in r.json()["error"]["message"]
    finally:
        assert n.stop() == 0
    # Parser refusals are a client's mistakes: warnings, never error tracebacks.
    assert "Traceback" not in (store.parent / "serve.log").read_text()


def test_a_stalled_client_never_stalls_recording_and_is_dropped(tmp_path, media):
    """A client that asks for a long clip and reads nothing: the camera the node records
    meanwhile loses no packet, and the client is dropped after write_timeout_s."""
    from tools.camsim import StreamSpec, TcpCamera

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    # 6 MB: more than the kernel buffers between a stalled client and the node hold.
    src = media("robust-long.ts", 12.0, codec="h264", gop_frames=25, bitrate=4_000_000,
                noise=96)  # fmt: skip
    vstore("import", str(src), "--camera", "gate", "--start", format_time(START_NS),
           "--store", str(store))  # fmt: skip
    with TcpCamera(StreamSpec(width=320, height=240, gop_frames=25)) as cam:
        (store / "vstore.toml").write_text(
            f'[service]\nwrite_timeout_s = 2\n[cameras.live]\nurl = "{cam.url}"\n'
        )
        tok = make_token(store, "investigator", "*")
        custodian = make_token(store, "custodian", "*")  # (reads the audit log)
        n = start_node(store)
        try:
            path = (
                f"/api/v1/cameras/gate/clip.mp4?from={_q(START_NS)}&to={_q(START_NS + 12 * 10**9)}"
            )
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connecting)
            s.connect((n.host, n.port))
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode()
            )
            t0 = time.monotonic()
            time.sleep(6.0)  # reading nothing, well past the timeout
            # The node hung up on it: what is left to read ends before the clip does.
            s.settimeout(10)
            got = 0
            while chunk := s.recv(1 << 20):
                got += len(chunk)
            s.close()
            head_len = int(n.request("HEAD", path, tok).headers["content-length"])
            assert got < head_len, (got, head_len)
            st = n.get("/api/v1/cameras/live", tok).json()["status"]
            assert st["recording"] and st["dropped_queue_full"] == 0
            w = st["writer"]
            assert w["packets"] >= 25 * (time.monotonic() - t0 - 2)  # kept up meanwhile
            assert not any(v for k, v in w.items() if k.startswith("dropped"))
            # A client that reads a little and hangs up.
            s = socket.socket()
            s.connect((n.host, n.port))
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode()
            )
            s.recv(10_000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # (a reset, as a killed player's)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                recs = n.get("/api/v1/audit?action=export_incomplete", custodian).json()["records"]
                if len(recs) >= 2:
                    break
                time.sleep(0.2)
            # Each cut-short download is recorded with what left, never as complete.
            reasons = sorted(r["detail"]["reason"] for r in recs)
            assert reasons == ["client stalled", "client went away"], recs
            assert all(r["detail"]["sent_bytes"] < head_len for r in recs)
        finally:
            assert n.stop() == 0
        log_text = (store.parent / "serve.log").read_text()
        assert "Traceback" not in log_text, log_text[-3000:]


def test_a_node_can_require_a_purpose_for_exports(store):
    with open(store / "vstore.toml", "a") as f:
        f.write("\n[service]\nrequire_purpose = true\n")
    tok = make_token(store, "investigator", "*")
    n = start_node(store)
    try:
        base = f"/api/v1/cameras/gate/clip.mp4?from={_q(START_NS)}&to={_q(START_NS + 2 * 10**9)}"
        r = n.get(base, tok)
        assert r.status == 400 and "purpose" in r.json()["error"]["message"]
        assert n.get(base + "&purpose=case-12", tok).status == 200
        snap = f"/api/v1/cameras/gate/snapshot.jpg?at={_q(START_NS + 10**9)}"
        assert n.get(snap, tok).status == 400
        assert n.get(snap + "&purpose=case-12", tok).status == 200
    finally:
        assert n.stop() == 0
