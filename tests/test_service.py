"""`vstore serve` as a client meets it: a real node process on 127.0.0.1, real HTTP. Tokens and
scope (a camera outside one's groups is the same 404 as no camera, and audited), clips with
Range/If-Range/ETag/HEAD that are the CLI's clips byte for byte, streamed forms, snapshots,
holds, bad input as JSON errors, rate limits, config reload, the Unix socket, and a clean
stop."""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import signal
import subprocess
import time
from urllib.parse import quote

import av
import jsonschema
import openapi_spec_validator
import pytest

from tests.conftest import START_NS
from tests.service_helpers import make_token, start_node, store_with_cameras, vstore
from vstore.base.timebase import format_time
from vstore.service.byte_ranges import Unsatisfiable, requested_range

FRAME_NS = 40_000_000


def q(ns: int) -> str:
    """A time as a query value (the + of an offset encoded)."""
    return format_time(ns).replace("+", "%2B")


def clip_path(cam: str, a: int, b: int, fmt: str = "mp4", extra: str = "") -> str:
    return f"/api/v1/cameras/{cam}/clip.{fmt}?from={q(a)}&to={q(b)}{extra}"


@pytest.fixture(scope="module")
def node(tmp_path_factory, media_dir):
    from tests.conftest import make_media

    src = make_media(media_dir, "svc.ts", 12.0, codec="h264", gop_frames=25, audio="aac")
    store = store_with_cameras(tmp_path_factory.mktemp("svc") / "store", src,
                               ("gate", "lobby"), format_time(START_NS))  # fmt: skip
    with open(store / "vstore.toml", "a") as f:
        f.write(
            '\n[groups.north]\ncameras = ["gate"]\n[groups.south]\ncameras = ["lobby"]\n'
            "[service]\nmax_clip_s = 3600\nrate_per_s = 1000\n"
        )
    tokens = {
        "inv": make_token(store, "investigator", "north"),
        "viewer": make_token(store, "viewer", "north"),
        "custodian": make_token(store, "custodian", "north"),
        "admin": make_token(store, "admin", "*"),
        "south": make_token(store, "investigator", "south"),
    }
    n = start_node(store)
    n.tokens = tokens
    n.src = src
    yield n
    assert n.stop() == 0


def test_no_token_or_a_wrong_one_is_401_with_a_json_error(node):
    for token in (None, "vst_nope_nope", "garbage"):
        r = node.get("/api/v1/cameras", token)
        assert r.status == 401, r
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"
    assert node.get("/livez").status == 200 and node.get("/readyz").json() == {"ready": True}


def test_a_principal_sees_only_its_groups_and_others_are_not_found_and_audited(node):
    inv = node.tokens["inv"]
    cams = [c["camera"] for c in node.get("/api/v1/cameras", inv).json()["cameras"]]
    assert cams == ["gate"]
    hidden = node.get("/api/v1/cameras/lobby/timeline", inv)
    missing = node.get("/api/v1/cameras/nosuch/timeline", inv)
    assert hidden.status == missing.status == 404
    # The same answer, but for the name: nothing tells a camera that exists from one that does not.
    assert hidden.body.replace(b"lobby", b"X") == missing.body.replace(b"nosuch", b"X")
    recs = node.get("/api/v1/audit?camera=lobby", node.tokens["admin"]).json()["records"]
    denied = [r for r in recs if r["action"] == "access_denied"]
    assert denied and denied[0]["by"] == "investigator-north"
    assert denied[0]["actor"]["remote"] == "127.0.0.1"
    # A camera that does not exist is asked for at the same cost (a durable audit record),
    # so neither is the time of the answer.
    recs = node.get("/api/v1/audit?camera=nosuch", node.tokens["admin"]).json()["records"]
    assert [r["by"] for r in recs if r["action"] == "access_denied"] == ["investigator-north"]
    # The south investigator's audit view leaves out the north cameras' records.
    south = node.get("/api/v1/audit", node.tokens["custodian"]).json()["records"]
    assert all(r["detail"].get("camera") in (None, "gate") for r in south)


def test_roles_limit_what_a_principal_does(node):
    v = node.tokens["viewer"]
    assert node.get("/api/v1/cameras/gate/timeline", v).status == 200
    r = node.get(clip_path("gate", START_NS, START_NS + 10**9), v)
    assert r.status == 403 and r.json()["error"]["code"] == "forbidden"
    assert node.get("/api/v1/audit", v).status == 403
    assert node.request("POST", "/api/v1/config/reload", node.tokens["inv"]).status == 403


def test_mp4_clip_is_the_cli_clip_byte_for_byte_and_decodes(node, tmp_path):
    a, b = START_NS + 33 * FRAME_NS + 17_000_000, START_NS + 260 * FRAME_NS
    r = node.get(clip_path("gate", a, b, extra="&purpose=case-7"), node.tokens["inv"])
    assert r.status == 200, r
    assert r.headers["content-type"] == "video/mp4"
    assert int(r.headers["content-length"]) == len(r.body)
    assert r.headers["accept-ranges"] == "bytes" and r.headers["etag"].startswith('"')
    # The CLI reads the same store while the node holds it (read-only), and agrees.
    out = tmp_path / "cli.mp4"
    vstore("clip", "--store", str(node.store), "--camera", "gate", "--from", format_time(a),
           "--to", format_time(b), "-o", str(out))  # fmt: skip
    assert out.read_bytes() == r.body
    with av.open(io.BytesIO(r.body)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 260 - 33  # from the frame on screen at `a` (33) to the one before `b`
    recs = node.get("/api/v1/audit?camera=gate", node.tokens["admin"]).json()["records"]
    exp = next(r for r in recs if r["action"] == "export_clip")
    assert exp["detail"]["purpose"] == "case-7" and exp["by"] == "investigator-north"


def test_ranges_if_range_etag_and_head(node):
    tok = node.tokens["inv"]
    path = clip_path("gate", START_NS, START_NS + 11 * 10**9)
    whole = node.get(path, tok)
    size, etag = len(whole.body), whole.headers["etag"]
    r = node.get(path, tok, headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == whole.body[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{size}"
    r = node.get(path, tok, headers={"Range": "bytes=-1000"})
    assert r.status == 206 and r.body == whole.body[-1000:]
    r = node.get(path, tok, headers={"Range": f"bytes={size - 10}-"})
    assert r.status == 206 and r.body == whole.body[-10:]
    r = node.get(path, tok, headers={"Range": f"bytes={size}-"})
    assert r.status == 416 and r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    r = node.get(path, tok, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == whole.body
    r = node.get(path, tok, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status == 206 and r.body == whole.body[:10]
    r = node.get(path, tok, headers={"If-None-Match": etag})
    assert r.status == 304 and not r.body
    r = node.request("HEAD", path, tok)
    assert r.status == 200 and int(r.headers["content-length"]) == size and not r.body


@pytest.mark.parametrize("fmt,container", [("fmp4", "mov,mp4,m4a,3gp,3g2,mj2"), ("ts", "mpegts")])
def test_streamed_forms_decode(node, fmt, container):
    r = node.get(clip_path("gate", START_NS, START_NS + 4 * 10**9, fmt), node.tokens["inv"])
    assert r.status == 200, r
    with av.open(io.BytesIO(r.body)) as c:
        assert c.format.name == container
        assert sum(1 for _ in c.decode(video=0)) >= 100


def test_snapshot_is_a_jpeg_of_the_frame_at_the_instant(node):
    at = START_NS + 50 * FRAME_NS + 10_000_000
    r = node.get(f"/api/v1/cameras/gate/snapshot.jpg?at={q(at)}", node.tokens["inv"])
    assert r.status == 200 and r.body[:3] == b"\xff\xd8\xff"
    assert r.headers["x-vstore-frame-time"] == format_time(START_NS + 50 * FRAME_NS)


@pytest.mark.parametrize(
    "query,says",
    [
        ("from=yesterday&to=now", "bad time"),
        ("from=2025-01-17T08:00:00&to=now", "offset"),  # no offset: refused, never guessed
        (f"from={q(START_NS + 10**9)}&to={q(START_NS)}", "after"),
        (f"from={q(START_NS)}&to={q(START_NS + 7200 * 10**9)}", "at most 3600"),
        (f"to={q(START_NS)}", "give from"),
    ],
)
def test_bad_times_are_400_with_a_message(node, query, says):
    r = node.get(f"/api/v1/cameras/gate/clip.mp4?{query}", node.tokens["inv"])
    assert r.status == 400, r
    assert says in r.json()["error"]["message"]


def test_playback_is_not_bound_by_the_clip_limit(node):
    # (this node serves clips of at most 3600 s; watching two hours is a playlist like any)
    day = f"from={q(START_NS)}&to={q(START_NS + 7200 * 10**9)}"
    r = node.get(f"/api/v1/cameras/gate/hls.m3u8?{day}", node.tokens["viewer"])
    assert r.status == 200 and b"#EXTM3U" in r.body, r
    week = f"from={q(START_NS)}&to={q(START_NS + 8 * 86400 * 10**9)}"
    r = node.get(f"/api/v1/cameras/gate/hls.m3u8?{week}", node.tokens["viewer"])
    assert r.status == 400 and "7 days" in r.json()["error"]["message"], r


def test_relative_times_of_one_request_share_one_now(node):
    # (the node serves at most 3600 s: -2h to -1h is exactly that, not a hair over)
    r = node.get("/api/v1/cameras/gate/clip.mp4?from=-2h&to=-1h", node.tokens["inv"])
    assert r.status == 404 and "no footage" in r.json()["error"]["message"], r
    r = node.get("/api/v1/cameras/gate/timeline?from=-1h&to=-1h", node.tokens["inv"])
    assert r.status == 400 and "after" in r.json()["error"]["message"], r


def test_unknown_paths_methods_and_unsatisfiable_ranges_are_json_errors(node):
    r = node.get("/api/v1/nothing", node.tokens["inv"])
    assert r.status == 404 and r.json()["error"]["code"] == "not_found"
    r = node.request("DELETE", "/api/v1/cameras", node.tokens["inv"])
    assert r.status == 405 and "error" in r.json()
    r = node.get(
        clip_path("gate", START_NS + 10**12, START_NS + 10**12 + 10**9), node.tokens["inv"]
    )
    assert r.status == 404 and "no footage" in r.json()["error"]["message"]
    # A clip format the node does not serve says which it does, of any camera alike.
    for cam in ("gate", "no-such-camera"):
        r = node.get(f"/api/v1/cameras/{cam}/clip.mov", node.tokens["inv"])
        assert r.status == 404 and "clip.mp4, clip.fmp4 and clip.ts" in r.json()["error"]["message"]
    r = node.request("POST", "/api/v1/holds", node.tokens["custodian"], body=b"{not json")
    assert r.status == 400 and r.json()["error"]["code"] == "bad_request"
    # JSON nested past the parser's depth (15 KB), or just short of it where the schema's
    # message would show it: a 400 too, on a route that needs no login as on one that does.
    for depth in (3000, 900):
        deep = b'{"camera":' * depth + b"1" + b"}" * depth
        for path, tok in (("/api/v1/session", None), ("/api/v1/holds", node.tokens["custodian"])):
            r = node.request("POST", path, tok, body=deep)
            assert r.status == 400 and r.json()["error"]["code"] == "bad_request", (path, r)


def test_holds_are_scoped_placed_by_custodians_and_released(node):
    cust, south = node.tokens["custodian"], node.tokens["south"]
    body = {"camera": "gate", "from": format_time(START_NS),
            "to": format_time(START_NS + 5 * 10**9), "reason": "case 41"}  # fmt: skip
    assert node.request("POST", "/api/v1/holds", node.tokens["inv"], body=body).status == 403
    # A misspelt key is refused, never ignored (nor is a "by" taken from the client).
    r = node.request("POST", "/api/v1/holds", cust, body={**body, "by": "someone else"})
    assert r.status == 400 and "'by'" in r.json()["error"]["message"]
    r = node.request(
        "POST", "/api/v1/jobs", cust, body={"job": "hold", "params": {"action": "lst"}}
    )
    assert r.status == 400 and "add, release or sync" in r.json()["error"]["message"]
    r = node.request("POST", "/api/v1/holds", cust, body=body)
    assert r.status == 201, r
    hold = r.json()
    assert hold["by"] == "custodian-north" and hold["camera"] == "gate"
    assert hold["id"] in [h["id"] for h in node.get("/api/v1/holds", cust).json()["holds"]]
    assert hold["id"] not in [h["id"] for h in node.get("/api/v1/holds", south).json()["holds"]]
    tl = node.get("/api/v1/cameras/gate/timeline", node.tokens["viewer"]).json()
    assert [h["id"] for h in tl["holds"]] == [hold["id"]]
    # Out of scope: the same 404 as no hold at all.
    release = f"/api/v1/holds/{hold['id']}/release"
    other = node.request("POST", release, south, body={"reason": "mine now"})
    assert other.status in (403, 404)
    # Named for another camera (hold numbers are each node's own): refused, still held.
    wrong = node.request("POST", release, cust, body={"reason": "done", "camera": "lane"})
    assert wrong.status == 400
    assert "not 'lane': nothing released" in wrong.json()["error"]["message"]
    r = node.request("POST", release, cust, body={"reason": "done", "camera": "gate"})
    assert r.status == 200 and r.json()["released_by"] == "custodian-north"
    gone = node.request("POST", "/api/v1/holds/99999/release", cust, body={"reason": "x"})
    assert gone.status == 404 and gone.json()["error"]["message"] == "no hold #99999"
    # Retention in another process still sees holds the node placed (through the index).
    out = vstore("audit", "--store", str(node.store), "--json").stdout
    acts = [r["action"] for r in json.loads(out)["records"]]
    assert "hold_add" in acts and "hold_release" in acts


def test_a_token_revoked_while_the_node_runs_stops_working_at_once(node):
    tok = make_token(node.store, "viewer", "north", name="temp")
    assert node.get("/api/v1/cameras", tok).status == 200
    tid = tok.split("_")[1]
    vstore("token", "revoke", tid, "--store", str(node.store))
    assert node.get("/api/v1/cameras", tok).status == 401
    # A page's session of it too, told to sign in again (not to send a header it never had).
    r = node.get("/api/v1/cameras", headers={"Cookie": f"vstore_token={tok}"})
    assert r.status == 401 and "sign in again" in r.json()["error"]["message"]
    # Made and revoked by the command while the node holds the store: both through the
    # node, which writes the audit log.
    out = vstore("audit", "--store", str(node.store), "--action", "token_create",
                 "--action", "token_revoke", "--json").stdout  # fmt: skip
    recs = [(r["action"], r["detail"]["name"]) for r in json.loads(out)["records"]]
    assert ("token_create", "temp") in recs and ("token_revoke", "temp") in recs


def test_the_unix_socket_serves_the_stores_own_user_without_a_token(node):
    r = node.get("/api/v1/cameras", unix=True)
    assert r.status == 200
    assert [c["camera"] for c in r.json()["cameras"]] == ["gate", "lobby"]
    mode = (node.store / "vstore.sock").stat().st_mode & 0o777
    assert mode == 0o600


def test_openapi_lists_every_route(node):
    doc = node.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/cameras", "/api/v1/cameras/{id}/clip.{format}", "/api/v1/holds",
                 "/api/v1/audit", "/livez", "/readyz"):  # fmt: skip
        assert path in doc["paths"], path
    clip = doc["paths"]["/api/v1/cameras/{id}/clip.{format}"]["get"]["responses"]
    assert {"200", "206", "304", "default"} <= set(clip)
    assert set(clip["200"]["content"]) == {"video/mp4", "video/mp2t"}  # (clip.ts is MPEG-TS)
    seg = doc["paths"]["/api/v1/cameras/{id}/seg/{start}.m4s"]["get"]["parameters"]
    assert next(p for p in seg if p["name"] == "start")["schema"]["pattern"] == "^-?[0-9]{1,19}$"
    assert "202" in doc["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert "201" in doc["paths"]["/api/v1/holds"]["post"]["responses"]
    # A valid OpenAPI 3.1 document, whose request bodies are the schemas the node holds
    # requests to.
    openapi_spec_validator.validate(doc)
    hold = doc["paths"]["/api/v1/holds"]["post"]["requestBody"]["content"]["application/json"]
    assert hold["schema"]["required"] == ["camera", "from", "to", "reason"]
    job = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    jsonschema.validate({"job": "tier", "params": {"dry_run": True}}, job["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"job": "tier", "params": {"dry-run": True}}, job["schema"])


def test_byte_range_header_parsing():
    assert requested_range(None, 10) is None
    assert requested_range("bytes=0-4", 10) == (0, 5)
    assert requested_range("bytes=5-", 10) == (5, 10)
    assert requested_range("bytes=-3", 10) == (7, 10)
    assert requested_range("bytes=-30", 10) == (0, 10)
    assert requested_range("bytes=8-100", 10) == (8, 10)
    for ignored in ("items=0-1", "bytes=0-1,3-4", "bytes=5-2", "bytes=x-", "bytes=-", "bytes=1"):
        assert requested_range(ignored, 10) is None, ignored
    for bad in ("bytes=10-", "bytes=99999999-", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            requested_range(bad, 10)


def test_rate_limit_is_429_with_retry_after(tmp_path, media):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    with open(store / "vstore.toml", "a") as f:
        f.write("\n[service]\nrate_per_s = 2\n")
    tok = make_token(store, "viewer", "*")
    n = start_node(store)
    try:
        codes = [n.get("/api/v1/cameras", tok).status for _ in range(8)]
        assert codes[:4] == [200] * 4 and 429 in codes
        r = n.get("/api/v1/cameras", tok)
        assert r.status == 429 and int(r.headers["retry-after"]) >= 1
        # A reload changes the limit from the next request on.
        text = (store / "vstore.toml").read_text().replace("rate_per_s = 2", "rate_per_s = 1000")
        (store / "vstore.toml").write_text(text)
        os.kill(n.proc.pid, signal.SIGHUP)
        time.sleep(1.5)
        assert [n.get("/api/v1/cameras", tok).status for _ in range(8)] == [200] * 8
    finally:
        assert n.stop() == 0


def test_reload_starts_a_new_camera_and_sigterm_seals_it(tmp_path, media):
    """A camera added to vstore.toml records after a reload, without a restart; SIGTERM
    stops the node cleanly with the footage sealed and the socket gone."""
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("svc-live.ts", 4.0, codec="h264", gop_frames=25)
    admin = make_token(store, "operator", "*")
    n = start_node(store)
    try:
        with open(store / "vstore.toml", "a") as f:
            f.write(f'\n[cameras.door]\nurl = "{src}"\n')
            f.write('\n[cameras.dead]\nurl = "tcp://127.0.0.1:1"\n')  # refuses connections
        r = n.request("POST", "/api/v1/config/reload", admin)
        assert r.status == 200 and sorted(r.json()["started"]) == ["dead", "door"], r
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = n.get("/api/v1/cameras/door", admin).json()
            if st["status"].get("connects") and st.get("segments"):
                break
            time.sleep(0.2)
        assert st["status"]["connects"] == 1 and st["segments"] >= 1, st
        # A camera whose source cannot be reached is not "recording", and says why.
        dead = n.get("/api/v1/cameras/dead", admin).json()["status"]
        assert dead["recording"] is False and dead["recorder_running"] is True
        assert dead["connects"] == 0 and dead["last_error"], dead
        listed = {
            c["camera"]: c["recording"] for c in n.get("/api/v1/cameras", admin).json()["cameras"]
        }
        assert listed["dead"] is False
        metrics = n.get("/metrics", admin).body.decode()
        assert 'vstore_packets_written_total{camera="door"}' in metrics
    finally:
        assert n.stop() == 0
    assert not (store / "vstore.sock").exists()
    out = json.loads(vstore("ls", "--store", str(store), "--json").stdout)
    door = next(c for c in out["cameras"] if c["camera"] == "door")
    assert door["open_segments"] == 0 and door["recorded_s"] > 3.5


def test_cameras_are_added_changed_and_removed_through_the_api(tmp_path, media):
    """PUT and DELETE /api/v1/cameras/{id} edit vstore.toml (its comments kept), apply it as
    a reload would, and are audited without the source's password."""
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    toml = store / "vstore.toml"
    toml.write_text('# the north gate\n[store]\nsegment_duration_s = 30  # short\n\n'
                    '[groups.north]\ncameras = ["door"]\n')  # fmt: skip
    src = media("svc-api-cam.ts", 4.0, codec="h264", gop_frames=25)
    op = make_token(store, "operator", "*")
    north_op = make_token(store, "operator", "north", name="north-op")
    n = start_node(store)
    try:
        path = "/api/v1/cameras/door"
        assert n.request("PUT", path, north_op, body={"url": str(src)}).status == 403
        r = n.request("PUT", path, op, body={"url": str(src), "name": "Door"})
        assert r.status == 201 and r.json()["started"] == ["door"], r
        text = toml.read_text()
        assert text.startswith("# the north gate\n") and "# short" in text
        assert "[cameras.door]" in text and 'name = "Door"' in text
        deadline = time.monotonic() + 30
        while n.get(path, op).json().get("segments", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert n.get(path, op).json()["segments"] >= 1
        # A new name is not a new recording; bad settings change nothing.
        r = n.request("PUT", path, op, body={"url": str(src), "name": "Front door"})
        assert r.status == 200 and r.json()["restarted"] == [] and r.json()["created"] is False
        before = toml.read_text()
        for body, says in (
            ({"url": str(src), "segment_duration_s": 0.5}, "segment_duration_s must be within"),
            ({"uri": str(src)}, "'url' is a required property"),
            ({"url": str(src), "demuxer": "gst"}, "is not one of"),
            ({"url": str(src), "name": "a\nb\u001b[31m"}, "control character"),
            ({"url": "not a url"}, "neither a stream URL"),
        ):
            r = n.request("PUT", path, op, body=body)
            assert r.status == 400 and says in r.json()["error"]["message"], (body, r)
        r = n.request("PUT", "/api/v1/cameras/bad%20id", op, body={"url": str(src)})
        assert r.status == 400, r
        assert toml.read_text() == before
        # A source's password (in its user part or its query) never reaches the audit log,
        # nor the camera's status (its URL, its last error), which viewers read.
        secret_url = "rtsp://admin:s3cret@127.0.0.1:1/live?user=admin&password=QueryPass1"
        r = n.request("PUT", "/api/v1/cameras/gate", op, body={"url": secret_url})
        assert r.status == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = n.get("/api/v1/cameras/gate", op).json()
            if doc.get("status", {}).get("last_error"):
                break
            time.sleep(0.2)
        assert doc["status"]["last_error"] and "127.0.0.1:1" in doc["status"]["last_error"]
        shown = json.dumps(doc)
        assert "s3cret" not in shown and "QueryPass1" not in shown, shown
        r = n.request("DELETE", "/api/v1/cameras/gate", op)
        assert r.status == 200 and r.json()["stopped"] == ["gate"]
        r = n.request("DELETE", path, op)
        assert r.status == 200 and r.json()["stopped"] in ([], ["door"])  # (a file ends)
        assert "[cameras.door]" not in toml.read_text() and "# short" in toml.read_text()
        assert n.request("DELETE", path, op).status == 404
        assert n.get(path, op).json()["segments"] >= 1  # its footage stays
        recs = n.get("/api/v1/audit?limit=100", op).json()["records"]
        acts = [r["action"] for r in recs]
        assert acts.count("camera_set") == 3 and acts.count("camera_remove") == 2
        assert "s3cret" not in json.dumps(recs) and "QueryPass1" not in json.dumps(recs)
    finally:
        assert n.stop() == 0


def test_serve_refuses_plain_http_beyond_loopback(tmp_path):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    r = vstore("serve", "--store", str(store), "--listen", "0.0.0.0:0", check=False)
    assert r.returncode == 2 and "loopback" in r.stderr


def test_a_second_node_on_the_same_store_is_refused(node):
    r = vstore("serve", "--store", str(node.store), "--listen", "127.0.0.1:0", check=False)
    assert r.returncode == 4, r.stderr


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")
def test_ffprobe_reads_a_range_served_clip(node, tmp_path):
    out = tmp_path / "c.mp4"
    out.write_bytes(
        node.get(clip_path("gate", START_NS, START_NS + 6 * 10**9), node.tokens["inv"]).body
    )
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                        "csv=p=0", str(out)], capture_output=True, text=True, check=True)  # fmt: skip
    assert abs(float(r.stdout) - 6.0) < 0.1


def test_metrics_for_prometheus_need_a_token_that_sees_every_camera(node):
    assert node.get("/metrics").status == 401
    assert node.get("/metrics", node.tokens["inv"]).status == 403
    assert node.get("/api/v1/cameras", node.tokens["inv"]).status == 200  # (a route to count)
    r = node.get("/metrics", node.tokens["admin"])
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    for name in ("vstore_cameras_recording", "vstore_disk_free_bytes", "vstore_fsync_seconds_bucket",
                 "vstore_http_requests_total", "vstore_http_request_seconds_bucket",
                 "vstore_tier_backlog_segments", "vstore_deleted_segments"):  # fmt: skip
        assert name in text, name
    assert 'route="/api/v1/cameras"' in text


def test_jobs_over_http_run_with_progress_and_are_scoped(node):
    admin, inv, cust = node.tokens["admin"], node.tokens["inv"], node.tokens["custodian"]
    r = node.request("POST", "/api/v1/jobs", inv, body={"job": "check", "params": {"quick": True}})
    assert r.status == 403
    r = node.request("POST", "/api/v1/jobs", cust, body={"job": "check", "params": {}})
    assert r.status == 403  # operator's, on the whole store
    r = node.request("POST", "/api/v1/jobs", admin,
                     body={"job": "check", "params": {"quick": True}})  # fmt: skip
    assert r.status == 202, r
    job = r.json()
    deadline = time.monotonic() + 60
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = node.get(f"/api/v1/jobs/{job['id']}", admin).json()
    assert job["state"] == "done" and job["result"]["ok"] is True
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    # A hold as a job: in scope for the custodian, and the camera of another group is "no camera".
    body = {"job": "hold", "params": {"action": "add", "camera": "lobby", "from_ns": START_NS,
                                      "to_ns": START_NS + 10**9, "reason": "r"}}  # fmt: skip
    r = node.request("POST", "/api/v1/jobs", cust, body=body)
    assert r.status == 404 and "no camera 'lobby'" in r.json()["error"]["message"]
    # In scope, and placed in the principal's name whatever "by" the client writes.
    body["params"] |= {"camera": "gate", "by": "det. somebody else"}
    r = node.request("POST", "/api/v1/jobs", cust, body=body)
    assert r.status == 202, r
    job2 = r.json()
    while job2["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
        job2 = node.get(f"/api/v1/jobs/{job2['id']}", cust).json()
    held = [h for h in node.get("/api/v1/holds", cust).json()["holds"] if h["reason"] == "r"]
    assert job2["state"] == "done" and held and {h["by"] for h in held} == {"custodian-north"}
    # Another principal's job is not there for it; unknown jobs and bad bodies are clear.
    assert node.get(f"/api/v1/jobs/{job['id']}", cust).status == 404
    assert node.request("POST", "/api/v1/jobs", admin, body={"job": "format-disk"}).status == 400
    assert node.request("DELETE", "/api/v1/jobs/nope", admin).status == 404
    ids = [j["id"] for j in node.get("/api/v1/jobs", admin).json()["jobs"]]
    assert job["id"] in ids
    # Who ran what is recorded, and so is the asking about a camera out of scope.
    recs = node.get("/api/v1/audit?action=job_submit,access_denied", admin).json()["records"]
    runs = {(r["detail"]["job"], r["by"]) for r in recs if r["action"] == "job_submit"}
    assert {("check", "admin-*"), ("hold", "custodian-north")} <= runs, runs
    assert any(r["action"] == "access_denied" and r["detail"].get("job") == "hold" for r in recs)


def test_a_token_named_as_another_principal_gets_none_of_its_jobs_or_packages(node):
    """Jobs and packages belonged to a principal's name, which is free text: an admin of
    one group made a token named as another group's investigator and listed, cancelled
    and downloaded that investigator's work. They belong to the token (or the identity
    provider's subject) now."""
    inv = node.tokens["inv"]
    # (scoped to the same cameras: only whose the work is keeps it from the namesake)
    namesake = make_token(node.store, "investigator", "north", name="investigator-north")
    item = {"camera": "gate", "from": format_time(START_NS + 10**9),
            "to": format_time(START_NS + 2 * 10**9)}  # fmt: skip
    r = node.request("POST", "/api/v1/exports", inv,
                     body={"items": [item], "case": "C-1", "purpose": "p"})  # fmt: skip
    assert r.status == 202, r
    doc = r.json()
    job_id = doc["job"]["id"]
    assert job_id in [j["id"] for j in node.get("/api/v1/jobs", inv).json()["jobs"]]
    assert job_id not in [j["id"] for j in node.get("/api/v1/jobs", namesake).json()["jobs"]]
    assert node.get(f"/api/v1/jobs/{job_id}", namesake).status == 404
    assert node.request("DELETE", f"/api/v1/jobs/{job_id}", namesake).status == 404
    assert node.get(doc["download"], namesake).status == 404
    # Its owner may cancel it, and the record names the camera (found by camera).
    assert node.request("DELETE", f"/api/v1/jobs/{job_id}", inv).status == 202
    recs = node.get("/api/v1/audit?camera=gate&action=job_cancel", node.tokens["admin"]).json()
    assert [r["detail"]["id"] for r in recs["records"]] == [job_id]


def test_hls_playlist_and_segments_decode_as_the_recorded_frames(node, tmp_path):
    tok = node.tokens["viewer"]  # playback is a viewer's
    q_range = f"from={q(START_NS + 2 * 10**9)}&to={q(START_NS + 9 * 10**9)}"
    r = node.get(f"/api/v1/cameras/gate/hls.m3u8?{q_range}", tok)
    assert r.status == 200 and r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    text = r.body.decode()
    assert text.startswith("#EXTM3U") and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert f"#EXT-X-PROGRAM-DATE-TIME:{format_time(START_NS + 2 * 10**9)[:19]}" in text
    segs = [line for line in text.splitlines() if line.startswith("seg/")]
    init = next(line for line in text.splitlines() if line.startswith("#EXT-X-MAP"))
    assert len(segs) == 7  # 1 s GOPs from the one at 2 s to the one before 9 s
    base = "/api/v1/cameras/gate/"
    init_r = node.get(base + init.split('"')[1], tok)
    assert init_r.status == 200 and init_r.body[4:8] == b"ftyp" and b"mvex" in init_r.body
    body = init_r.body + b"".join(node.get(base + s, tok).body for s in segs)
    out = tmp_path / "hls.mp4"
    out.write_bytes(body)
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 7 * 25
    # Out of scope: the same 404 as a missing camera, for the playlist and its segments.
    south = node.tokens["south"]
    assert node.get(f"/api/v1/cameras/gate/hls.m3u8?{q_range}", south).status == 404
    assert node.get(base + segs[0], south).status == 404
    assert node.get(base + "seg/123.m4s", tok).status == 404
    assert node.get(base + "seg/abc.m4s", tok).status == 404
    # One GOP has one name: int() would also take "+N", "N_NNN" and other scripts' digits.
    n = segs[0].removeprefix("seg/").removesuffix(".m4s")
    for other in (f"+{n}", f"{n[:4]}_{n[4:]}", n.translate(str.maketrans("0123456789",
                                                                         "٠١٢٣٤٥٦٧٨٩"))):  # fmt: skip
        assert node.get(base + f"seg/{quote(other)}.m4s", tok).status == 404, other
    # A player reloading a live playlist from one start is one audited viewing, not many.
    audit = node.tokens["admin"]

    def live_records() -> int:
        recs = node.get("/api/v1/audit?action=view_playback&limit=1000", audit).json()["records"]
        return sum(1 for r in recs if r["detail"].get("live"))

    before = live_records()
    live = f"/api/v1/cameras/gate/hls.m3u8?live=1&from={q(START_NS + 10**9)}"
    statuses = {node.get(live, tok).status for _ in range(3)}
    assert statuses == {200}, statuses
    assert live_records() == before + 1


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_gap_is_a_discontinuity_and_ffmpeg_plays_the_playlist(tmp_path, media):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("svc-gap.ts", 4.0, codec="h264", gop_frames=25)
    for at in (START_NS, START_NS + 30 * 10**9):
        vstore("import", str(src), "--camera", "cam", "--start", format_time(at),
               "--store", str(store))  # fmt: skip
    tok = make_token(store, "viewer", "*")
    n = start_node(store)
    try:
        path = f"/api/v1/cameras/cam/hls.m3u8?from={q(START_NS)}&to={q(START_NS + 40 * 10**9)}"
        text = n.get(path, tok).body.decode()
        assert text.count("#EXT-X-DISCONTINUITY") == 1
        assert text.count("#EXT-X-PROGRAM-DATE-TIME") == 2
        r = subprocess.run(["ffmpeg", "-v", "error", "-headers", f"Authorization: Bearer {tok}\r\n",
                            "-i", n.url + path, "-f", "null", "-"],
                           check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    finally:
        assert n.stop() == 0


def test_the_node_runs_retention_and_tiering_on_their_schedules(tmp_path, media):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("svc-sched.ts", 4.0, codec="h264", gop_frames=25)
    for cam in ("old", "cold"):
        vstore("import", str(src), "--camera", cam, "--start", format_time(START_NS),
               "--store", str(store))  # fmt: skip
    (store / "vstore.toml").write_text(
        '[retention]\nevery = "10s"\n[retention.cameras.old]\nmax_age = "1d"\n'
        f'[tier]\nurl = "{tmp_path / "tier"}"\nolder_than = "0s"\nevery = "10s"\n'
        '[tier.cameras.old]\nolder_than = "3650d"\n'
    )
    tok = make_token(store, "operator", "*")
    n = start_node(store)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            jobs = n.get("/api/v1/jobs", tok).json()["jobs"]
            done = {j["job"] for j in jobs if j["state"] == "done" and j["by"] == "schedule"}
            if {"retention", "tier"} <= done:
                break
            time.sleep(0.5)
        assert {"retention", "tier"} <= done, jobs
    finally:
        assert n.stop() == 0
    cams = {
        c["camera"]: c
        for c in json.loads(vstore("ls", "--store", str(store), "--json").stdout)["cameras"]
    }
    assert "old" not in cams or cams["old"]["segments"] == 0  # past its max_age: deleted
    assert cams["cold"]["tiered_bytes"] == cams["cold"]["size_bytes"] > 0  # all tiered


def test_admins_manage_tokens_within_their_own_groups(node):
    admin = node.tokens["admin"]  # scoped to *
    north_admin = make_token(node.store, "admin", "north", name="north-admin")
    assert node.get("/api/v1/tokens", node.tokens["custodian"]).status == 403
    r = node.request("POST", "/api/v1/tokens", north_admin,
                     body={"name": "desk", "role": "viewer", "groups": ["north"], "expires": "1d"})  # fmt: skip
    assert r.status == 201, r
    made = r.json()
    assert made["token"].startswith("vst_") and made["expires_ns"]
    assert node.get("/api/v1/cameras", made["token"]).status == 200
    # No more than it holds: another group, or every camera, is refused.
    for groups in (["south"], ["*"]):
        r = node.request("POST", "/api/v1/tokens", north_admin,
                         body={"name": "x", "role": "viewer", "groups": groups})  # fmt: skip
        assert r.status == 403
    listed = node.get("/api/v1/tokens", north_admin).json()["tokens"]
    assert made["id"] in [t["id"] for t in listed]
    assert all(set(t["groups"]) <= {"north"} for t in listed)
    assert all("sha256" not in t and "token" not in t for t in listed)
    south_id = next(t["id"] for t in node.get("/api/v1/tokens", admin).json()["tokens"]
                    if t["groups"] == ["south"])  # fmt: skip
    assert node.request("DELETE", f"/api/v1/tokens/{south_id}", north_admin).status == 404
    assert node.request("DELETE", f"/api/v1/tokens/{made['id']}", north_admin).status == 200
    assert node.get("/api/v1/cameras", made["token"]).status == 401
    assert node.request("DELETE", f"/api/v1/tokens/{made['id']}", north_admin).status == 200
    recs = node.get("/api/v1/audit?limit=10000", admin).json()["records"]
    acts = {r["action"] for r in recs}
    assert {"token_create", "token_revoke"} <= acts
    revokes = [r for r in recs if r["action"] == "token_revoke" and made["id"] in str(r["detail"])]
    assert len(revokes) == 1  # revoking it again recorded nothing new
    assert all(made["token"] not in str(r) for r in recs)


def test_serve_never_creates_a_store(tmp_path):
    r = vstore("serve", "--store", str(tmp_path / "typo"), "--listen", "127.0.0.1:0", check=False)
    assert r.returncode == 3 and "no store" in r.stderr
    assert not (tmp_path / "typo").exists()


def test_what_a_new_user_tripped_on_is_refused_clearly(node):
    admin, cust = node.tokens["admin"], node.tokens["custodian"]
    # A misspelt job parameter is refused before anything runs, as is a value of a wrong type.
    r = node.request("POST", "/api/v1/jobs", admin,
                     body={"job": "retention", "params": {"dry-run": True}})  # fmt: skip
    message = r.json()["error"]["message"]
    assert r.status == 400 and "'dry-run' was unexpected" in message and "dry_run" in message
    r = node.request("POST", "/api/v1/jobs", admin,
                     body={"job": "check", "params": {"max_rate": "fast"}})  # fmt: skip
    assert r.status == 400 and "'fast' is not of type 'integer'" in r.json()["error"]["message"]
    # A GOP start past 64 bits is no segment, not a crash.
    assert node.get("/api/v1/cameras/gate/seg/99999999999999999999999.m4s", admin).status == 404
    assert node.get("/api/v1/cameras/gate/init/-99999999999999999999999.mp4", admin).status == 404
    # A token that is not valid is told so (not asked for one).
    r = node.get("/api/v1/cameras", "vst_dead_beef")
    assert r.status == 401 and "not valid" in r.json()["error"]["message"]
    # A hold is released only with a reason.
    body = {"camera": "gate", "from": format_time(START_NS),
            "to": format_time(START_NS + 10**9), "reason": "case 77"}  # fmt: skip
    hold = node.request("POST", "/api/v1/holds", cust, body=body).json()
    r = node.request("POST", f"/api/v1/holds/{hold['id']}/release", cust, body={})
    assert r.status == 400 and "reason" in r.json()["error"]["message"]
    r = node.request("POST", f"/api/v1/holds/{hold['id']}/release", cust, body={"reason": "ok"})
    assert r.status == 200
    # If-None-Match as browsers and proxies send it: weak, listed, or *.
    path = clip_path("gate", START_NS, START_NS + 2 * 10**9)
    etag = node.request("HEAD", path, admin).headers["etag"]
    for header in (f"W/{etag}", f'"other", {etag}', "*"):
        assert node.get(path, admin, headers={"If-None-Match": header}).status == 304
    # Audit queries: a limit that makes sense, and until after since.
    assert node.get("/api/v1/audit?limit=0", admin).status == 400
    qs = f"since={q(START_NS + 10**9)}&until={q(START_NS)}"
    assert node.get(f"/api/v1/audit?{qs}", admin).status == 400
    # A reload may restart any camera: an operator scoped to one district may not.
    district_op = make_token(node.store, "operator", "north", name="north-op")
    assert node.request("POST", "/api/v1/config/reload", district_op).status == 403
    r = node.request("POST", "/api/v1/config/reload", admin)
    assert r.status == 200
    recs = node.get("/api/v1/audit", admin).json()["records"]
    assert any(x["action"] == "config_reload" and x["by"] == "admin-*" for x in recs)


def test_token_list_says_when_a_token_expired(tmp_path):
    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    out = vstore("token", "create", "--store", str(store), "--name", "brief", "--role", "viewer",
                 "--groups", "*", "--expires", "1s", "--json").stdout  # fmt: skip
    assert json.loads(out)["state"] == "active"
    time.sleep(1.2)
    listed = json.loads(vstore("token", "list", "--store", str(store), "--json").stdout)
    assert [t["state"] for t in listed["tokens"]] == ["expired"]
    assert "expired" in vstore("token", "list", "--store", str(store)).stdout
    # Made with no process holding the store: audited here, by the user who ran it.
    out = vstore("audit", "--store", str(store), "--action", "token_create", "--json").stdout
    (rec,) = json.loads(out)["records"]
    assert rec["detail"]["name"] == "brief" and rec["by"] == getpass.getuser()


def test_an_evidence_package_over_http(node, tmp_path):
    """An investigator asks for a package of cameras in its scope, with a case and purpose;
    the node builds it as a job; the one who asked downloads a ZIP that verifies offline
    under the node's export key; nobody else can fetch it, and a camera out of scope is
    "no camera"."""
    from vstore.evidence.verify import verify_package

    inv, south = node.tokens["inv"], node.tokens["south"]
    item = {"camera": "gate", "from": format_time(START_NS + 10**9),
            "to": format_time(START_NS + 3 * 10**9)}  # fmt: skip
    body = {"items": [item], "case": "C-77", "purpose": "assault, gate"}
    assert node.request("POST", "/api/v1/exports", inv, body={"items": [item]}).status == 400
    r = node.request("POST", "/api/v1/exports", south, body=body)
    assert r.status == 404 and "no camera 'gate'" in r.json()["error"]["message"]
    assert node.request("POST", "/api/v1/exports", node.tokens["viewer"], body=body).status == 403
    r = node.request("POST", "/api/v1/exports", inv, body=body)
    assert r.status == 202, r
    doc = r.json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = node.get(doc["download"], inv)
        if got.status != 409:
            break
        time.sleep(0.1)
    assert got.status == 200 and got.headers["content-type"] == "application/zip", got
    assert "attachment" in got.headers["content-disposition"]
    pkg = tmp_path / "pkg.zip"
    pkg.write_bytes(got.body)
    key = vstore("key", "public", "--store", str(node.store)).stdout.encode()
    rep = verify_package(pkg, key_pem=key)
    assert rep.ok, rep.failures()
    # The same key, as the node publishes it: public halves only.
    keys = node.get("/api/v1/keys", node.tokens["viewer"]).json()["keys"]
    (export,) = [k for k in keys if k["purpose"] == "export" and k["state"] == "current"]
    assert export["public_pem"].encode() == key
    assert {k["purpose"] for k in keys} >= {"export", "recording", "audit", "eff"}
    assert not any("PRIVATE" in json.dumps(k) for k in keys)
    # Another investigator (even one scoped to the camera's group... here another group)
    # finds nothing there; the admin scoped to every camera may fetch it.
    assert node.get(doc["download"], south).status == 404
    assert node.get(doc["download"], node.tokens["admin"]).status == 200
    assert node.get("/api/v1/exports/0123456789abcdef.zip", inv).status == 404
    assert node.get("/api/v1/exports/..%2Fvstore.toml.zip", inv).status == 404
    assert "out" not in doc["job"]["params"]  # (the package's path on the node is its own)
    # Nor does the list of jobs show it, or the finished job's result (to any but operators).
    (job,) = [
        j for j in node.get("/api/v1/jobs", inv).json()["jobs"] if j["id"] == doc["job"]["id"]
    ]
    assert job["state"] == "done" and str(node.store) not in json.dumps(job), job
    mine = node.get(f"/api/v1/jobs/{job['id']}", inv).json()
    assert "out" not in mine["params"] and "path" not in mine["result"]
    # A range with no footage fails at once: a 404 that says so, not a package to wait for.
    empty = {**item, "from": format_time(START_NS - 100 * 10**9),
             "to": format_time(START_NS - 90 * 10**9)}  # fmt: skip
    r = node.request("POST", "/api/v1/exports", inv, body={**body, "items": [empty]})
    assert r.status == 404 and "no footage" in r.json()["error"]["message"], r
    recs = node.get("/api/v1/audit?action=export,export_download,export_failed,access_denied",
                    node.tokens["admin"]).json()  # fmt: skip
    acts = [(r["action"], r["by"]) for r in recs["records"]]
    assert ("export", "investigator-north") in acts and (
        "export_download",
        "investigator-north",
    ) in acts
    assert ("export_failed", "investigator-north") in acts
    # Asking for a package that is not one's own is recorded (the 404s above).
    denied = [
        r for r in recs["records"] if r["action"] == "access_denied" and "export" in r["detail"]
    ]
    assert {r["by"] for r in denied} >= {"investigator-south", "investigator-north"}
