"""Bearer JWTs from an identity provider: verified against its JWKS (served over HTTP by a
real process here), claims mapped to a role and camera groups by [auth.jwt]; anything that
does not verify is a 401, a verified user granted nothing here a 403."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import START_NS
from tests.service_helpers import free_port, start_node, store_with_cameras, wait_for_port
from vstore.base.timebase import format_time

ISSUER = "https://sso.city.example/realms/city"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """The provider's signing key and its JWKS, served by `python -m http.server`."""
    d = tmp_path_factory.mktemp("idp")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (d / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, proc)
    except RuntimeError:
        proc.kill()
        raise
    yield key, f"http://127.0.0.1:{port}/jwks.json"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def node(idp, tmp_path_factory, media_dir):
    from tests.conftest import make_media

    _key, jwks_url = idp
    src = make_media(media_dir, "jwt.ts", 3.0, codec="h264", gop_frames=25)
    store = store_with_cameras(tmp_path_factory.mktemp("jwt") / "store", src,
                               ("gate", "lobby"), format_time(START_NS))  # fmt: skip
    with open(store / "vstore.toml", "a") as f:
        f.write(
            '\n[groups.north]\ncameras = ["gate"]\n[groups.south]\ncameras = ["lobby"]\n'
            f'[auth.jwt]\nissuer = "{ISSUER}"\naudience = "vstore"\njwks_url = "{jwks_url}"\n'
            '[auth.jwt.roles]\n"police-detective" = "investigator"\n"clerk" = "viewer"\n'
            '[auth.jwt.groups]\n"/districts/north" = "north"\n'
        )
    n = start_node(store)
    yield n
    assert n.stop() == 0


def _token(key, **over) -> str:
    claims = {"iss": ISSUER, "aud": "vstore", "exp": int(time.time()) + 300, "sub": "f3a9-det",
              "preferred_username": "det.smith", "roles": ["clerk", "police-detective"],
              "groups": ["/districts/north"]}  # fmt: skip
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}  # (None: a claim left out)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_a_verified_token_maps_to_role_and_groups(idp, node):
    key, _ = idp
    tok = _token(key)
    cams = node.get("/api/v1/cameras", tok).json()["cameras"]
    assert [c["camera"] for c in cams] == ["gate"]
    me = node.get("/api/v1/session", tok).json()
    assert me == {"name": "det.smith", "role": "investigator", "groups": ["north"],
                  "may": ["view", "export"]}  # fmt: skip
    assert node.get("/api/v1/cameras/lobby/timeline", tok).status == 404  # outside its groups
    recs = node.get("/api/v1/audit?camera=lobby", tok)
    assert recs.status == 403  # an investigator reads no audit log


@pytest.mark.parametrize(
    "why,over,other_key",
    [
        ("expired", {"exp": int(time.time()) - 3600}, False),
        ("another audience", {"aud": "someone-else"}, False),
        ("another issuer", {"iss": "https://evil.example"}, False),
        ("signed by another key", {}, True),
        ("no subject: a name claim is not unique", {"sub": None}, False),
    ],
)
def test_what_does_not_verify_is_401(idp, node, why, over, other_key):
    key, _ = idp
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048) if other_key else key
    r = node.get("/api/v1/cameras", _token(signer, **over))
    assert r.status == 401, why


def test_an_unsigned_token_is_401(node):
    none = jwt.encode({"iss": ISSUER, "aud": "vstore", "exp": int(time.time()) + 60,
                       "roles": ["police-detective"]}, None, algorithm="none")  # fmt: skip
    assert node.get("/api/v1/cameras", none).status == 401


def test_a_user_the_provider_grants_nothing_here_is_403(idp, node):
    key, _ = idp
    r = node.get("/api/v1/cameras", _token(key, roles=["janitor"]))
    assert r.status == 403 and "grants no vstore role" in r.json()["error"]["message"]
    assert node.get("/api/v1/cameras", _token(key, groups=[])).status == 403
