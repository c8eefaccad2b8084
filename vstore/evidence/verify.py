"""Offline verification of an evidence package (a directory or a ZIP) or of a lone clip: the
manifest's signature, each clip's hash and size against the manifest, nothing added or
missing; and, given the store, that each clip is exactly what its recorded chunks make.

Every check is reported, passed or failed, and named, so a failure says what was changed:
a clip, the manifest, the signature, or the key that signed it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from vstore._version import __version__
from vstore.base.errors import CorruptSegment, NotFound, UsageError, VstoreError
from vstore.evidence.eff import Signature, cert_key_id, hash_and_signatures, read_signatures
from vstore.evidence.package_format import (
    FORMAT,
    MANIFEST,
    README,
    SIGNATURE,
    SIGNER,
    sha256_stream,
)
from vstore.store.keys import key_id_of, load_public_pem, verify_ed25519


class Check(NamedTuple):
    """One verification step: what was checked, on what, and what was found."""

    check: str  # signature | manifest | clip | eff | file | source
    target: str
    ok: bool | None  # None: it could not be made (the footage to build again is gone)
    detail: str


class VerifyReport(NamedTuple):
    path: str
    key_id: str | None  # the key the manifest's signature verified under
    key_given: bool  # checked against a key the caller trusts, not only the package's own
    checks: list[Check]
    lone_clip: bool = False  # an MP4 on its own: its EFF signature is all there is

    @property
    def ok(self) -> bool:
        """No check failed, and some passed (one that could not be made is no failure)."""
        return any(c.ok for c in self.checks) and all(c.ok is not False for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def unmade(self) -> list[Check]:
        return [c for c in self.checks if c.ok is None]


# What reading an entry of a ZIP whose bytes were changed raises: its CRC-32 no longer
# matches (zipfile checks it at the entry's end), its deflate stream breaks, its directory
# names a method, version or flag zipfile does not do (NotImplementedError; "encrypted" is a
# RuntimeError), or an offset outside the file (OSError, ValueError).
# The most a package's text entries (manifest, signature, key, README) may hold: far past any
# vstore writes, and a bound on what a crafted one can make the verifier inflate.
MAX_TEXT_BYTES = 64 << 20

ZIP_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
)


class _Package:
    """Read access to a package's entries, from a directory or a ZIP."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self.duplicates: list[str] = []  # names a ZIP holds more than once
        self.outside: str | None = None  # what a ZIP holds outside its entries, if anything
        self.damaged: dict[str, str] = {}  # entries read() found changed inside the ZIP
        if path.is_dir():
            self.names = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            entries = [i.filename for i in self._zip.infolist() if not i.is_dir()]
            self.names = sorted(set(entries))
            self.duplicates = sorted({n for n in entries if entries.count(n) > 1})
            self.outside = _outside_entries(path, self._zip)
        else:
            raise UsageError(f"{path} is not an evidence package (a directory or a ZIP)")

    def open(self, name: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(name)
        return open(self.path / name, "rb")

    def damage(self, exc: BaseException) -> str:
        """What an entry that does not read back whole says."""
        where = "inside the ZIP " if self._zip is not None else ""
        return f"changed {where}since export: it no longer reads back whole ({exc})"

    def read(self, name: str) -> bytes | None:
        """An entry's bytes; None if it is missing, or damaged or larger than any vstore
        writes (then named in ``damaged``: a small entry that inflates to gigabytes must
        not take the verifier's memory)."""
        if name not in self.names:
            return None
        try:
            with self.open(name) as f:
                data = f.read(MAX_TEXT_BYTES + 1)
        except ZIP_DAMAGE as exc:
            self.damaged[name] = self.damage(exc)
            return None
        if len(data) > MAX_TEXT_BYTES:
            self.damaged[name] = f"larger than {MAX_TEXT_BYTES >> 20} MiB: no entry vstore writes"
            return None
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _outside_entries(path: Path, z: zipfile.ZipFile) -> str | None:
    """What a ZIP holds besides its entries, its central directory and its end records
    (None: nothing). Bytes before the first entry, between entries, after the end or in an
    archive comment are signed by nothing, yet a ZIP reader shows a comment, and a second
    package can hide behind the one that verifies (two ZIPs joined read as the last)."""
    size = path.stat().st_size
    at = 0
    infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    with open(path, "rb") as f:
        for k, info in enumerate(infos):
            if info.header_offset != at:
                return f"{abs(info.header_offset - at):,} byte(s) lie outside its entries"
            f.seek(at)
            head = f.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                return f"no entry header where {info.filename} begins"
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            if info.comment:
                return f"a comment on {info.filename}"
            f.seek(at + 30 + name_len)
            for extra in (info.extra, f.read(extra_len)):
                if not _known_extra(extra):
                    return f"unknown data in the header of {info.filename}"
            at += 30 + name_len + extra_len + info.compress_size
            if info.flag_bits & 0x08:  # a data descriptor: 12 to 24 bytes, by its form
                nxt = infos[k + 1].header_offset if k + 1 < len(infos) else z.start_dir
                if nxt - at in (12, 16, 20, 24):
                    at = nxt
        if z.start_dir != at:
            return f"{abs(z.start_dir - at):,} byte(s) lie outside its entries"
        f.seek(max(0, size - 42))
        tail = f.read(42)
    end = tail[-22:]
    if z.comment or len(end) < 22 or end[:4] != b"PK\x05\x06" or end[20:22] != b"\x00\x00":
        return "an archive comment or bytes after its end"
    # A ZIP64 archive (a package past 2 GiB) has its end record (56 bytes) and its locator
    # (20) between the central directory and the end.
    zip64 = len(tail) == 42 and tail[:4] == b"PK\x06\x07"
    cd_end = size - 22 - (20 + 56 if zip64 else 0)
    cd_bytes = struct.unpack("<I", end[12:16])[0]
    if cd_bytes != 0xFFFFFFFF and z.start_dir + cd_bytes != cd_end:
        return f"{abs(cd_end - z.start_dir - cd_bytes):,} byte(s) lie outside its entries"
    return None


# Extra fields ZIP tools write in an entry's headers, with their longest size: ZIP64 sizes,
# Info-ZIP's times and owner, NTFS times. Anything else is room for unsigned bytes.
_EXTRA_MAX_BYTES = {0x0001: 28, 0x5455: 13, 0x7875: 11, 0x000A: 32}


def _known_extra(extra: bytes) -> bool:
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack("<HH", extra[at : at + 4])
        if size > _EXTRA_MAX_BYTES.get(kind, -1):
            return False
        at += 4 + size
    return at == len(extra)


def _samples(f: IO[bytes]) -> int | None:
    """The video samples of an MP4, to say how a changed clip was changed."""
    import av  # PyAV only when a clip already failed its hash

    try:
        with av.open(f, "r") as c:
            v = next((s for s in c.streams if s.type == "video"), None)
            if v is None:
                return None
            return sum(1 for p in c.demux(v) if p.size)
    except (av.FFmpegError, ValueError, OSError):
        return None


def package_scope(path: str | Path) -> tuple[list[str] | None, int | None, int | None]:
    """The cameras and the span of time a package's manifest asks for (unverified: only to
    know what to read of a store), or (None, None, None) when it has no readable manifest."""
    p = Path(path)
    try:
        pkg = _Package(p)
    except (UsageError, zipfile.BadZipFile, OSError):
        return None, None, None
    try:
        raw = pkg.read(MANIFEST)
        clips = json.loads(raw)["clips"] if raw is not None else []
        cams = sorted({str(c["camera"]["id"]) for c in clips})
        starts = [int(c["requested"]["from_ns"]) for c in clips]
        ends = [int(c["requested"]["to_ns"]) for c in clips]
    except (ValueError, KeyError, TypeError, OSError):
        return None, None, None
    finally:
        pkg.close()
    if not clips:
        return None, None, None
    return cams, min(starts), max(ends)


def verify_package(
    path: str | Path,
    *,
    key_pem: bytes | None = None,
    store: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check the package at ``path``. ``key_pem`` is the export key the caller trusts (a PEM
    public key or certificate); without it the package's own ``signer.pem`` is used and the
    report says so. ``store`` (open, read-only is enough) adds the re-derivation of every
    clip from the recorded chunks the manifest names."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"{p} does not exist")
    if p.is_file() and not zipfile.is_zipfile(p):
        if p.suffix.lower() == ".zip":  # a package, but damaged or cut short: a failure
            check = Check("file", p.name, False, "not a readable ZIP: damaged or cut short")
            return VerifyReport(str(p), None, key_pem is not None, [check])
        return _verify_clip(p, key_pem)
    try:
        pkg = _Package(p)
    except ZIP_DAMAGE as exc:
        check = Check("file", p.name, False, f"not a readable ZIP ({exc})")
        return VerifyReport(str(p), None, key_pem is not None, [check])
    try:
        return _verify(pkg, key_pem, store, progress)
    finally:
        pkg.close()


def _verify_clip(p: Path, key_pem: bytes | None) -> VerifyReport:
    """A clip on its own: only its EFF signature can speak for it."""
    kid = key_id_of(load_public_pem(key_pem, "--cert")) if key_pem is not None else None
    with open(p, "rb") as f:
        head = f.read(12)
        if head[4:8] != b"ftyp":
            raise UsageError(f"{p} is neither an evidence package (directory or ZIP) nor an MP4")
        try:
            sigs = read_signatures(f)
        except (ValueError, OSError) as exc:
            check = Check("eff", p.name, False, f"the MP4's boxes cannot be read ({exc})")
            return VerifyReport(str(p), None, key_pem is not None, [check], lone_clip=True)
    check = _eff_result(sigs, p.name, kid, "the --cert given is")
    signer = cert_key_id(sigs[0].cert_der) if check.ok else None
    return VerifyReport(str(p), signer, key_pem is not None, [check], lone_clip=True)


def _verify(
    pkg: _Package,
    key_pem: bytes | None,
    store: Any,
    progress: Callable[[int, int], None] | None,
) -> VerifyReport:
    checks: list[Check] = []
    add = checks.append
    manifest = pkg.read(MANIFEST)
    sig = pkg.read(SIGNATURE)
    own = pkg.read(SIGNER)
    key_id: str | None = None
    for name, detail in pkg.damaged.items():
        add(Check("file", name, False, detail))
    if manifest is None:
        if MANIFEST not in pkg.damaged:
            add(Check("manifest", MANIFEST, False, "missing: this is not a whole evidence package"))
        return VerifyReport(str(pkg.path), None, key_pem is not None, checks)
    # --- the signature ---------------------------------------------------------------------
    key = None
    if key_pem is not None:
        key = load_public_pem(key_pem, "--key")
    elif own is not None:
        try:
            key = load_public_pem(own, SIGNER)
        except UsageError as exc:  # (the package's, not the user's: a failed check)
            pkg.damaged[SIGNER] = f"changed since export: {exc}"
            add(Check("file", SIGNER, False, pkg.damaged[SIGNER]))
    if sig is None:
        if SIGNATURE not in pkg.damaged:
            add(Check("signature", SIGNATURE, False, "missing: the manifest is not signed"))
    elif key is None:
        why = "unreadable" if SIGNER in pkg.damaged else "missing"
        add(Check("signature", SIGNATURE, False, f"no key to check it with ({SIGNER} {why})"))
    elif verify_ed25519(key, sig, manifest):
        key_id = key_id_of(key)
        how = "the key given" if key_pem is not None else f"the package's own {SIGNER}"
        add(Check("signature", MANIFEST, True, f"Ed25519 signature valid under {how} ({key_id})"))
    else:
        detail = "does not verify: the manifest or its signature was changed"
        if key_pem is not None and own is not None:
            try:
                own_key = load_public_pem(own, SIGNER)
            except UsageError:
                own_key = None
            if own_key is not None and key_id_of(own_key) != key_id_of(key):
                detail = (
                    f"does not verify under the key given ({key_id_of(key)}): the package "
                    f"names another signer ({key_id_of(own_key)})"
                )
                if verify_ed25519(own_key, sig, manifest):
                    detail += ", whose signature it does carry: signed by a key not the one given"
        add(Check("signature", MANIFEST, False, detail))
    if key_pem is not None and own is not None and key_id is not None:
        try:
            same = key_id_of(load_public_pem(own, SIGNER)) == key_id
        except UsageError:
            same = False
        if not same:
            add(Check("file", SIGNER, False, "is not the key that signed the manifest"))
    # --- the manifest ----------------------------------------------------------------------
    try:
        doc = json.loads(manifest)
        clips = doc["clips"]
        if doc.get("format") != FORMAT or not isinstance(clips, list):
            raise ValueError(f"format {doc.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        add(Check("manifest", MANIFEST, False, f"not a manifest this vstore reads ({exc})"))
        return VerifyReport(str(pkg.path), key_id, key_pem is not None, checks)
    named = doc.get("signature", {}).get("key_id")
    if key_id is not None and named != key_id:
        add(Check("manifest", MANIFEST, False, f"names signing key {named}, signed by {key_id}"))
    # --- the clips -------------------------------------------------------------------------
    listed = {MANIFEST, SIGNATURE, SIGNER, README}
    total = sum(int(c.get("size_bytes", 0)) for c in clips)
    done = 0
    for c in clips:
        name = str(c.get("file", ""))
        listed.add(name)
        if name not in pkg.names:
            add(Check("clip", name, False, "missing from the package"))
            continue
        sigs: list[Signature] | None = None
        try:
            with pkg.open(name) as f:
                try:  # one read gives the file's hash and its EFF signatures' digests
                    digest, size, sigs = hash_and_signatures(f)
                    sig_error = ""
                except (ValueError, OSError) as exc:
                    f.seek(0)
                    h, size = sha256_stream(f)
                    digest = h.hexdigest()
                    sig_error = f"the MP4's boxes cannot be read ({exc})"
        except ZIP_DAMAGE as exc:
            add(Check("clip", name, False, pkg.damage(exc)))
            continue
        done += size
        if progress is not None:
            progress(done, total)
        if digest == c.get("sha256") and size == c.get("size_bytes"):
            add(Check("clip", name, True, f"SHA-256 {digest} as listed ({size:,} bytes)"))
        else:
            add(Check("clip", name, False, _how_changed(pkg, name, c, digest, size)))
        if "eff" in c:
            eff_key = c["eff"].get("key_id")
            add(Check("eff", name, False, sig_error) if sigs is None
                else _eff_result(sigs, name, eff_key))  # fmt: skip
    readme = pkg.read(README)
    if README in pkg.damaged:
        add(Check("file", README, False, pkg.damaged[README]))
    elif "readme_sha256" in doc:  # (packages from before it was signed have none)
        if readme is None:
            add(Check("file", README, False, "missing"))
        elif hashlib.sha256(readme).hexdigest() != doc["readme_sha256"]:
            add(
                Check("file", README, False, "changed since export: not the one the manifest signs")
            )
    if own is None and sig is not None and key_pem is not None and SIGNER not in pkg.damaged:
        add(Check("file", SIGNER, False, "missing from the package"))
    for name in pkg.names:
        if name not in listed:
            add(Check("file", name, False, "not in the manifest: added after export"))
    if pkg.outside is not None:
        add(Check("file", pkg.path.name, False, f"the ZIP holds what no entry does: "
                  f"{pkg.outside} (signed by nothing)"))  # fmt: skip
    for name in pkg.duplicates:
        add(Check("file", name, False, "in the ZIP more than once: readers may show either copy"))
    if store is not None:
        node = doc.get("node") or {}
        checks.extend(
            _rederive(store, clips, str(node.get("software", "")), str(node.get("store_uuid", "")))
        )
    return VerifyReport(str(pkg.path), key_id, key_pem is not None, checks)


def _eff_result(
    sigs: list[Signature], name: str, key_id: str | None, named_by: str = "the manifest names"
) -> Check:
    if not sigs:
        return Check("eff", name, False, "no ONVIF export (oeff) signature in the MP4")
    bad = [s for s in sigs if not s.valid]
    if bad:
        return Check("eff", name, False, bad[0].detail)
    kid = cert_key_id(sigs[0].cert_der)
    if key_id is not None and kid != key_id:
        return Check("eff", name, False, f"signed by certificate key {kid}, {named_by} {key_id}")
    who = f", exported by {sigs[0].operator}" if sigs[0].operator else ""
    return Check("eff", name, True, f"ONVIF export signature {sigs[0].detail}, key {kid}{who}")


def _how_changed(pkg: _Package, name: str, c: dict[str, Any], digest: str, size: int) -> str:
    base = f"SHA-256 {digest[:16]}… is not the manifest's {str(c.get('sha256'))[:16]}…"
    want = c.get("delivered", {}).get("video_samples")
    with pkg.open(name) as f:
        got = _samples(f)
    if got is None:
        return base + ": not a readable MP4 any more (damaged or replaced)"
    n = got
    if want is not None and n < want:
        return base + f": trimmed ({n} video samples, {want} exported)"
    if want is not None and n > want:
        return base + f": extended ({n} video samples, {want} exported)"
    if size != c.get("size_bytes"):
        return base + f": re-muxed or edited ({size:,} bytes, {c.get('size_bytes'):,} exported)"
    return base + ": bytes changed in place (same size and samples: bit flips or edits)"


def _rederive(
    store: Any, clips: list[dict[str, Any]], software: str, source: str
) -> Iterator[Check]:
    """Each clip built again from the store: the same chunks, and the same bytes. A
    package made by another vstore version may have been built another way; a mismatch
    then says so."""
    from vstore.export.clip import write_clip
    from vstore.export.clip_plan import plan_clip

    ours = f"vstore {__version__}"
    made_by = software or "an unknown version"
    other = (
        ""
        if software == ours
        else f" (or it was built another way: the package is from {made_by}, this is {ours})"
    )
    # A store that records (not a bucket's view) and is not the one the package names.
    elsewhere = (
        f"; the package comes from store {source}, and this is store {store.uuid}"
        if source and source != store.uuid and store.index.has_segments()
        else ""
    )
    for c in clips:
        name = str(c.get("file", ""))
        try:
            cam = c["camera"]["id"]
            req = c["requested"]
            plan = plan_clip(store, cam, int(req["from_ns"]), int(req["to_ns"]))
        except NotFound as exc:
            # Not a failure of the package: footage deleted since (by its retention, which
            # the audit log records) cannot be built again, and says nothing either way.
            yield Check("source", name, None, "not checked: its footage is no longer in the "
                        f"store ({exc}){elsewhere}")  # fmt: skip
            continue
        except (KeyError, TypeError, ValueError) as exc:
            yield Check("source", name, False, f"the manifest's entry is malformed ({exc})")
            continue
        except VstoreError as exc:
            yield Check("source", name, False, f"the store could not plan it again: {exc}")
            continue
        # Segments by their content hash, not their id: a bucket's catalog numbers them anew.
        want = [
            (s["sha256"], [(k["from_ns"], k["length"], k["crc32"], k["offset"], k["to_ns"])
                           for k in s["chunks"]])
            for s in c.get("sources", [])
        ]  # fmt: skip
        lead = plan.lead_chunk
        if lead is not None and not any(
            (lead.start_ns, lead.length, f"{lead.crc32:08x}") in [k[:3] for k in ks]
            for _, ks in want
        ):
            # The export read no sound from the chunk before (damaged then, or before clips
            # did): made again as it was made.
            plan.lead = None
        # Made again as the export made it: a chunk found damaged then was left out, listed
        # in the manifest's `damaged`, and is left out now.
        damaged = [(int(d["from_ns"]), int(d["to_ns"])) for d in c.get("damaged", [])]
        named = {k[:3] for _, ks in want for k in ks}
        left_out = [
            k
            for p in plan.parts
            for k in p.chunks
            if (k.start_ns, k.length, f"{k.crc32:08x}") not in named
            and any(s <= k.start_ns < e for s, e in damaged)
        ]
        h = _HashSink()
        try:
            plan = write_clip(
                store, plan.without(left_out) if left_out else plan, h, format="mp4"
            ).plan
        except CorruptSegment as exc:
            yield Check("source", name, False, f"a recorded chunk it is made of is damaged: {exc}")
            continue
        except VstoreError as exc:
            yield Check("source", name, False, f"it could not be built again: {exc}")
            continue
        got = [
            (p.segment, [(k.start_ns, k.length, f"{k.crc32:08x}", k.offset, k.end_ns)
                         for k in p.chunks])
            for p in plan.read_parts
        ]  # fmt: skip
        lo, hi = int(req["from_ns"]), int(req["to_ns"])
        missing, extra, moved = _match_sources(store, want, got)
        if list(plan.damaged) != damaged:
            yield Check("source", name, False, "a recorded chunk it is made of is damaged now")
            continue
        if missing or extra:
            inside = [k for k in [*missing, *extra] if k[0] < hi and k[1] > lo]
            if extra or inside:
                yield Check(
                    "source", name, False,
                    "the store's chunks for this range are not the ones the manifest names "
                    f"(footage deleted, trimmed or replaced since the export){other}",
                )  # fmt: skip
            else:  # (retention since: the chunk before, for its sound, or the one after)
                yield Check(
                    "source", name, None,
                    "not checked whole: the chunks of its range are the ones the manifest "
                    f"names{_moved_note(moved)}, but {len(missing)} chunk(s) it also read "
                    "beside its range (the sound sent before its first frame, frames shown "
                    "before its end) are no longer in the store, so it cannot be built again "
                    "byte for byte",
                )  # fmt: skip
            continue
        if h.hexdigest() == c.get("media_sha256", c.get("sha256")):
            yield Check(
                "source", name, True,
                f"built again from {sum(len(s[1]) for s in got)} recorded chunk(s) in "
                f"{len(got)} segment(s): the same bytes{_moved_note(moved)}",
            )  # fmt: skip
        else:
            yield Check(
                "source", name, False,
                "the recorded chunks the manifest names do not make this clip: it is not "
                f"what the store recorded{other}",
            )  # fmt: skip


def _moved_note(moved: int) -> str:
    return (
        f" ({moved} of them since kept in a trimmed copy of the segment that held them, "
        "which its header and the audit log record)"
        if moved
        else ""
    )


Chunk = tuple[int, int, str, int, int]  # (start_ns, length, CRC-32 hex, offset, end_ns)


def _match_sources(
    store: Any, want: list[tuple[str, list[Chunk]]], got: list[tuple[Any, list[Chunk]]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """The store's chunks for a clip against those its manifest names: the same segment (by
    content hash) at the same offset, or the same chunk (time, length, CRC) in a copy a trim
    made of such a segment, which its header names (``trimmed_from``: the original's hash
    and its chunks' times and CRCs). Returns the (start, end) of the manifest's chunks not
    found, of the store's chunks it does not name, and how many were found in such copies."""
    found: dict[tuple[int, int, str], bool] = {}  # -> found in a trimmed copy
    for seg, chunks in got:
        origins: list[Any] | None = None
        for k in chunks:
            for w_sha, w_chunks in want:
                if w_sha == seg.sha256 and k in w_chunks:
                    found[k[:3]] = False
                    break
                if not any(w[:3] == k[:3] for w in w_chunks):
                    continue
                if origins is None:
                    try:
                        with store.segment_reader(seg) as rd:
                            origins = list(rd.meta.extra.get("trimmed_from", []))
                    except VstoreError:  # (unreadable: not shown to be the same)
                        origins = []
                if any(
                    isinstance(o, dict)
                    and o.get("sha256") == w_sha
                    and [k[0], int(k[2], 16)] in o.get("chunks", [])
                    for o in origins
                ):
                    found[k[:3]] = True
                    break
    missing = [(w[0], w[4]) for _sha, ws in want for w in ws if w[:3] not in found]
    extra = [(k[0], k[4]) for _seg, ks in got for k in ks if k[:3] not in found]
    return missing, extra, sum(found.values())


class _HashSink:
    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def write(self, b: Any) -> int:
        self._h.update(b)
        return len(b)

    def flush(self) -> None:
        pass

    def hexdigest(self) -> str:
        return self._h.hexdigest()
