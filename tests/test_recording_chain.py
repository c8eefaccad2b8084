"""Each camera's sealed segments form a signed hash chain: an untouched store's chains are
whole through retention deletions, trims and tiering (each accounted for by its audit
record), and `vstore check` names the first break when a segment is removed, replaced or
edited out of band, when a row is inserted, and when the head is rolled back or re-signed."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.conftest import START_NS
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.api import open_store
from vstore.base import layout
from vstore.base.clock import FakeClock
from vstore.base.errors import ConfigError
from vstore.cli.main import main
from vstore.evidence.audit_chain import write_digest
from vstore.index.segment_chain import ChainHead, link_hash, row_statement
from vstore.index.time_index import Batch
from vstore.lifecycle.check import check_store
from vstore.lifecycle.retention import run_retention
from vstore.store.disk import DiskUsage
from vstore.store.holds import add_hold
from vstore.store.keys import KeyRing


def _record(st, cam: str, seconds: int, start_ns: int = START_NS) -> None:
    """One-second GOPs (25 fps) in 4 s segments."""
    with st.writer(cam, [VIDEO], start_ns=start_ns) as w:
        for i in range(seconds * 25):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data + bytes(200)))


@pytest.fixture
def st(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    clock = FakeClock(wall_ns=START_NS)
    s = open_store(d, clock=clock)
    _record(s, "gate", 20)
    _record(s, "yard", 8)
    s.clock_ = clock
    yield s
    s.close()


def _chain_problems(st) -> list[str]:
    return [p.message for p in check_store(st, verify_hashes=False).problems if p.code == "C9"]


def _rows(st, cam: str):
    return list(st.index.segments(st.camera_num(cam)))


def _drop_row(st, row) -> None:
    b = Batch()
    b.delete(row.key())
    for c in st.index.chunks(row.camera_num, row.start_ns, row.end_ns):
        if c.segment_id == row.segment_id:
            b.delete(c.key())
    st.index.commit(b)
    st.layout.path(row.path).unlink()


def test_chains_are_linked_signed_and_whole(st):
    rows = _rows(st, "gate")
    assert [r.chain.seq for r in rows] == [1, 2, 3, 4, 5]
    assert all(r.chain.signature for r in rows)
    head = st.index.chain_head(st.camera_num("gate"))
    assert head.seq == 5 and head.signature
    rep = check_store(st, verify_hashes=False)
    assert rep.ok, rep.problems
    gate = next(c for c in rep.chains if c.camera == "gate")
    assert (gate.links, gate.present, gate.signed_links) == (5, 5, 5)
    # Links go on across writers: the next recording of the camera continues the chain.
    _record(st, "gate", 4, START_NS + 60 * 10**9)
    assert [r.chain.seq for r in _rows(st, "gate")] == [1, 2, 3, 4, 5, 6]
    assert _chain_problems(st) == []


def test_retention_and_trims_are_accounted_for_by_their_audit_records(st):
    cam = "gate"
    add_hold(st, cam, START_NS + 9 * 10**9, START_NS + 10 * 10**9, "case 1", "det. a")
    st.clock_.advance(3600 * 10**9)
    _plan, res = run_retention(st, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
    assert res.deleted_segments >= 4 and res.trimmed_segments == 1
    rep = check_store(st, verify_hashes=False)
    assert rep.ok, rep.problems
    gate = next(c for c in rep.chains if c.camera == cam)
    # Five removed (four deleted, one trimmed); the trimmed copy is link 6.
    assert (gate.links, gate.present, gate.accounted) == (6, 1, 5)


def test_a_segment_removed_out_of_band_is_named(st):
    rows = _rows(st, "gate")
    _drop_row(st, rows[2])
    (msg,) = _chain_problems(st)
    assert "link #3 is missing" in msg and "removed out of band" in msg


def test_the_newest_segment_removed_and_its_head_rolled_back_is_named(st):
    num = st.camera_num("gate")
    rows = _rows(st, "gate")
    _drop_row(st, rows[-1])
    (msg,) = _chain_problems(st)
    assert "link #5 is missing" in msg
    # A head put back at link 4 without the recording key is not signed for it.
    link4 = link_hash(row_statement("gate", rows[3], rows[3].chain))
    head = st.index.chain_head(num)
    st.index.put_sync(layout.chain_head_key(num), head._replace(seq=4, link=link4).value())
    (msg,) = _chain_problems(st)
    assert "head's signature (link #4) does not verify" in msg


def test_a_segment_row_edited_or_replaced_is_named(st):
    rows = _rows(st, "gate")
    # The row's content hash changed to match a replaced file: its own signature fails.
    edited = rows[1]._replace(sha256="00" * 32)
    st.index.put_sync(edited.key(), edited.value())
    (msg,) = _chain_problems(st)
    assert "link #2" in msg and "signature does not verify" in msg
    # The same change with the signature stripped: the next link no longer follows.
    st.index.put_sync(
        edited.key(), edited._replace(chain=edited.chain._replace(key_id="", signature="")).value()
    )
    (msg,) = _chain_problems(st)
    assert "link #3" in msg and "does not follow link #2" in msg


def test_an_inserted_segment_is_named(st):
    rows = _rows(st, "gate")
    fake = rows[0]._replace(
        segment_id=9999,
        start_ns=rows[-1].end_ns + 10**9,
        end_ns=rows[-1].end_ns + 2 * 10**9,
        chain=rows[-1].chain._replace(seq=6),
    )
    st.index.put_sync(fake.key(), fake.value())
    (msg,) = _chain_problems(st)
    assert "link #6 lies past the head" in msg


def test_a_head_signed_by_another_key_is_named(st, tmp_path):
    from vstore.store.keys import KeyRing as Ring

    num = st.camera_num("yard")
    other = Ring(tmp_path / "other-keys", create=True).signer("recording")
    head = st.index.chain_head(num)
    st.index.put_sync(layout.chain_head_key(num), head.signed(other, time.time_ns()).value())
    (msg,) = _chain_problems(st)
    assert "yard" in msg and f"head (link #2) is signed by key {other.key_id}, which is not" in msg
    # Signed with the store's own key id but another key's signature: it does not verify.
    forged = head.signed(other, time.time_ns())._replace(key_id=head.key_id)
    st.index.put_sync(layout.chain_head_key(num), forged.value())
    (msg,) = _chain_problems(st)
    assert "yard" in msg and "head's signature (link #2) does not verify" in msg


def test_a_lost_key_ring_is_refused_and_links_of_unknown_keys_named(st):
    ring_path = layout.keyring_path(st.layout.keys_dir)
    saved = ring_path.read_bytes()
    ring_path.unlink()
    with pytest.raises(ConfigError, match=r"key ring .* is missing but .* holds private keys"):
        KeyRing.of_store(st).signer("export")
    assert layout.private_key_paths(st.layout.keys_dir)  # nothing was made in its place
    assert not ring_path.exists()
    # The whole key directory gone: the store's signatures say keys were made before.
    keys_dir = st.layout.keys_dir
    shutil.move(keys_dir, keys_dir.with_name("keys.saved"))
    with pytest.raises(ConfigError, match="has no keys, but this store holds signatures"):
        KeyRing.of_store(st).signer("export")
    assert not layout.keyring_path(keys_dir).exists()
    shutil.rmtree(keys_dir, ignore_errors=True)
    shutil.move(keys_dir.with_name("keys.saved"), keys_dir)
    # A ring that no longer names the recording key: the links say whose key signed them.
    doc = json.loads(saved)
    doc["keys"] = [k for k in doc["keys"] if k["purpose"] != "recording"]
    ring_path.write_text(json.dumps(doc))
    problems = _chain_problems(st)
    assert problems and all("not one of the store's recording keys" in p for p in problems)


def test_heads_are_signed_again_with_their_time_and_old_keys_still_verify(st):
    ring = KeyRing.of_store(st)
    num = st.camera_num("gate")
    before = st.index.chain_head(num)
    ring.rotate("recording")
    n = st.index.sign_chain_heads(
        ring.signer("recording"), before.signed_at_ns + 61 * 10**9, 60 * 10**9
    )
    assert n == 2
    after = st.index.chain_head(num)
    assert after.signed_at_ns > before.signed_at_ns and after.key_id != before.key_id
    assert ChainHead.decode(after.value()) == after
    assert _chain_problems(st) == []  # links signed by the retired key still verify


def test_check_command_reports_chains(st, capsys):
    root = str(st.root)
    st.close()
    assert main(["check", "--store", root, "--quick"]) == 0
    out = capsys.readouterr().out
    assert "recording chains: 2 camera(s), 7 link(s)" in out and "all whole" in out
    with open_store(root) as s2:
        _drop_row(s2, _rows(s2, "yard")[0])
    assert main(["check", "--store", root, "--quick"]) != 0
    out = capsys.readouterr().out
    assert "C9 yard: camera yard: recording chain: link #1 is missing" in out


def test_a_rollback_to_an_older_signed_head_falls_short_of_the_audit_digest(st):
    """Someone who kept a copy of an older head (signed by the node) removes the newest
    segment and puts that copy back: the chain alone is whole, the hourly audit digest that
    recorded the newer head is not met."""
    num = st.camera_num("gate")
    old_head = st.index.get(layout.chain_head_key(num))
    _record(st, "gate", 4, START_NS + 60 * 10**9)
    write_digest(st, KeyRing.of_store(st), time.time_ns())
    _drop_row(st, _rows(st, "gate")[-1])
    st.index.put_sync(layout.chain_head_key(num), old_head)
    (msg,) = _chain_problems(st)
    assert "ends at link #5, yet audit digest #1" in msg and "saw link #6" in msg


def test_links_travel_with_tiered_segments_and_come_back_with_a_rebuilt_index(st, tmp_path):
    import shutil

    from vstore.index.segment_chain import OBJECT_METADATA_KEY, link_of_object
    from vstore.lifecycle.tiering import rebuild_index_from_tier, run_tiering
    from vstore.tier import LocalTier

    tier = LocalTier(tmp_path / "cold")
    st.clock_.advance(3600 * 10**9)
    assert run_tiering(st, tier, 10**9).tiered == 7
    rows = {r.path: r for cam in ("gate", "yard") for r in _rows(st, cam)}
    for path, row in rows.items():
        cam, link = link_of_object(tier.head(path).metadata)
        assert link == row.chain and link.signature and cam in ("gate", "yard")
    assert check_store(st, verify_hashes=False).ok
    # The object's link edited in the bucket: check compares it with the index.
    first = min(rows)
    meta = tier.head(first).metadata
    bad = meta[OBJECT_METADATA_KEY].replace('"seq":1', '"seq":9')
    tier.put_file(
        first, tier._path(first), _sha_b64(tier._path(first)), metadata={OBJECT_METADATA_KEY: bad}
    )
    assert any("object carries chain link #9" in m for m in _chain_problems_all(st))
    tier.put_file(first, tier._path(first), _sha_b64(tier._path(first)), metadata=meta)
    # The index lost: rebuilt from the bucket, every link and both heads come back.
    root = st.root
    st.close()
    shutil.rmtree(root / "index")
    with open_store(root, clock=FakeClock(wall_ns=START_NS + 3600 * 10**9)) as s2:
        rebuild_index_from_tier(s2, tier)
        rep = check_store(s2, verify_hashes=False)
        assert rep.ok, rep.problems
        assert {c.camera: c.links for c in rep.chains} == {"gate": 5, "yard": 2}
        assert all(r.chain is not None for r in _rows(s2, "gate"))


def _sha_b64(path) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def _chain_problems_all(st) -> list[str]:
    return [p.message for p in check_store(st, verify_hashes=False).problems]


def test_the_node_signs_heads_again_on_its_period_and_needs_the_recording_key(tmp_path):
    from vstore.base.errors import ConfigError
    from vstore.service.node import Node

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[service]\nchain_sign_every_s = 0.001\n")
    with open_store(d) as s:
        _record(s, "gate", 2)
        num = s.camera_num("gate")
        before = s.index.chain_head(num)
        time.sleep(0.01)
        Node(s).sign_chain_heads()
        after = s.index.chain_head(num)
        assert after.signed_at_ns > before.signed_at_ns and after.link == before.link
        assert _chain_problems(s) == []
    # Keys kept elsewhere that hold an audit key but no recording key: refused at start.
    keys = tmp_path / "elsewhere"
    KeyRing(keys, create=True).signer("audit")
    (d / "vstore.toml").write_text(f'[keys]\ndir = "{keys}"\n')
    with open_store(d) as s, pytest.raises(ConfigError, match="recording"):
        Node(s)


def test_a_rotation_is_audited_and_the_next_seal_signs_with_the_new_key(st, capsys):
    from vstore.jobs.key_rotate import key_rotate_job

    old = _rows(st, "gate")[-1].chain.key_id
    doc = key_rotate_job(st, {"purpose": "recording", "by": "ops"})
    _record(st, "gate", 4, START_NS + 60 * 10**9)
    assert _rows(st, "gate")[-1].chain.key_id == doc["key_id"] != old
    assert _chain_problems(st) == []
    (rec,) = [r for r in st.index.audit_records() if r["action"] == "key_rotate"]
    assert rec["by"] == "ops" and rec["detail"]["retired"] == [old]
    # The command, on a store no process holds, goes the same way.
    root = str(st.root)
    st.close()
    assert main(["key", "rotate", "--purpose", "export", "--store", root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["purpose"] == "export"
    with open_store(root, read_only=True) as s2:
        acts = [
            r["detail"]["purpose"] for r in s2.index.audit_records() if r["action"] == "key_rotate"
        ]
        assert acts == ["recording", "export"]


@pytest.mark.parametrize("held", ["one GOP", "a whole segment"])
def test_audit_retention_folds_removals_into_a_chain_base_and_chains_stay_whole(tmp_path, held):
    from vstore.evidence.audit_chain import verify
    from vstore.evidence.audit_retention import prune_audit

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text('[store]\nsegment_duration_s = 4\n[audit]\nmax_age = "1d"\n')
    clock = FakeClock(wall_ns=START_NS)
    with open_store(d, clock=clock) as s:
        _record(s, "gate", 20)  # links 1-5, 4 s each
        # A trimmed GOP of link 3 (its copy is link 6), or all of link 2 kept whole.
        a, b = (9, 10) if held == "one GOP" else (4, 8)
        add_hold(s, "gate", START_NS + a * 10**9, START_NS + b * 10**9, "case", "det. a")
        s.index.audit("view_timeline", "det. b", {"camera": "gate"}, clock.wall_ns())
        clock.advance(3600 * 10**9)
        run_retention(s, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        records_before = len(s.index.audit_records())
        # Recorded in 2025: all older than a day now.
        rep = prune_audit(s, s.keys, time.time_ns(), "ops")
        chain = next(c for c in check_store(s, verify_hashes=False).chains if c.camera == "gate")
        assert chain.problems == [] and _chain_problems(s) == []
        audit = verify(s)
        assert audit.ok, [f for f in audit.findings if not f.ok]
        assert audit.pruned == rep.pruned > 0
        left = s.index.audit_records()
        assert len(left) == records_before - rep.pruned + 1  # (+ the audit_prune record)
        (pr,) = [r for r in left if r["action"] == "audit_prune"]
        if held == "one GOP":
            assert rep.kept_for_chains == 0 and pr["detail"]["chain_bases"]["gate"]["seq"] == 5
            assert (chain.links, chain.present, chain.accounted) == (6, 1, 5)
        else:
            # Link 2 stands: the removals of links 3-5 stay, the base is link 1.
            assert rep.kept_for_chains == 3 and pr["detail"]["chain_bases"]["gate"]["seq"] == 1
            kept = [r for r in left if r["action"] == "delete"]
            assert sorted(r["detail"]["chain"]["seq"] for r in kept) == [3, 4, 5]
            # Those it kept still matter: one removed is a break.
            seq = next(r["seq"] for r in kept if r["detail"]["chain"]["seq"] == 4)
            b2 = Batch()
            b2.delete(layout.audit_key(seq))
            s.index.commit(b2)
            (msg,) = _chain_problems(s)
            assert "link #4 is missing" in msg
            assert not verify(s).ok  # and the audit log says a record was deleted


def test_an_audit_prune_record_put_in_by_hand_accounts_for_nothing(tmp_path):
    """Whoever can write the index deleted signed removal records, and the segments they
    accounted for, and appended an `audit_prune` record naming them, with a chain base past
    them: `audit verify` called them pruned and `check` the chain whole, at once or once the
    next routine digest signed it. A prune record counts only signed by the audit key (the
    prune job signs its own)."""
    from vstore.evidence.audit_chain import verify, write_digest

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    clock = FakeClock(wall_ns=START_NS)
    with open_store(d, clock=clock) as s:
        _record(s, "gate", 20)
        clock.advance(3600 * 10**9)
        run_retention(s, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))
        write_digest(s, s.keys, clock.wall_ns())
        assert verify(s).ok and _chain_problems(s) == []
        removals = [r for r in s.index.audit_records() if r["action"] == "delete"]
        newest = max(removals, key=lambda r: r["detail"]["chain"]["seq"])["detail"]["chain"]
        b = Batch()
        for r in removals:
            b.delete(layout.audit_key(r["seq"]))
        s.index.commit(b)
        forged = {
            "ranges": [[r["seq"], r["seq"]] for r in removals],
            "chain_bases": {"gate": {"seq": newest["seq"], "link": newest["link"]}},
        }
        s.index.audit("audit_prune", "vstore", forged, clock.wall_ns())
        for _round in range(2):  # before and after the next routine digest signs it
            audit = verify(s)
            assert not audit.ok and audit.pruned == 0
            assert any("deleted" in f.detail for f in audit.findings if not f.ok)
            assert _chain_problems(s)  # (the links those records accounted for are missing)
            clock.advance(3600 * 10**9)
            write_digest(s, s.keys, clock.wall_ns())


def test_threads_asking_a_fresh_ring_for_its_key_all_get_the_one_key(tmp_path, monkeypatch):
    """Two cameras sealing at once in a new store both ask for the recording key: the one
    that finds the key being made (its private half written, the ring not yet) must wait
    for it, never take the half-made ring for a lost one and seal unsigned."""
    import threading

    from vstore.store import keys as keys_module

    written = keys_module.write_durably

    def slow_between_key_and_ring(fs, path, staging, data, **kw):
        written(fs, path, staging, data, **kw)
        if path.name.endswith(layout.PRIVATE_KEY_SUFFIX):
            time.sleep(0.2)  # the window in which the ring does not name the key yet

    monkeypatch.setattr(keys_module, "write_durably", slow_between_key_and_ring)
    ring = KeyRing(tmp_path / "keys", create=True)
    got: list[object] = []
    start = threading.Barrier(4)

    def ask(i: int) -> None:
        start.wait()
        time.sleep(0.05 * i)
        try:
            got.append(ring.signer("recording").key_id)
        except Exception as exc:  # noqa: BLE001 (the failure is what the test names)
            got.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(k, str) for k in got) and len(set(got)) == 1, got
    assert len(ring.all_keys()) == 1
