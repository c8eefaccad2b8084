"""A node declared gone (`vstore node forget`): a live member is refused; the node's card
gives way to a declaration, so readers of the bucket stop asking it; the footage it recorded
and never tiered shows as lost in their timelines, not as a bare gap; and a node that starts
again takes the declaration back."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time

import pytest

from tests.conftest import START_NS
from tests.test_shared_catalog import _store
from vstore.base import layout
from vstore.base.timebase import format_time
from vstore.cli.main import main
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.membership import Member
from vstore.lifecycle.hot_footage import publish_card
from vstore.lifecycle.tiering import run_tiering
from vstore.store.config import ClusterConfig
from vstore.tier.factory import open_tier

S = 10**9


def _join(url, etcd, prefix, stores):
    """Each (store, name) a member of cluster ``prefix``, with its card in the bucket."""
    for st, name in stores:
        st.config = st.config._replace(cluster=ClusterConfig(etcd=tuple(etcd.endpoints),
                                                             name=name, prefix=prefix))  # fmt: skip
        publish_card(st, st.tier(url), "https://127.0.0.1:9")


def _timeline(url, frm, to, capsys):
    code = main(["timeline", "--camera", "gate", "--store", url, "--from", format_time(frm),
                 "--to", format_time(to), "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out
    return json.loads(out.out), out.err


@pytest.mark.s3
def test_a_node_declared_gone_is_not_asked_and_what_it_never_tiered_shows_as_lost(
    tmp_path, media, s3_env, bucket, etcd, capsys
):
    url = f"s3://{bucket}/gone"
    prefix = f"/vstore/gone-{time.time_ns()}"
    # Node a recorded the camera until +12 s and tiered it, then died with what followed on
    # its disk; node b recorded it again from +30 s.
    a = _store(tmp_path, media, "a", "gate")
    b = _store(tmp_path, media, "b", "gate", START_NS + 30 * S)
    for st, name in ((a, "a"), (b, "b")):
        st.config = st.config._replace(cluster=ClusterConfig(etcd=tuple(etcd.endpoints),
                                                             name=name, prefix=prefix))  # fmt: skip
        assert run_tiering(st, st.tier(url), 5 * S).tiered == 3
        publish_card(st, st.tier(url), "https://127.0.0.1:9")
    a_end = max(r.end_ns for r in a.index.segments(a.camera_num("gate")))
    b_start = min(r.start_ns for r in b.index.segments(b.camera_num("gate")))
    a_uuid = a.uuid
    a.close()
    b.close()
    frm, to = START_NS, START_NS + 40 * S
    tl, _err = _timeline(url, frm, to, capsys)
    assert [e for e in tl["events"] if e["kind"] == "lost"] == []
    assert [[g["from_ns"], g["to_ns"]] for g in tl["gaps"]] == [[a_end, b_start]]

    where = ["--bucket", url, "--etcd", ",".join(etcd.endpoints), "--prefix", prefix]
    alive = Member(EtcdClient(etcd.endpoints), prefix, "a", 10, {})
    alive.join()
    try:
        assert main(["node", "forget", "a", *where]) == 2  # a live member is not gone
        assert "drain" in capsys.readouterr().err
    finally:
        alive.leave()
    assert main(["node", "forget", "nobody", *where]) == 3
    assert "nodes: a, b" in capsys.readouterr().err

    assert main(["node", "forget", "", *where]) == 2
    capsys.readouterr()
    # b's API answers (it runs, outside any cluster's knowledge): it is not gone.
    with _answering() as api:
        with _reopen(tmp_path / "b") as b_again:
            b_again.config = b_again.config._replace(cluster=ClusterConfig(
                etcd=tuple(etcd.endpoints), name="b", prefix=prefix))  # fmt: skip
            publish_card(b_again, b_again.tier(url), api)
        assert main(["node", "forget", "b", *where]) == 2
        assert "answers at" in capsys.readouterr().err

    assert main(["node", "forget", "a", *where, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)["declared"]
    assert [(d["store"], d["member"]) for d in done] == [(a_uuid, "a")]
    assert main(["node", "forget", "a", *where]) == 3  # (once is enough)
    assert "declared gone already" in capsys.readouterr().err
    tier = open_tier(url)
    assert tier.head(layout.node_card_key(a_uuid)) is None  # readers no longer ask it
    assert tier.head(layout.node_gone_key(a_uuid)) is not None

    tl, err = _timeline(url, frm, to, capsys)
    lost = [e for e in tl["events"] if e["kind"] == "lost"]
    assert len(lost) == 1, tl["events"]
    assert (lost[0]["detail"]["from_ns"], lost[0]["detail"]["to_ns"]) == (a_end, b_start)
    assert lost[0]["detail"]["node"] == "a" and lost[0]["detail"]["store"] == a_uuid
    assert "declared gone" in err
    # The text form says it where the gap is.
    assert main(["timeline", "--camera", "gate", "--store", url, "--from", format_time(frm),
                 "--to", format_time(to)]) == 0  # fmt: skip
    assert "lost" in capsys.readouterr().out

    # Node a comes back (its disk was not lost after all): the declaration is taken back.
    with _reopen(tmp_path / "a") as again:
        publish_card(again, again.tier(url), "https://127.0.0.1:9")
    assert tier.head(layout.node_gone_key(a_uuid)) is None
    tl, _err = _timeline(url, frm, to, capsys)
    assert [e for e in tl["events"] if e["kind"] == "lost"] == []


@pytest.mark.s3
def test_a_camera_a_gone_node_took_up_and_never_tiered_shows_as_lost_too(
    tmp_path, media, s3_env, bucket, etcd, capsys
):
    """Node c took the camera up after b's footage, said so in the bucket, and died before
    its first tiering run: none of its footage is in the bucket, yet from when it took the
    camera up its gap is lost, not bare; before that, the gap stays bare."""
    from vstore.api import open_store
    from vstore.lifecycle.gone_nodes import publish_cameras, untiered_spans

    url = f"s3://{bucket}/took-up"
    prefix = f"/vstore/took-up-{time.time_ns()}"
    b = _store(tmp_path, media, "b", "gate")  # recorded 0 .. 12 s and tiered it
    assert run_tiering(b, b.tier(url), 5 * S).tiered == 3
    (tmp_path / "c").mkdir()
    c = open_store(tmp_path / "c")
    _join(url, etcd, prefix, ((b, "b"), (c, "c")))
    took = START_NS + 20 * S
    publish_cameras(c, c.tier(url), {"gate": took, "lane": START_NS}, {}, took)
    # (b handed the camera over: sealed, tiered)
    publish_cameras(b, b.tier(url), {}, untiered_spans(b), took)
    c_uuid = c.uuid
    b.close()
    c.close()
    frm, to = START_NS, START_NS + 40 * S
    tl, _err = _timeline(url, frm, to, capsys)
    assert [e for e in tl["events"] if e["kind"] == "lost"] == []  # (c is not gone)

    where = ["--bucket", url, "--etcd", ",".join(etcd.endpoints), "--prefix", prefix]
    assert main(["node", "forget", "c", *where]) == 0
    assert main(["node", "forget", "b", *where]) == 0  # (its handover's gap is not lost)
    capsys.readouterr()
    tl, err = _timeline(url, frm, to, capsys)
    lost = [e["detail"] for e in tl["events"] if e["kind"] == "lost"]
    assert [(d["from_ns"], d["to_ns"], d["store"], d["node"]) for d in lost] == [
        (took, to, c_uuid, "c")
    ]
    assert "declared gone" in err
    # b's footage ends at 12 s; until c took the camera up at 20 s the gap is bare.
    (gap,) = tl["gaps"]
    assert gap["from_ns"] < took and gap["to_ns"] == to


@pytest.mark.s3
def test_what_a_gone_node_held_untiered_is_lost_exactly_and_ends_where_another_took_over(
    tmp_path, media, s3_env, bucket, etcd, capsys
):
    """Node b tiered 0-12 s, then recorded 12-24 s that it never tiered, and said so in its
    list (``untiered``). First it still records the camera (since 12 s) when it dies, and
    node c takes the camera up at 30 s (its own footage not tiered yet, so not in the
    bucket): b's lost footage runs to c's taking over, 12-30 s, not to the declaration.
    Then as b would say it had it handed the camera over at 24 s: exactly its untiered
    span is lost, where nothing was marked before (the camera was not in its list)."""
    from vstore.api import open_store
    from vstore.ingest.file_import import import_file
    from vstore.lifecycle.gone_nodes import publish_cameras, untiered_spans

    url = f"s3://{bucket}/untiered"
    prefix = f"/vstore/untiered-{time.time_ns()}"
    b = _store(tmp_path, media, "b", "gate")
    assert run_tiering(b, b.tier(url), 5 * S).tiered == 3
    import_file(b, media("cat-src.ts", 12.0, codec="h264", gop_frames=25), "gate",
                START_NS + 12 * S)  # fmt: skip
    assert untiered_spans(b) == {"gate": [[START_NS + 12 * S, START_NS + 24 * S]]}
    (tmp_path / "c").mkdir()
    c = open_store(tmp_path / "c")
    _join(url, etcd, prefix, ((b, "b"), (c, "c")))
    took = START_NS + 30 * S
    publish_cameras(b, b.tier(url), {"gate": START_NS + 12 * S}, untiered_spans(b), took)
    publish_cameras(c, c.tier(url), {"gate": took}, {}, took)
    b_uuid = b.uuid
    b.close()
    c.close()
    where = ["--bucket", url, "--etcd", ",".join(etcd.endpoints), "--prefix", prefix]
    assert main(["node", "forget", "b", *where]) == 0
    capsys.readouterr()
    tl, _err = _timeline(url, START_NS, START_NS + 60 * S, capsys)
    lost = [e["detail"] for e in tl["events"] if e["kind"] == "lost"]
    assert [(d["from_ns"], d["to_ns"], d["store"]) for d in lost] == [
        (START_NS + 12 * S, took, b_uuid)
    ]
    bucket_tier = open_tier(url)
    doc = json.loads(bucket_tier.get(layout.node_cameras_key(b_uuid)))
    doc["cameras"] = {}  # (handed over: no longer listed)
    bucket_tier.put_bytes(layout.node_cameras_key(b_uuid), json.dumps(doc).encode())
    tl, _err = _timeline(url, START_NS, START_NS + 60 * S, capsys)
    lost = [e["detail"] for e in tl["events"] if e["kind"] == "lost"]
    assert [(d["from_ns"], d["to_ns"]) for d in lost] == [(START_NS + 12 * S, START_NS + 24 * S)]


@contextlib.contextmanager
def _answering():
    """An HTTP server on loopback whose /livez answers 200, as a running node's does."""

    class Live(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/livez" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Live)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _reopen(path):
    from vstore.api import open_store

    return open_store(path)


def test_what_a_store_holds_untiered_is_kept_up_to_date_incrementally(tmp_path, media):
    """A node says what it holds untiered once a minute: the tail is read once, then only
    what was written since, and what was tiered since is dropped from the oldest end."""
    from vstore.ingest.file_import import import_file
    from vstore.lifecycle.gone_nodes import UntieredSpans

    st = _store(tmp_path, media, "a", "gate")  # 0-12 s, 4 s segments
    tracker = UntieredSpans()
    assert tracker.read(st) == {"gate": [[START_NS, START_NS + 12 * S]]}
    import_file(st, media("cat-src.ts", 12.0, codec="h264", gop_frames=25), "gate",
                START_NS + 20 * S)  # fmt: skip
    assert tracker.read(st) == {"gate": [[START_NS, START_NS + 12 * S],
                                         [START_NS + 20 * S, START_NS + 32 * S]]}  # fmt: skip
    url = str(tmp_path / "bucket")
    assert run_tiering(st, st.tier(url), 0, cameras=["gate"]).tiered == 6
    assert tracker.read(st) == {}
    import_file(st, media("cat-src.ts", 12.0, codec="h264", gop_frames=25), "gate",
                START_NS + 40 * S)  # fmt: skip
    assert tracker.read(st) == {"gate": [[START_NS + 40 * S, START_NS + 52 * S]]}
    st.close()


def test_footage_left_untiered_behind_tiered_footage_is_seen_at_the_next_whole_read(
    tmp_path, media
):
    """A backfill imported behind footage already tiered was never in what a node said it
    holds untiered (only the newest untiered segments were read): declared gone, its
    footage there showed as a bare gap, not as lost. Every camera's rows are read whole
    now and then (FULL_READ_EVERY)."""
    from vstore.ingest.file_import import import_file
    from vstore.lifecycle.gone_nodes import UntieredSpans

    src = media("cat-src.ts", 12.0, codec="h264", gop_frames=25)
    st = _store(tmp_path, media, "a", "gate")  # 0-12 s, 4 s segments
    import_file(st, src, "gate", START_NS + 40 * S)
    url = str(tmp_path / "bucket")
    assert run_tiering(st, st.tier(url), 0, cameras=["gate"]).tiered == 6
    import_file(st, src, "gate", START_NS + 60 * S)  # (untiered, newest)
    tracker = UntieredSpans(full_every=2)
    assert tracker.read(st) == {"gate": [[START_NS + 60 * S, START_NS + 72 * S]]}
    import_file(st, src, "gate", START_NS + 20 * S)  # (a backfill behind tiered footage)
    assert tracker.read(st) == {"gate": [[START_NS + 60 * S, START_NS + 72 * S]]}
    assert tracker.read(st) == {"gate": [[START_NS + 20 * S, START_NS + 32 * S],
                                         [START_NS + 60 * S, START_NS + 72 * S]]}  # fmt: skip
    st.close()
