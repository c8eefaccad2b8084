"""Footage not tiered yet, fetched from the node that recorded it: a real `vstore serve` node
says in the bucket where its API is; a reader with nothing but the bucket's credentials and
a token clips a range that runs from tiered footage into footage only the node holds
(sealed, and the segment being recorded now), the same bytes the node's own store gives;
without a token, with a refused one, or with the node down, the reader says what is
missing; the node's segment API keeps to the token's scope and serves byte ranges."""

from __future__ import annotations

import json
import time

import av
import pytest

from tests.conftest import START_NS
from tests.service_helpers import make_token, start_node, wait_for
from tools.camsim import StreamSpec, TcpCamera
from vstore.api import open_store
from vstore.base import layout
from vstore.base.timebase import format_time
from vstore.cli.main import main
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip
from vstore.ingest.file_import import import_file
from vstore.lifecycle.gone_nodes import node_cameras
from vstore.lifecycle.hot_footage import read_cards
from vstore.lifecycle.tiering import run_tiering
from vstore.tier.factory import open_tier

S = 10**9
pytestmark = pytest.mark.s3


@pytest.fixture
def node_store(tmp_path, media, s3_env, bucket, request):
    """A store whose camera "gate" has 12 s tiered to the bucket and the next 12 s only on
    its disk, a live camera "yard", and [tier] naming the bucket (and the test's parameter,
    when it has one, as more of vstore.toml)."""
    more = getattr(request, "param", "")
    url = f"s3://{bucket}/city"
    d = tmp_path / "node" / "store"
    main(["init", "--store", str(d)])
    cam = TcpCamera(StreamSpec(width=160, height=120, fps=10, gop_frames=10))
    (d / "vstore.toml").write_text(
        f'[store]\nsegment_duration_s = 4\n[tier]\nurl = "{url}"\n'
        f'[cameras.yard]\nurl = "{cam.url}"\n[groups.gates]\ncameras = ["gate"]\n'
        f'[groups.yards]\ncameras = ["yard"]\n{more}'
    )
    st = open_store(d)
    try:
        src = media("cat-src.ts", 12.0, codec="h264", gop_frames=25)
        import_file(st, src, "gate", START_NS)
        assert run_tiering(st, st.tier(url), 5 * S).tiered == 3
        import_file(st, src, "gate", START_NS + 12 * S)  # not tiered: on this disk only
        local = tmp_path / "local.mp4"  # the clip the node's own store gives
        write_clip(st, plan_clip(st, "gate", START_NS + 2 * S, START_NS + 22 * S), local)
        whole = local.read_bytes()
    finally:
        st.close()
    yield d, url, whole
    cam.close()


def _clip(url: str, out, a: int, b: int, capsys) -> tuple[int, str]:
    code = main(["clip", "--store", url, "--camera", "gate", "--from", format_time(a),
                 "--to", format_time(b), "-o", str(out), "-y"])  # fmt: skip
    return code, capsys.readouterr().err


def test_a_bucket_reader_clips_past_the_tiered_footage_from_the_node(
    node_store, tmp_path, monkeypatch, capsys
):
    d, url, whole = node_store
    tok = make_token(d, "investigator", "*", "det. ana")
    viewer = make_token(d, "viewer", "*", "watcher")
    other = make_token(d, "investigator", "yards", "elsewhere")
    custodian = make_token(d, "custodian", "*", "records office")
    node = start_node(d)
    out = tmp_path / "c.mp4"
    a, b = START_NS + 2 * S, START_NS + 22 * S
    try:
        [card] = wait_for(lambda: read_cards(open_tier(url)), 10, "the node's card")
        assert card["api"] == node.url and card["store"]
        # With a token, but no node trusted with it: the node is not asked, and named.
        monkeypatch.setenv("VSTORE_TOKEN", tok)
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "not in VSTORE_NODES" in err and node.url in err
        assert len(out.read_bytes()) < len(whole)
        # Trusted: tiered and not tiered, the same bytes as the node's own store.
        monkeypatch.setenv("VSTORE_NODES", f"https://elsewhere.example,{node.url}")
        monkeypatch.setenv("VSTORE_PURPOSE", "case 7")
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "note" not in err, err
        assert out.read_bytes() == whole
        # Without one: what the bucket has, and a note on what it lacks.
        monkeypatch.delenv("VSTORE_TOKEN")
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "set VSTORE_TOKEN" in err
        assert len(out.read_bytes()) < len(whole)
        # Of a range no node says it holds anything of (past the footage, long before it
        # recorded): nothing to ask the nodes for, and no note that there might be.
        wait_for(lambda: node_cameras(open_tier(url)), 10, "the node's list of its cameras")
        later = START_NS + 3600 * S
        assert main(["timeline", "--store", url, "--camera", "gate", "--from",
                     format_time(later), "--to", format_time(later + 60 * S)]) == 0  # fmt: skip
        assert "VSTORE_TOKEN" not in capsys.readouterr().err
        # A token that is not valid is named; one whose scope lacks the camera sees what
        # the bucket has (the node answers as for a camera it does not have).
        monkeypatch.setenv("VSTORE_TOKEN", "vst_not-a-token")
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "answered 401" in err and len(out.read_bytes()) < len(whole)
        monkeypatch.setenv("VSTORE_TOKEN", other)
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "note" not in err and len(out.read_bytes()) < len(whole)

        # The live camera, never tiered: its last seconds, from the segment being written.
        monkeypatch.setenv("VSTORE_TOKEN", tok)
        wait_for(lambda: node.get("/api/v1/cameras/yard", tok).json().get("recording"), 20,
                 "the live camera")  # fmt: skip
        time.sleep(4)
        now = time.time_ns()
        live = tmp_path / "live.mp4"
        assert main(["clip", "--store", url, "--camera", "yard", "--from",
                     format_time(now - 3 * S), "--to", format_time(now - 1 * S),
                     "-o", str(live), "--json"]) == 0  # fmt: skip
        got = json.loads(capsys.readouterr().out)
        assert got["gaps"] == [] and got["segments"][-1]["location"].startswith(node.url)
        with av.open(str(live)) as c:  # two seconds at 10 fps, the edit list applied
            assert 19 <= sum(1 for _ in c.decode(video=0)) <= 21

        # The node's side: its segment API keeps to scope and serves ranges.
        q = f"from={format_time(a)}&to={format_time(b)}".replace("+", "%2B")
        listing = node.get(f"/api/v1/cameras/gate/segments?{q}", tok).json()
        names = [layout.node_segment_path(e["row"]["start_ns"], e["row"]["segment_id"])
                 for e in listing["segments"]]  # fmt: skip
        assert len(names) == 6  # three tiered, three on its disk: the reader takes its pick
        seg = f"/api/v1/cameras/gate/segments/{names[-1]}"
        first = node.get(seg, tok, headers={"Range": "bytes=0-99"})
        assert first.status == 206 and len(first.body) == 100 and first.body.startswith(b"\x89VSEG")
        size = listing["segments"][-1]["row"]["size_bytes"]
        assert node.get(seg, tok).body[:100] == first.body and len(node.get(seg, tok).body) == size
        assert node.get(seg, tok, headers={"Range": f"bytes={size}-"}).status == 416
        assert node.get(seg, viewer).status == 403
        assert node.get(seg, other).status == 404
        # Bytes only to whom a listing named the segment (every byte covered by an audit).
        fresh = make_token(d, "investigator", "*", "det. bo")
        assert node.get(seg, fresh).status == 403
        assert node.get(f"/api/v1/cameras/gate/segments?{q}", fresh).status == 200
        assert node.get(seg, fresh, headers={"Range": "bytes=0-99"}).body == first.body
        # One spelling per segment, and digits of other scripts are none.
        zero = f"/api/v1/cameras/gate/segments/0{names[-1]}"
        assert node.get(zero, tok).status == 404
        assert node.get("/api/v1/cameras/gate/segments/%C2%B2.1", tok).status == 404
        assert node.get("/api/v1/cameras/gate/segments/99999999999999999999.1", tok).status == 404
        forever = "from=1970-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        assert node.get(f"/api/v1/cameras/gate/segments?{forever}", tok).status == 400
        assert node.get(f"/api/v1/cameras/gate/segments?{q}", other).status == 404
        assert node.get("/api/v1/cameras/gate/segments/1.2", tok).status == 404
        assert node.get(f"/api/v1/cameras/yard/segments/{names[-1]}", tok).status == 404
        assert node.get("/api/v1/cameras/gate/segments?from=x&to=y", tok).status == 400
        # A node that fails after its listing (here: a segment file gone from its disk)
        # leaves a gap where that footage was, and is named; the rest is clipped.
        (d / listing["segments"][-1]["row"]["path"]).unlink()
        code, err = _clip(url, out, a, b, capsys)
        assert code == 0 and "failed after listing" in err, err
        assert 0 < len(out.read_bytes()) < len(whole)
        audit = node.get("/api/v1/audit?action=export_segments", custodian).json()
        assert any(r["by"] == "det. ana" and r["detail"]["camera"] == "gate"
                   and r["detail"]["purpose"] == "case 7" for r in audit["records"])  # fmt: skip
    finally:
        assert node.stop() == 0
    # The node is down: the reader says whose footage is missing.
    monkeypatch.setenv("VSTORE_TOKEN", tok)
    code, err = _clip(url, out, a, b, capsys)
    assert code == 0 and "did not answer" in err and len(out.read_bytes()) < len(whole)


def test_the_token_goes_only_over_https_or_to_loopback_and_to_nodes_the_reader_names():
    from vstore.lifecycle import hot_footage

    trusted = hot_footage.trusted
    named = ["https://node1.city.example:8480", ".district7.example", "http://127.0.0.1:9"]
    assert trusted("https://node1.city.example:8480", named)
    assert trusted("https://NODE1.city.example:8480/", named)
    assert not trusted("https://node1.city.example:8481", named)
    assert trusted("https://n4.district7.example:8480", named)
    assert not trusted("https://n4.district7.example.evil.example", named)
    assert not trusted("http://n4.district7.example:8480", named)  # plain HTTP elsewhere
    assert trusted("http://127.0.0.1:9", named) and not trusted("http://127.0.0.1:10", named)
    assert not trusted("https://evil.example", named) and not trusted("http://[::1", named)

    for api, ok in [
        ("https://node1.city.example:8480", True),
        ("http://127.0.0.1:8480", True),
        ("http://localhost:8480", True),
        ("http://[::1]:8480", True),
        ("http://10.0.0.5:8480", False),
        ("http://node1:8480", False),
        ("ftp://node1/x", False),
    ]:
        assert hot_footage._safe_for_token(api) is ok, api


@pytest.mark.parametrize("node_store", ["[service]\nrate_per_s = 2\n"], indirect=True)
def test_a_node_s_rate_limit_is_waited_out(node_store, tmp_path, monkeypatch, capsys):
    """The reader asks for each GOP on its own: past the node's rate limit (429), it waits
    as Retry-After says, and the clip comes out whole."""
    d, url, whole = node_store
    tok = make_token(d, "investigator", "*", "det. ana")
    node = start_node(d)
    try:
        wait_for(lambda: read_cards(open_tier(url)), 10, "the node's card")
        monkeypatch.setenv("VSTORE_TOKEN", tok)
        monkeypatch.setenv("VSTORE_NODES", node.url)
        out = tmp_path / "c.mp4"
        code, err = _clip(url, out, START_NS + 2 * S, START_NS + 22 * S, capsys)
        assert code == 0 and "note" not in err, err
        assert out.read_bytes() == whole
    finally:
        assert node.stop() == 0
