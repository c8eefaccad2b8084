"""The audit log under signed, chained digests: an untouched log verifies, and each kind of
change (a record edited, deleted, inserted or reordered; a digest edited, removed or
re-signed by another key) is found and named; sequence numbers have no gaps; the node signs
a digest when it stops."""

from __future__ import annotations

import base64
import json
import time

import pytest

from vstore.api import open_store
from vstore.base import layout
from vstore.cli.main import main
from vstore.evidence.audit_chain import verify, write_digest
from vstore.index.time_index import Batch
from vstore.store.audit_log import canonical_json
from vstore.store.keys import KeyRing


def _log(st, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        st.index.audit("view_timeline", f"user-{i}", {"camera": "cam", "n": i}, time.time_ns())


@pytest.fixture
def st(tmp_path):
    s = open_store(tmp_path / "store")
    ring = KeyRing.of_store(s)
    _log(s, 5)
    write_digest(s, ring, time.time_ns())
    write_digest(s, ring, time.time_ns())  # an hour without records: a digest all the same
    _log(s, 4, first=5)
    write_digest(s, ring, time.time_ns())
    _log(s, 2, first=9)  # after the last digest: not yet covered
    yield s
    s.close()


def _bad(rep) -> list[tuple[str, str]]:
    return [(f.where, f.detail) for f in rep.findings if not f.ok]


def test_an_untouched_log_verifies_and_says_what_is_not_yet_signed(st):
    rep = verify(st)
    assert rep.ok and (rep.records, rep.digests, rep.uncovered) == (12, 3, 2)
    # no gaps; the first record is the log's start, made when the store was created
    assert [r["seq"] for r in st.index.audit_records()] == list(range(1, 13))
    assert st.index.audit_records()[0]["action"] == "audit_start"


def _put(st, key: bytes, value: bytes | None) -> None:
    if value is None:
        b = Batch()
        b.delete(key)
        st.index.commit(b)
    else:
        st.index.put_sync(key, value)


def test_each_change_to_a_record_is_found_and_named(st):
    raw3 = st.index.get(layout.audit_key(3))
    raw4 = st.index.get(layout.audit_key(4))
    # Edited.
    _put(st, layout.audit_key(3), raw3.replace(b"user-1", b"user-X"))
    assert _bad(verify(st)) == [("record #3", "edited after its digest was signed")]
    # Reordered (two records swap places).
    _put(st, layout.audit_key(3), raw4)
    _put(st, layout.audit_key(4), raw3)
    found = dict(_bad(verify(st)))
    assert "reordered" in found["record #3"] and "reordered" in found["record #4"]
    # Deleted.
    _put(st, layout.audit_key(4), raw4)
    _put(st, layout.audit_key(3), None)
    assert _bad(verify(st)) == [("record #3", "deleted (its digest holds its hash)")]
    _put(st, layout.audit_key(3), raw3)
    assert verify(st).ok
    # Deleted after the last digest.
    raw11, raw12 = st.index.get(layout.audit_key(11)), st.index.get(layout.audit_key(12))
    _put(st, layout.audit_key(11), None)
    assert _bad(verify(st)) == [("record #11", "missing (after the last digest)")]
    _put(st, layout.audit_key(11), raw11)
    # The log's end cut off: the counter has given the number.
    _put(st, layout.audit_key(12), None)
    assert _bad(verify(st)) == [
        ("records #12..#12", "missing: numbers given, records gone (the log's end was cut off)")
    ]
    # One put in past the last number given.
    _put(st, layout.audit_key(12), raw12)
    _put(st, layout.audit_key(13), raw12.replace(b'"seq":12', b'"seq":13'))
    assert _bad(verify(st)) == [("record #13", "put in by hand: past the last number given (#12)")]


def test_a_wiped_log_and_a_removed_newest_digest_are_found(st):
    newest, _raw = st.index.audit_digests()[-1]
    _put(st, layout.audit_digest_key(newest), None)
    assert ("digest #3..#3", "missing: the newest digests were removed") in _bad(verify(st))
    for key, _v in st.index.scan(layout.AUDIT_PREFIX):
        _put(st, key, None)
    for key, _v in st.index.scan(layout.AUDIT_DIGEST_PREFIX):
        _put(st, key, None)
    assert ("audit log", "empty: it was wiped") in _bad(verify(st))
    _put(st, layout.NEXT_AUDIT_SEQ_KEY, None)
    _put(st, layout.NEXT_AUDIT_DIGEST_KEY, None)
    wiped = "empty, and its counter gone: a store's log begins when the store is first opened"
    assert _bad(verify(st)) == [("audit log", wiped + ", so this one was wiped")]


def test_each_change_to_a_digest_is_found_and_named(st, tmp_path):
    digests = dict(st.index.audit_digests())
    # Edited (a record's range or hash changed to cover an edit): the signature breaks.
    d2 = json.loads(digests[2])
    _put(st, layout.audit_digest_key(2), json.dumps({**d2, "to_ns": d2["to_ns"] + 1}).encode())
    bad = _bad(verify(st))
    assert any("signature does not verify" in d for _w, d in bad), bad
    _put(st, layout.audit_digest_key(2), digests[2])
    # Removed: the one after it no longer follows, and it is named as missing.
    _put(st, layout.audit_digest_key(2), None)
    details = [d for _w, d in _bad(verify(st))]
    assert "digest #2 is missing" in details and any("does not follow" in d for d in details)
    _put(st, layout.audit_digest_key(2), digests[2])
    # Re-signed with another key: not a known audit key.
    from cryptography.hazmat.primitives.asymmetric import ed25519

    forged = {k: v for k, v in json.loads(digests[3]).items() if k != "signature"}
    other = ed25519.Ed25519PrivateKey.generate()
    forged["key_id"] = "0" * 32
    sig = other.sign(canonical_json(forged))
    forged["signature"] = base64.b64encode(sig).decode()
    _put(st, layout.audit_digest_key(3), canonical_json(forged))
    assert any("not a known audit key" in d for _w, d in _bad(verify(st)))
    _put(st, layout.audit_digest_key(3), digests[3])
    assert verify(st).ok
    # Checked against a key given on the command line: another key fails every digest.
    pem = tmp_path / "other.pem"
    from cryptography.hazmat.primitives import serialization

    pem.write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    bad = _bad(verify(st, key_pem=pem.read_bytes()))
    assert len(bad) == 3 and all("not by the key given" in d for _w, d in bad)


def test_the_command_and_the_node(tmp_path, media, capsys):
    """`vstore audit verify` exits 10 on a log no digest covers and 0 once one does; a node
    signs a digest when it stops."""
    from tests.conftest import START_NS
    from tests.service_helpers import start_node, vstore
    from vstore.base.timebase import format_time

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("audit-node.ts", 2.0, codec="h264", gop_frames=25)
    vstore("import", str(src), "--camera", "cam", "--start", format_time(START_NS),
           "--store", str(store))  # fmt: skip
    vstore("hold", "add", "--camera", "cam", "--from", format_time(START_NS), "--to",
           format_time(START_NS + 10**9), "--reason", "case 1", "--store", str(store))  # fmt: skip
    assert main(["audit", "verify", "--store", str(store)]) == 10
    assert "no digest yet" in capsys.readouterr().out
    node = start_node(store)
    # A node signs a new log as it starts, not only at the hour: it verifies at once.
    out = vstore("audit", "verify", "--store", str(store), "--json", check=False)
    assert out.returncode == 0 and json.loads(out.stdout)["digests"] == 1, out.stdout
    assert node.stop() == 0
    assert main(["audit", "verify", "--store", str(store), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["digests"] == 2 and doc["uncovered"] == 0


@pytest.mark.s3
def test_digests_are_copied_under_object_lock_and_compared_with_their_copies(
    tmp_path, s3_env, lock_bucket
):
    from vstore.base.errors import TierError

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(f'[tier]\nurl = "s3://{lock_bucket}/site"\n')
    s = open_store(d)
    _log(s, 3)
    r1 = write_digest(s, s.keys, time.time_ns())
    _log(s, 2, first=3)
    r2 = write_digest(s, s.keys, time.time_ns())
    assert (r1.copies.copied, r2.copies.copied) == (1, 1) and r2.copies.locked
    tier = s.tier(f"s3://{lock_bucket}/site")
    key1 = layout.audit_digest_object_key(s.uuid, 1)
    assert tier.get(key1) == s.index.get(layout.audit_digest_key(1))
    assert tier.legal_hold(key1) is True
    with pytest.raises(TierError, match="legal hold"):
        tier.delete(key1)  # the object store itself keeps it
    rep = verify(s)
    assert rep.ok and any("2 digest copies match" in f.detail for f in rep.findings)
    # A digest replaced here (even validly signed, by someone holding the audit key) no
    # longer matches its locked copy; one removed here is still held there.
    raw2 = s.index.get(layout.audit_digest_key(2))
    s.index.put_sync(layout.audit_digest_key(2), raw2.replace(b'"seq":2', b'"seq":2 '))
    assert ("digest #2", "differs from its copy in s3://" + lock_bucket + "/site: one was "
            "replaced") in [(f.where, f.detail) for f in verify(s).findings]  # fmt: skip
    _put(s, layout.audit_digest_key(2), None)
    assert any(f.where == "digest #2" and "missing here; its copy" in f.detail
               for f in verify(s).findings)  # fmt: skip
    s.close()


def test_a_copy_deleted_from_a_bucket_without_object_lock_is_named(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    cold = tmp_path / "cold"
    (d / "vstore.toml").write_text(f'[tier]\nurl = "{cold}"\n')
    with open_store(d) as s:
        for _ in range(3):
            _log(s, 1)
            rep = write_digest(s, s.keys, time.time_ns())
            assert rep.copies.copied == 1 and not rep.copies.locked
        (cold / layout.audit_digest_object_key(s.uuid, 2)).unlink()
        bad = [(f.where, f.detail) for f in verify(s).findings if not f.ok]
        assert bad == [("digest #2", f"its copy in {cold} was deleted")]
        # The next digest copies what the object store lacks, #2 included.
        assert write_digest(s, s.keys, time.time_ns()).copies.copied == 2
        assert verify(s).ok


def test_config_edits_made_while_no_node_ran_are_recorded_when_one_starts(tmp_path):
    from vstore.service.node import Node

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 30\n")
    with open_store(d) as s:
        node = Node(s)
        node.start()
        node.stop()
        node = Node(s)  # the same file: nothing new to record
        node.start()
        node.stop()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 10\n")
    with open_store(d) as s:
        node = Node(s)
        node.start()
        node.reload("admin")
        node.stop()
        recs = [r for r in s.index.audit_records() if r["action"].startswith("config_")]
    assert [(r["action"], r["by"]) for r in recs] == [
        ("config_change", "serve"),
        ("config_change", "serve"),
        ("config_reload", "admin"),
    ]
    first, edited, reload = (r["detail"] for r in recs)
    assert first["previous_sha256"] is None
    assert edited["previous_sha256"] == first["sha256"] != edited["sha256"]
    assert reload["sha256"] == reload["previous_sha256"] == edited["sha256"]


def test_audit_prints_json_lines_filtered(st, capsys):
    root = str(st.root)
    st.close()
    assert main(["audit", "--store", root, "--jsonl", "--by", "user-3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["detail"]["n"] == 3
    assert main(["audit", "--store", root, "--jsonl", "--camera", "cam"]) == 0
    assert [json.loads(x)["seq"] for x in capsys.readouterr().out.splitlines()] == list(
        range(2, 13)
    )
