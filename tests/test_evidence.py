"""Evidence packages: what an export writes, that an untouched package verifies on a machine
with no store (and with OpenSSL alone), and that every kind of change to it is caught and
named (the tamper matrix); keys that rotate without orphaning old signatures; the first
frame an export shows is the snapshot's at its start."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
import zipfile

import av
import pytest

from tests.conftest import START_NS
from tools.camsim import read_frame_counter
from vstore.api import open_store
from vstore.base.errors import ConfigError, UsageError
from vstore.base.timebase import format_time
from vstore.cli.main import main
from vstore.evidence.package import ExportItem, export_package
from vstore.evidence.verify import verify_package
from vstore.export.snapshot import snapshot
from vstore.ingest.file_import import import_file
from vstore.store import audit_log
from vstore.store.garbage import delete_segment
from vstore.store.holds import add_hold
from vstore.store.keys import KeyRing, key_id_of

FRAME_NS = 40_000_000
HAVE_OPENSSL = shutil.which("openssl") is not None


def t(frame: float) -> int:
    return START_NS + int(frame * FRAME_NS)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, media_dir):
    """A store of two cameras (H.264 with B-frames and AAC; HEVC with B-frames) and a package
    of a clip of each, both starting and ending between frames."""
    from tests.conftest import make_media

    root = tmp_path_factory.mktemp("ev")
    st = open_store(root / "store")
    import_file(st, make_media(media_dir, "ev.mp4", 8.0, codec="h264", bframes=2, audio="aac",
                               gop_frames=25), "gate", START_NS)  # fmt: skip
    import_file(st, make_media(media_dir, "ev-hevc.mp4", 8.0, codec="hevc", bframes=2,
                               gop_frames=25), "yard", START_NS)  # fmt: skip
    items = [ExportItem("gate", t(37.5), t(112.25)), ExportItem("yard", t(13.2), t(61.7))]
    pkg = root / "case-7"
    export_package(st, items, pkg, case="C-7", purpose="burglary", by="det. alice")
    yield {"store": st, "root": root, "pkg": pkg, "items": items}
    st.close()


def _copy(recorded, tmp_path, as_zip: bool = False):
    if as_zip:
        out = tmp_path / "p.zip"
        with zipfile.ZipFile(out, "w") as z:
            for f in sorted(recorded["pkg"].rglob("*")):
                if f.is_file():
                    z.write(f, str(f.relative_to(recorded["pkg"])))
        return out
    out = tmp_path / "p"
    shutil.copytree(recorded["pkg"], out)
    return out


def _failed(rep) -> list[tuple[str, str]]:
    return [(c.check, c.detail) for c in rep.failures()]


def _export_pem(recorded, tmp_path):
    pem = tmp_path / "trusted.pem"
    pem.write_text(KeyRing.of_store(recorded["store"]).signer("export").info.public_pem)
    return pem


# --- what an export writes -------------------------------------------------------------------


def test_the_package_names_every_byte_and_verifies_with_openssl(recorded):
    pkg = recorded["pkg"]
    names = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file())
    assert names == ["README.txt", "clips/01-gate-20250117T010001Z.mp4",
                     "clips/02-yard-20250117T010000Z.mp4", "manifest.json",
                     "manifest.json.sig", "signer.pem"]  # fmt: skip
    doc = json.loads((pkg / "manifest.json").read_bytes())
    assert (doc["case"], doc["purpose"], doc["exported_by"]) == ("C-7", "burglary", "det. alice")
    assert doc["node"]["store_uuid"] == recorded["store"].uuid
    gate = doc["clips"][0]
    assert gate["requested"]["from_ns"] == t(37.5)
    assert gate["delivered"]["from_ns"] == t(37)  # the frame on screen at `from`
    src = gate["sources"][0]
    row = next(r for r in recorded["store"].index.segments(recorded["store"].camera_num("gate"))
               if r.segment_id == src["segment_id"])  # fmt: skip
    assert src["sha256"] == row.sha256 and src["chunks"][0]["crc32"]
    assert len((pkg / "manifest.json.sig").read_bytes()) == 64
    if HAVE_OPENSSL:  # an independent verifier: no vstore, no Python
        r = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signer.pem", "-rawin",
             "-in", "manifest.json", "-sigfile", "manifest.json.sig"],
            cwd=pkg, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert r.returncode == 0 and "Signature Verified Successfully" in r.stdout
    audit = [a for a in recorded["store"].index.audit_records() if a["action"] == "export"]
    assert audit and audit[-1]["detail"]["case"] == "C-7" and audit[-1]["by"] == "det. alice"
    # The export is among each of its cameras' records.
    for cam in ("gate", "yard"):
        found = audit_log.query(recorded["store"], camera=cam, actions=["export"])
        assert [r["seq"] for r in found] == [audit[-1]["seq"]]


@pytest.mark.parametrize("cam", ["gate", "yard"])
def test_the_first_frame_shown_is_the_snapshot_at_from(recorded, tmp_path, cam):
    doc = json.loads((recorded["pkg"] / "manifest.json").read_bytes())
    entry = next(c for c in doc["clips"] if c["camera"]["id"] == cam)
    item = next(i for i in recorded["items"] if i.camera == cam)
    snap = tmp_path / "s.png"
    snapshot(recorded["store"], cam, item.start_ns, snap)
    with av.open(str(snap)) as c:
        want_first = read_frame_counter(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    snapshot(recorded["store"], cam, item.end_ns - 1, snap)
    with av.open(str(snap)) as c:
        want_last = read_frame_counter(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    with av.open(str(recorded["pkg"] / entry["file"])) as c:  # FFmpeg's demuxer and decoder
        counters = [read_frame_counter(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert counters[0] == want_first and counters[-1] == want_last
    assert counters == list(range(want_first, want_last + 1))


def test_open_gop_exports_cover_the_range_at_both_ends(tmp_path, media):
    """Open GOPs (x265's default): frames 49 and 74 are leading frames, sent after keyframes
    50 and 75 and shown before them. An export from inside frame 49 to 75 shows 49 to 74,
    and the snapshots at its ends are those frames."""
    st = open_store(tmp_path / "store")
    with st:
        src = media("ev-open.ts", 4.0, codec="hevc", bframes=3, gop_frames=25, open_gop=True)
        import_file(st, src, "lobby", START_NS)
        item = ExportItem("lobby", t(49.3), t(75.0))
        export_package(st, [item], tmp_path / "pkg", case="C-8", purpose="test", by="det. bo")
        doc = json.loads((tmp_path / "pkg" / "manifest.json").read_bytes())
        with av.open(str(tmp_path / "pkg" / doc["clips"][0]["file"])) as c:
            counters = [read_frame_counter(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        assert counters == list(range(49, 75))
        for at, frame in ((item.start_ns, 49), (item.end_ns - 1, 74)):
            snapshot(st, "lobby", at, tmp_path / "s.png")
            with av.open(str(tmp_path / "s.png")) as c:
                assert (
                    read_frame_counter(next(c.decode(video=0)).to_ndarray(format="rgb24")) == frame
                )


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("as_zip", [False, True], ids=["directory", "zip"])
def test_an_untouched_package_verifies_with_no_store(recorded, tmp_path, as_zip):
    pkg = _copy(recorded, tmp_path, as_zip)
    rep = verify_package(pkg)
    assert rep.ok and not rep.key_given
    assert [c.check for c in rep.checks] == ["signature", "clip", "eff", "clip", "eff"]
    pem = _export_pem(recorded, tmp_path)
    rep = verify_package(pkg, key_pem=pem.read_bytes())
    assert rep.ok and rep.key_given
    # The command, on a "machine" with no store: exit 0.
    assert main(["verify", str(pkg), "--key", str(pem)]) == 0


def test_with_the_store_each_clip_is_built_again_from_its_chunks(recorded, tmp_path):
    rep = verify_package(recorded["pkg"], store=recorded["store"])
    assert rep.ok
    assert [c.detail.endswith("the same bytes") for c in rep.checks if c.check == "source"] == [
        True,
        True,
    ]


def _flip(path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(data)


def test_the_tamper_matrix(recorded, tmp_path):
    """Each change to a package fails verification, and the failure names it."""
    pem = _export_pem(recorded, tmp_path).read_bytes()
    clip = "clips/01-gate-20250117T010001Z.mp4"

    def tampered(name: str, change) -> list[tuple[str, str]]:
        pkg = tmp_path / name
        shutil.copytree(recorded["pkg"], pkg)
        change(pkg)
        rep = verify_package(pkg, key_pem=pem)
        assert not rep.ok, name
        return _failed(rep)

    # A bit flipped in a clip's samples.
    f = tampered("bit", lambda p: _flip(p / clip, (p / clip).stat().st_size // 2))
    assert [c for c, _ in f] == ["clip", "eff"] and "changed in place" in f[0][1]
    assert "changed after it was signed" in f[1][1]

    # A clip re-muxed by another tool (every sample kept).
    def remux(p, keep=None):
        src, out = p / clip, p / "x.mp4"
        with av.open(str(src)) as i, av.open(str(out), "w") as o:
            ins = i.streams.video[0]
            os_ = o.add_stream_from_template(ins)
            for n, pk in enumerate(i.demux(ins)):
                if pk.dts is None or (keep is not None and n >= keep):
                    continue
                pk.stream = os_
                o.mux(pk)
        out.replace(src)

    f = tampered("remux", remux)
    assert [c for c, _ in f] == ["clip", "eff"] and "re-muxed" in f[0][1], f
    assert f[1][1] == "no ONVIF export (oeff) signature in the MP4"
    f = tampered("trim", lambda p: remux(p, keep=30))
    assert [c for c, _ in f] == ["clip", "eff"] and "trimmed" in f[0][1], f

    # The manifest edited (one character), or its signature.
    def edit(p):
        m = p / "manifest.json"
        m.write_bytes(m.read_bytes().replace(b'"C-7"', b'"C-8"'))

    f = tampered("manifest", edit)
    assert f == [("signature", "does not verify: the manifest or its signature was changed")]
    f = tampered("sig", lambda p: _flip(p / "manifest.json.sig", 5))
    assert [c for c, _ in f] == ["signature"]

    # A clip's hash edited in the manifest to match a swapped clip: the signature breaks.
    def swap(p):
        _flip(p / clip, 5000)
        from vstore.evidence.package_format import sha256_file

        m = p / "manifest.json"
        doc = json.loads(m.read_bytes())
        old = doc["clips"][0]["sha256"]
        m.write_bytes(m.read_bytes().replace(old.encode(), sha256_file(p / clip).encode()))

    f = tampered("swap", swap)
    assert [c for c, _ in f] == ["signature", "eff"]

    # A file added, a clip removed.
    f = tampered("added", lambda p: (p / "clips" / "extra.mp4").write_bytes(b"x"))
    assert f == [("file", "not in the manifest: added after export")]
    f = tampered("removed", lambda p: (p / clip).unlink())
    assert f == [("clip", "missing from the package")]

    # The README (it restates the case and the hashes: the manifest signs its hash), and the
    # signer's key when a key is given.
    f = tampered("readme", lambda p: (p / "README.txt").write_text("Case: C-8\n"))
    assert f == [("file", "changed since export: not the one the manifest signs")]
    f = tampered("no-readme", lambda p: (p / "README.txt").unlink())
    assert f == [("file", "missing")]
    f = tampered("no-signer", lambda p: (p / "signer.pem").unlink())
    assert f == [("file", "missing from the package")]

    # A ZIP holding a second entry of a clip's name, put first: readers may take either.
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (zipfile warns of the duplicate it is told to write)
        out.writestr(clip, b"not the clip")
        for p in sorted(recorded["pkg"].rglob("*")):
            if p.is_file():
                out.write(p, str(p.relative_to(recorded["pkg"])))
    rep = verify_package(z, key_pem=pem)
    assert not rep.ok and ("file", "in the ZIP more than once: readers may show either copy") in (
        _failed(rep)
    )


def test_bytes_changed_inside_a_zip_are_named_with_exit_10(recorded, tmp_path, capsys):
    """A byte flipped inside a ZIP, in a stored clip or a deflated manifest or README: the
    entry no longer reads back (its CRC-32, its deflate stream). Each is a named failure and
    the command's exit 10, never a traceback."""
    clip = "clips/01-gate-20250117T010001Z.mp4"
    src = _copy(recorded, tmp_path / "src", as_zip=False)
    for name, compress in ((clip, zipfile.ZIP_STORED), ("manifest.json", zipfile.ZIP_DEFLATED),
                           ("README.txt", zipfile.ZIP_DEFLATED)):  # fmt: skip
        z = tmp_path / f"{name.replace('/', '_')}.zip"
        with zipfile.ZipFile(z, "w") as out:
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    out.write(f, str(f.relative_to(src)), compress_type=compress)
        with zipfile.ZipFile(z) as zz:
            info = zz.getinfo(name)
        # (the entry's data: after its local header, name and extra field)
        raw = bytearray(z.read_bytes())
        at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        raw[at + min(info.compress_size // 2, 40)] ^= 0x10
        z.write_bytes(raw)
        rep = verify_package(z)
        assert not rep.ok and any(
            c.target == name and "changed inside the ZIP since export" in c.detail
            for c in rep.failures()
        ), _failed(rep)
        assert main(["verify", str(z), "--json"]) == 10
        doc = json.loads(capsys.readouterr().out)
        assert doc["ok"] is False
    # Its central directory changed: an entry's flags (bit 5), method or version needed, or
    # the directory's offset: zipfile refuses the entry (or the file) in its own ways.
    (tmp_path / "cd").mkdir()
    z = _copy(recorded, tmp_path / "cd", as_zip=True)
    data = z.read_bytes()
    cd, eocd = data.find(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")
    for at, bits in ((cd + 8, 0x20), (cd + 10, 0xFF), (cd + 6, 0xFF), (eocd + 19, 0xFF)):
        raw = bytearray(data)
        raw[at] ^= bits
        z.write_bytes(raw)
        assert main(["verify", str(z), "--json"]) == 10, at - cd
        assert json.loads(capsys.readouterr().out)["ok"] is False


def test_a_package_signed_by_another_key_is_named(recorded, tmp_path):
    """Another node's key re-signed an edited manifest and put its own signer.pem in: valid
    under its own key, refused under the key the verifier trusts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    trusted = _export_pem(recorded, tmp_path).read_bytes()
    pkg = tmp_path / "forged"
    shutil.copytree(recorded["pkg"], pkg)
    other = ed25519.Ed25519PrivateKey.generate()
    m = pkg / "manifest.json"
    old_id = json.loads(m.read_bytes())["signature"]["key_id"].encode()
    forged = m.read_bytes().replace(b'"C-7"', b'"C-9"')
    m.write_bytes(forged.replace(old_id, key_id_of(other.public_key()).encode()))
    (pkg / "manifest.json.sig").write_bytes(other.sign(m.read_bytes()))
    (pkg / "signer.pem").write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert verify_package(pkg).ok  # (integrity only: it is what its own signer signed)
    rep = verify_package(pkg, key_pem=trusted)
    assert not rep.ok
    (check, detail), *_ = _failed(rep)
    assert check == "signature" and "signed by a key not the one given" in detail
    assert main(["verify", str(pkg), "--key", str(tmp_path / "trusted.pem")]) == 10


def test_re_derivation_names_footage_deleted_since(tmp_path, media):
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-del.ts", 4.0, codec="h264", gop_frames=25), "cam", START_NS)
    pkg = tmp_path / "p.zip"
    export_package(st, [ExportItem("cam", t(10), t(60))], pkg, case="C", purpose="p", by="b")
    row = next(iter(st.index.segments(st.camera_num("cam"))))
    delete_segment(st, row, "cam", "test", {})
    rep = verify_package(pkg, store=st)
    st.close()
    # Footage deleted since cannot be built again: that check is not made, which is no
    # failure of the package (it still verifies, and says what it could not check).
    assert _failed(rep) == [] and rep.ok
    (unmade,) = rep.unmade()
    assert unmade.check == "source" and "no longer in the store" in unmade.detail
    assert verify_package(pkg).ok
    # Checked against another store: it says so.
    other = open_store(tmp_path / "other")
    import_file(other, media("ev-del.ts", 4.0, codec="h264", gop_frames=25), "x", START_NS)
    (unmade,) = verify_package(pkg, store=other).unmade()
    other.close()
    assert "the package comes from store" in unmade.detail


def test_re_derivation_names_a_damaged_chunk_and_still_reports_the_rest(tmp_path, media):
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-dmg.ts", 4.0, codec="h264", gop_frames=25), "cam", START_NS)
    pkg = tmp_path / "p.zip"
    export_package(st, [ExportItem("cam", t(10), t(60))], pkg, case="C", purpose="p", by="b")
    c = st.index.chunks_from_keyframe(st.camera_num("cam"), t(30), t(31), 0)[0]
    row = next(iter(st.index.segments(st.camera_num("cam"))))
    _flip(st.root / row.path, c.offset + c.length // 2)
    rep = verify_package(pkg, store=st)
    st.close()
    failed = _failed(rep)
    assert [w for w, _ in failed] == ["source"] and "is damaged" in failed[0][1]
    assert len(rep.checks) > 1 and all(ch.ok for ch in rep.checks if ch.check != "source")


def test_an_export_that_disclosed_damage_verifies_against_the_unchanged_store(tmp_path, media):
    """A chunk damaged when the export was made is left out and listed in its manifest:
    `verify --store` built the clip again strictly and called the untouched package's
    sources replaced (a false accusation of tampering)."""
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-dmg.ts", 4.0, codec="h264", gop_frames=25), "cam", START_NS)
    c = st.index.chunks_from_keyframe(st.camera_num("cam"), t(30), t(31), 0)[0]
    row = next(iter(st.index.segments(st.camera_num("cam"))))
    _flip(st.root / row.path, c.offset + c.length // 2)
    pkg = tmp_path / "p.zip"
    export_package(st, [ExportItem("cam", t(10), t(90))], pkg, case="C", purpose="p", by="b")
    rep = verify_package(pkg, store=st)
    st.close()
    assert rep.ok, _failed(rep)
    assert json.loads(zipfile.ZipFile(pkg).read("manifest.json"))["clips"][0]["damaged"]


@pytest.mark.parametrize("how", ["trimmed", "cut short"])
def test_an_export_verifies_against_its_footage_kept_in_a_copy(tmp_path, media, how):
    """Footage a trim (retention keeping held chunks) or a file cut short written again
    whole moved into a copy, byte for byte: `verify --store` said the chunks were not the
    ones the manifest names. The copy's header names the segment and chunks it keeps."""
    from vstore.lifecycle.check import check_store
    from vstore.lifecycle.retention import run_retention
    from vstore.lifecycle.retention_plan import DiskUsage
    from vstore.lifecycle.tiering import run_tiering
    from vstore.tier import LocalTier

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "vstore.toml").write_text("[store]\nsegment_duration_s = 4\n")
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-trim.ts", 12.0, codec="h264", gop_frames=25), "cam", START_NS)
    pkg = tmp_path / "p.zip"
    export_package(st, [ExportItem("cam", t(105), t(130))], pkg, case="C", purpose="p", by="b")
    if how == "trimmed":
        add_hold(st, "cam", t(105), t(130), "case 1", "det. a")
        res = run_retention(st, max_age_ns=10**9, disk=DiskUsage(10**12, 10**12))[1]
        assert res.trimmed_segments == 1
    else:
        row = sorted(st.index.segments(st.camera_num("cam")), key=lambda r: r.start_ns)[1]
        path = st.root / row.path
        path.write_bytes(path.read_bytes()[: row.size_bytes * 8 // 10])
        assert check_store(st, repair=True).ok
        assert run_tiering(st, LocalTier(tmp_path / "cold"), 10**9).rewritten == [row.path]
    rep = verify_package(pkg, store=st)
    st.close()
    assert rep.ok, _failed(rep)
    [src] = [c for c in rep.checks if c.check == "source"]
    assert "trimmed copy" in src.detail
    if how == "trimmed":
        # The chunk before, read for its sound, was in a segment retention deleted whole:
        # the clip cannot be made again byte for byte, and that is no failure of it.
        assert src.ok is None and "beside its range" in src.detail
    else:
        assert src.ok is True and "the same bytes" in src.detail


def test_export_says_where_its_clips_have_gaps(tmp_path, media, capsys):
    """The investigator's output of `vstore export` named each clip's range as if it were
    continuous: its gaps were in the manifest alone. They are printed, and in README.txt."""
    src = media("ev-gap.ts", 2.0, codec="h264", gop_frames=25)
    store = tmp_path / "store"
    for at in (0, 10):
        import_file_args = ["import", str(src), "--camera", "cam", "--store", str(store)]
        assert main([*import_file_args, "--start", format_time(START_NS + at * 10**9)]) == 0
    out = tmp_path / "p.zip"
    capsys.readouterr()
    assert main(["export", "--store", str(store), "--camera", "cam", "--from",
                 format_time(START_NS), "--to", format_time(START_NS + 15 * 10**9), "--case",
                 "C", "--purpose", "p", "--by", "b", "-o", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert f"GAP {format_time(START_NS + 2 * 10**9)} .. {format_time(START_NS + 10**10)}" in text
    assert "--key" in text
    readme = zipfile.ZipFile(out).read("README.txt").decode()
    assert readme.count("GAP (no footage recorded)") == 2


def test_an_export_that_would_take_the_disk_below_the_watermark_is_refused(tmp_path, media):
    """Packages are copies of footage on the node's disk: many of them took it below
    min_free, and the space keeper deleted other agencies' oldest footage to make room.
    An export that would leave less than the watermark free is refused before a byte."""
    from vstore.base.errors import StorageFull
    from vstore.store.disk import DiskUsage

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text('[retention]\nmin_free = "100MB"\n')
    free = {"bytes": 10**9}
    st = open_store(d, disk_usage=lambda: DiskUsage(10**10, free["bytes"]))
    import_file(st, media("ev-room.ts", 4.0, codec="h264", gop_frames=25), "cam", START_NS)
    item = [ExportItem("cam", t(0), t(90))]
    export_package(st, item, tmp_path / "a.zip", case="C", purpose="p", by="b")
    free["bytes"] = 100 * 10**6 + 1000  # (the watermark, and less than a package more)
    with pytest.raises(StorageFull, match="kept free for recording"):
        export_package(st, item, tmp_path / "b.zip", case="C", purpose="p", by="b")
    assert not (tmp_path / "b.zip").exists()
    # Exports written at once (a node's jobs) each see the same free space: each takes its
    # share while it writes, so the second is refused while the first holds the room.
    from vstore.evidence import package

    free["bytes"] = 10**9
    with (
        package._room(st, tmp_path / "first.zip", 10**9 - 100 * 10**6 - 1000),
        pytest.raises(StorageFull, match="besides packages being written"),
    ):
        export_package(st, item, tmp_path / "c.zip", case="C", purpose="p", by="b")
    export_package(st, item, tmp_path / "c.zip", case="C", purpose="p", by="b")
    st.close()


# --- keys ----------------------------------------------------------------------------------


def test_keys_rotate_and_old_signatures_still_verify(tmp_path, media):
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-rot.ts", 2.0, codec="h264", gop_frames=25), "cam", START_NS)
    ring = KeyRing.of_store(st)
    old = ring.signer("export").info
    keys_dir = tmp_path / "store" / "keys"
    assert oct(keys_dir.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in keys_dir.iterdir())
    a = tmp_path / "a"
    export_package(st, [ExportItem("cam", t(0), t(20))], a, case="C", purpose="p", by="b")
    new = ring.rotate("export")
    b = tmp_path / "b"
    export_package(st, [ExportItem("cam", t(0), t(20))], b, case="C", purpose="p", by="b",
                   keys=ring)  # fmt: skip
    st.close()
    states = {k.key_id: k.state for k in ring.all_keys() if k.purpose == "export"}
    assert states == {old.key_id: "retired", new.key_id: "current"}
    assert not (keys_dir / f"{old.key_id}.key.pem").exists()  # the private half is gone
    old_pem, new_pem = old.public_pem.encode(), new.public_pem.encode()
    assert verify_package(a, key_pem=old_pem).ok and not verify_package(a, key_pem=new_pem).ok
    assert verify_package(b, key_pem=new_pem).ok
    assert json.loads((b / "manifest.json").read_bytes())["signature"]["key_id"] == new.key_id


def test_a_missing_configured_key_is_a_clear_error_and_nothing_is_written(tmp_path, media):
    store = tmp_path / "store"
    st = open_store(store)
    import_file(st, media("ev-key.ts", 2.0, codec="h264", gop_frames=25), "cam", START_NS)
    st.close()
    (store / "vstore.toml").write_text(f'[keys]\ndir = "{tmp_path / "vault"}"\n')
    st = open_store(store)
    with pytest.raises(ConfigError, match="no export key in"):
        export_package(st, [ExportItem("cam", t(0), t(20))], tmp_path / "p", case="C",
                       purpose="p", by="b")  # fmt: skip
    st.close()
    assert not (tmp_path / "p").exists() and not (tmp_path / "vault").exists()
    rng = ["--camera", "cam", "--from", "2025-01-17T01:00:00Z", "--to", "2025-01-17T01:00:01Z"]
    args = ["export", "--store", str(store), *rng, "--case", "C", "--purpose", "p", "--by", "b"]
    assert main([*args, "-o", str(tmp_path / "p.zip")]) == 2
    assert not (tmp_path / "p.zip").exists()


def test_export_refuses_what_it_must(recorded, tmp_path):
    st = recorded["store"]
    item = [ExportItem("gate", t(0), t(10))]
    with pytest.raises(UsageError, match="never overwritten"):
        export_package(st, item, recorded["pkg"], case="C", purpose="p", by="b")
    with pytest.raises(UsageError, match="needs a purpose"):
        export_package(st, item, tmp_path / "x", case="C", purpose=" ", by="b")
    assert not (tmp_path / "x").exists()
    assert main(["verify", str(tmp_path / "nothing")]) == 3  # (not found)
    # Free text is one line: a case or purpose cannot pass for another audit line or a
    # README section, nor drive the terminal that shows it.
    for bad in ("K-1\n2026-12-04T16:40:00.000+00:00  #99  hold_release", "p\x1b[2Jcleared"):
        with pytest.raises(UsageError, match="control character"):
            export_package(st, item, tmp_path / "y", case=bad, purpose="p", by="b")
    with pytest.raises(UsageError, match="control character"):
        add_hold(st, "gate", t(0), t(10), "why\nnot", "b")
    for out in ("-", ""):  # a package is several files: never standard output
        with pytest.raises(UsageError, match="give the package's path"):
            export_package(st, item, out, case="C", purpose="p", by="b")
    # A ZIP cut short is a package that fails, not a usage error.
    z = tmp_path / "cut.zip"
    shutil.make_archive(str(z.with_suffix("")), "zip", recorded["pkg"])
    z.write_bytes(z.read_bytes()[:-100])
    assert main(["verify", str(z)]) == 10


def test_what_a_zip_holds_outside_its_entries_fails_the_package(recorded, tmp_path):
    """Bytes before, between or after a ZIP's entries, or an archive comment, are signed by
    nothing: a comment a ZIP reader shows, junk, or a whole second package hidden before
    the one that verifies (two ZIPs joined read as the last) were accepted. A re-zipped
    package (entries the same, laid out by another tool) still verifies."""
    z = tmp_path / "p.zip"
    shutil.make_archive(str(z.with_suffix("")), "zip", recorded["pkg"])
    raw = z.read_bytes()
    assert verify_package(z).ok
    cases = {
        "before": b"JUNK" * 10 + raw,
        "after": raw + b"JUNK",
        "joined": raw + raw,
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name}.zip"
        bad.write_bytes(data)
        rep = verify_package(bad)
        assert not rep.ok and any("outside its entries" in c.detail or "after its end"
                                  in c.detail for c in rep.checks if not c.ok), name  # fmt: skip
    commented = tmp_path / "comment.zip"
    shutil.copy(z, commented)
    with zipfile.ZipFile(commented, "a") as zf:
        zf.comment = b"this footage shows the defendant"
    assert main(["verify", str(commented)]) == 10


def test_an_entry_s_comment_or_unknown_header_data_fails_the_package(recorded, tmp_path):
    """Per-entry comments (shown by ZIP readers) and extra fields in an entry's headers (up
    to 64 KB each) are signed by nothing either."""
    import struct

    src = tmp_path / "p.zip"
    shutil.make_archive(str(src.with_suffix("")), "zip", recorded["pkg"])
    for how in ("comment", "extra"):
        out = tmp_path / f"{how}.zip"
        with zipfile.ZipFile(src) as zi, zipfile.ZipFile(out, "w") as zo:
            for k, info in enumerate(zi.infolist()):
                data = zi.read(info)
                if k == 1 and how == "comment":
                    info.comment = b"edited: see the other tape"
                elif k == 1:
                    info.extra = struct.pack("<HH", 0xCAFE, 600) + b"X" * 600
                zo.writestr(info, data)
        rep = verify_package(out)
        assert not rep.ok and any("outside" in c.detail or "no entry does" in c.detail
                                  for c in rep.checks if not c.ok), how  # fmt: skip


def test_a_package_s_entries_that_inflate_past_any_vstore_writes_are_refused(tmp_path):
    """A small ZIP whose manifest inflates to gigabytes took the verifier's memory (a
    MemoryError traceback)."""
    z = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("manifest.json", "w", force_zip64=True) as f,
    ):
        for _ in range(65):
            f.write(b" " * (1 << 20))
    rep = verify_package(z)
    assert not rep.ok and "larger than 64 MiB" in rep.checks[0].detail
    assert main(["verify", str(z)]) == 10


def test_a_package_whose_own_signer_pem_is_damaged_fails_it(recorded, tmp_path):
    d = tmp_path / "pkg"
    shutil.copytree(recorded["pkg"], d)
    (d / "signer.pem").write_text("garbage")
    rep = verify_package(d)
    assert not rep.ok
    assert any(c.target == "signer.pem" and "changed since export" in c.detail for c in rep.checks)
    assert main(["verify", str(d)]) == 10


def test_an_export_killed_after_it_signed_leaves_no_package_the_audit_log_does_not_name(
    recorded, tmp_path, monkeypatch
):
    """An export killed after it signed its package (whole, in PATH.partial.tmp, or renamed
    into place before its record) left a package `vstore verify` accepts and no audit
    record. It is audited (export_begun: who, case, where, what) before a byte is written."""
    from vstore.evidence import package

    st = recorded["store"]
    out = tmp_path / "killed"
    seen = []

    def killed(*_a, **_k):  # (the process dies here: nothing after this runs)
        seen.append(st.index.audit_records()[-1])
        raise SystemExit(137)

    monkeypatch.setattr(package, "_fsync_tree", killed)
    with pytest.raises(SystemExit):
        export_package(st, [ExportItem("gate", t(0), t(10))], out, case="C-9", purpose="p",
                       by="det. bo")  # fmt: skip
    (rec,) = seen
    assert rec["action"] == "export_begun" and rec["by"] == "det. bo"
    assert rec["detail"]["package"] == str(out) and rec["detail"]["case"] == "C-9"
    assert rec["detail"]["clips"][0]["camera"] == "gate"


def test_keys_are_given_one_at_a_time_and_retired_ones_on_request(recorded, tmp_path, capsys):
    root = str(recorded["store"].root)
    assert main(["key", "list", "--store", root, "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    export = next(k for k in keys if k["purpose"] == "export")
    assert main(["key", "public", "--store", root, "--key-id", export["key_id"]]) == 0
    pem = capsys.readouterr().out
    assert pem == export["public_pem"]
    assert main(["key", "public", "--store", root, "--key-id", "nope"]) == 3
    both = tmp_path / "both.pem"
    both.write_text(pem + pem)
    assert main(["verify", str(recorded["pkg"]), "--key", str(both)]) == 2
    assert "holds 2 PEM blocks" in capsys.readouterr().err


def test_the_eff_signature_verifies_by_an_independent_reading(recorded):
    """The ONVIF Export File Format signature read here from the spec's box layout, not
    through vstore: the file-level meta box last, ipro/sinf with scheme oeff, the whole file
    hashed with the sibo bytes zeroed, RSASSA-PSS SHA-256, MGF1-SHA-256, salt 20."""
    import struct

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def boxes(data, start, end):
        while start < end:
            size, kind = struct.unpack_from(">I4s", data, start)
            if size == 1:  # a 64-bit size follows
                size = struct.unpack_from(">Q", data, start + 8)[0]
            yield kind, start, start + size
            start += size

    doc = json.loads((recorded["pkg"] / "manifest.json").read_bytes())
    for entry in doc["clips"]:
        data = (recorded["pkg"] / entry["file"]).read_bytes()
        tops = list(boxes(data, 0, len(data)))
        assert [k for k, _, _ in tops] == [b"ftyp", b"moov", b"mdat", b"meta"]
        _, m0, m1 = tops[-1]
        kids = {k: (a, b) for k, a, b in boxes(data, m0 + 12, m1)}  # meta is a full box
        assert list(kids) == [b"hdlr", b"suep", b"ipro"]
        i0, i1 = kids[b"ipro"]
        assert struct.unpack_from(">H", data, i0 + 12)[0] == 1  # protection_count
        ((kind, s0, s1),) = boxes(data, i0 + 14, i1)
        assert kind == b"sinf"
        sinf = {k: (a, b) for k, a, b in boxes(data, s0 + 8, s1)}
        h0, _ = sinf[b"schm"]
        assert data[h0 + 12 : h0 + 20] == b"oeff" + bytes.fromhex("00010000")
        c0, c1 = sinf[b"schi"]
        schi = {k: (a, b) for k, a, b in boxes(data, c0 + 8, c1)}
        sig = data[schi[b"sibo"][0] + 8 : schi[b"sibo"][1]]
        cert = x509.load_der_x509_certificate(data[schi[b"cert"][0] + 8 : schi[b"cert"][1]])
        signed = bytearray(data)
        signed[schi[b"sibo"][0] + 8 : schi[b"sibo"][1]] = bytes(len(sig))
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20)
        cert.public_key().verify(sig, bytes(signed), pss, hashes.SHA256())  # raises if not
        assert cert.public_key().key_size >= 2048 and len(sig) == cert.public_key().key_size // 8
        u0, u1 = kids[b"suep"]
        assert data[u0 + 8] == 1  # version 1
        assert b"det. alice\x00" in data[u0:u1]  # ExportOperator
        signed[len(data) // 2] ^= 1  # and a changed byte breaks it
        from cryptography.exceptions import InvalidSignature

        with pytest.raises(InvalidSignature):
            cert.public_key().verify(sig, bytes(signed), pss, hashes.SHA256())


def test_a_lone_clip_verifies_by_its_eff_signature(recorded, tmp_path):
    clip = next((recorded["pkg"] / "clips").iterdir())
    rep = verify_package(clip)
    assert rep.ok and [c.check for c in rep.checks] == ["eff"]
    cert = tmp_path / "eff.pem"
    cert.write_text(KeyRing.of_store(recorded["store"]).signer("eff").info.cert_pem)
    assert main(["verify", str(clip), "--cert", str(cert)]) == 0
    other = tmp_path / "other.pem"
    other.write_text(KeyRing.of_store(recorded["store"]).signer("export").info.public_pem)
    assert not verify_package(clip, key_pem=other.read_bytes()).ok  # not the key that signed
    bad = tmp_path / "bad.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 3] ^= 0x10
    bad.write_bytes(data)
    assert main(["verify", str(bad)]) == 10
    (tmp_path / "x.txt").write_text("hello")
    assert main(["verify", str(tmp_path / "x.txt")]) == 2


def test_a_box_put_inside_the_signature_s_meta_after_it_is_not_signed(recorded, tmp_path):
    """Each EFF signature signs its meta box up to the end of its own sinf: a box put after
    the last one (a title, a start time a player shows) was accepted as signed."""
    import struct

    raw = next((recorded["pkg"] / "clips").iterdir()).read_bytes()
    at, meta_at = 0, None
    while at < len(raw):
        size, kind = struct.unpack(">I4s", raw[at : at + 8])
        size = struct.unpack(">Q", raw[at + 8 : at + 16])[0] if size == 1 else size
        meta_at = at if kind == b"meta" else meta_at
        at += size
    assert meta_at is not None
    text = b"\xa9nam suspect enters at 03:17"
    meta = bytearray(raw[meta_at:]) + struct.pack(">I4s", 8 + len(text), b"udta") + text
    struct.pack_into(">I", meta, 0, len(meta))
    forged = tmp_path / "forged.mp4"
    forged.write_bytes(raw[:meta_at] + bytes(meta))
    rep = verify_package(forged)
    assert not rep.ok
    assert any("not signed" in c.detail for c in rep.checks if not c.ok)


def test_export_goes_through_the_node_that_holds_the_store(tmp_path, media):
    """`vstore export` while `vstore serve` holds the store: the job runs in the node (which
    audits it) and the package verifies."""
    from tests.service_helpers import start_node, vstore

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    src = media("ev-node.ts", 2.0, codec="h264", gop_frames=25)
    vstore("import", str(src), "--camera", "cam", "--start", "2025-01-17T01:00:00Z",
           "--store", str(store))  # fmt: skip
    node = start_node(store)
    try:
        out = tmp_path / "p.zip"
        r = vstore("export", "--store", str(store), "--camera", "cam",
                   "--from", "2025-01-17T01:00:00.5Z", "--to", "2025-01-17T01:00:01.5Z",
                   "--case", "C-1", "--purpose", "p", "--by", "bob", "-o", str(out), "--json")  # fmt: skip
        doc = json.loads(r.stdout)
        assert doc["container"] == "zip" and out.exists()
        pem = tmp_path / "k.pem"
        pem.write_text(vstore("key", "public", "--store", str(store)).stdout)
        assert vstore("verify", str(out), "--key", str(pem)).returncode == 0
        out = vstore("audit", "--store", str(store), "--action", "export", "--by", "bob", "--json")
        records = json.loads(out.stdout)["records"]
        assert [(a["action"], a["by"]) for a in records] == [("export", "bob")]
        assert records[0]["detail"]["case"] == "C-1"
    finally:
        assert node.stop() == 0


def test_a_file_hashed_while_it_is_written_is_hashed_whole(tmp_path):
    """The export's follower reads behind a writer that writes in bursts, pauses and
    creates the file late: the hash is the finished file's."""
    import hashlib
    import random
    import threading
    import time as _time

    from vstore.evidence.file_hasher import FollowingHasher

    path = tmp_path / "f.bin"
    follower = FollowingHasher(path)
    rnd = random.Random(5)
    blocks = [rnd.randbytes(rnd.randrange(1, 3_000_000)) for _ in range(12)]

    def write() -> None:
        _time.sleep(0.05)
        with open(path, "wb") as f:
            for b in blocks:
                f.write(b)
                f.flush()
                follower.written()
                _time.sleep(rnd.random() * 0.01)

    t = threading.Thread(target=write)
    t.start()
    t.join()
    assert follower.finish().hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()


def test_sound_an_mp4_cannot_hold_is_named_as_left_out(tmp_path, media):
    """G.711 has no place in an MP4: an export used to leave it out saying nothing (the
    manifest's only trace an audio count of 0, its README promising the recorded audio).
    The manifest, the README and the report now name it."""
    st = open_store(tmp_path / "store")
    import_file(st, media("ev-ulaw.mov", 3.0, audio="pcm_mulaw", gop_frames=25), "cam",
                START_NS)  # fmt: skip
    pkg = tmp_path / "p"
    report = export_package(st, [ExportItem("cam", t(0), t(50))], pkg, case="C", purpose="p",
                            by="b")  # fmt: skip
    st.close()
    doc = json.loads((pkg / "manifest.json").read_text())
    (note,) = doc["clips"][0]["left_out"]
    assert "pcm_mulaw" in note and report.clips[0]["left_out"] == [note]
    assert f"NOT IN THE CLIP: {note}" in (pkg / "README.txt").read_text()
    assert verify_package(pkg).ok


def test_packages_built_over_the_api_expire_after_keep_exports_s(tmp_path):
    """Packages a node built stayed in STORE/exports for ever, copies of footage taking the
    disk recording needs. Past `[service] keep_exports_s` the node removes them, audited,
    and keeps their record, marked, to tell the asker."""
    import os
    import time

    from vstore.service.exports_api import expire_packages

    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[service]\nkeep_exports_s = 3600\n")
    st = open_store(d)
    lay = st.layout
    lay.exports_dir.mkdir(parents=True)
    now = time.time_ns()
    for export_id, age_s in (("00000000000000aa", 7200), ("00000000000000bb", 60)):
        lay.export_path(export_id).write_bytes(b"PK")
        lay.export_record_path(export_id).write_text(json.dumps({"id": export_id, "case": "C"}))
        at = now - age_s * 10**9
        os.utime(lay.export_path(export_id), ns=(at, at))
    assert expire_packages(st, now) == 1
    assert not lay.export_path("00000000000000aa").exists()
    assert lay.export_path("00000000000000bb").exists()
    rec = json.loads(lay.export_record_path("00000000000000aa").read_text())
    assert rec["expired"] and rec["case"] == "C"
    [audited] = [r for r in st.index.audit_records() if r["action"] == "export_expired"]
    assert audited["detail"]["export"] == "00000000000000aa"
    assert expire_packages(st, now) == 0
    st.close()
