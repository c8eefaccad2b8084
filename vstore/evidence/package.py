"""An evidence package: frame-exact clips of one or more cameras and ranges, a manifest that
says what they are and where every byte came from, the manifest's Ed25519 signature by the
node's export key, that key's public half, and a README saying how to check it all.

Layout (a directory, or the same entries in a ZIP)::

    manifest.json        what docs/design/evidence.md describes
    manifest.json.sig    raw Ed25519 signature of manifest.json's exact bytes (64 bytes)
    signer.pem           the export key's public half (SubjectPublicKeyInfo, PEM)
    README.txt           how to verify, with vstore and without
    clips/NN-CAMERA-FROM.mp4

``openssl pkeyutl -verify -pubin -inkey signer.pem -rawin -in manifest.json -sigfile
manifest.json.sig`` checks the signature with no vstore at all; each clip's SHA-256 is in the
manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from vstore._version import __version__
from vstore.base import layout
from vstore.base.errors import StorageFull, UsageError
from vstore.base.free_text import checked_text
from vstore.base.timebase import format_time
from vstore.evidence.eff import ExportInfo, SourceTrack, sign_appended, track_ids
from vstore.evidence.file_hasher import FollowingHasher
from vstore.evidence.package_format import (
    CLIPS_DIR,
    FORMAT,
    MANIFEST,
    README,
    SIGNATURE,
    SIGNER,
    manifest_bytes,
)
from vstore.export.clip import write_clip
from vstore.export.clip_plan import ClipPlan, plan_clip
from vstore.store.disk import disk_usage, min_free_bytes
from vstore.store.keys import KeyRing
from vstore.store.store import Store


class ExportItem(NamedTuple):
    camera: str
    start_ns: int
    end_ns: int


class PackageReport(NamedTuple):
    """What an export wrote, as ``vstore export --json`` prints it."""

    path: str
    container: str  # "zip" or "directory"
    manifest_sha256: str
    key_id: str
    clips: list[dict[str, Any]]
    bytes_written: int
    elapsed_s: float


def _eff_info(store: Store, plan: ClipPlan, f: Any, case: str, purpose: str, by: str) -> ExportInfo:
    cam = store.config.camera(plan.camera)
    name = cam.name or plan.camera
    url = _without_credentials(cam.url or "")
    ids = track_ids(f)
    tracks = [SourceTrack(tid, name if i == 0 else f"{name} (audio)", url)
              for i, tid in enumerate(ids)]  # fmt: skip
    return ExportInfo(
        unit_name=f"vstore node {store.uuid}",
        unit_url="",
        export_unix_s=time.time_ns() // 10**9,
        operator=by,
        tracks=tracks or [SourceTrack(1, name, url)],
        capture_start_ns=plan.start_ns,
        note=f"case {case}; purpose {purpose}; camera {plan.camera}",
    )


def _without_credentials(url: str) -> str:
    """A camera URL as a manifest may show it: no user name or password."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _local(ns: int, tz_name: str | None) -> str:
    if tz_name is None:
        return format_time(ns)
    import zoneinfo

    return format_time(ns, zoneinfo.ZoneInfo(tz_name))


def _clip_name(n: int, item: ExportItem) -> str:
    stamp = format_time(item.start_ns)[:19].replace("-", "").replace(":", "")
    return f"{CLIPS_DIR}/{n:02d}-{item.camera}-{stamp}Z.mp4"


def _clip_entry(
    store: Store,
    plan: ClipPlan,
    name: str,
    sha256: str,
    size_bytes: int,
    packets: dict[str, int],
    left_out: list[str],
) -> dict[str, Any]:
    cam = store.config.camera(plan.camera)
    tz = cam.timezone
    req = plan.requested
    return {
        "file": name,
        "sha256": sha256,
        "size_bytes": size_bytes,
        "format": "mp4",
        "camera": {
            "id": plan.camera,
            "name": cam.name,
            "location": cam.location,
            "timezone": tz,
        },
        "requested": {
            "from": format_time(req.start_ns),
            "to": format_time(req.end_ns),
            "from_local": _local(req.start_ns, tz),
            "to_local": _local(req.end_ns, tz),
            "from_ns": req.start_ns,
            "to_ns": req.end_ns,
        },
        "delivered": {
            "from": format_time(plan.start_ns),
            "to": format_time(plan.end_ns),
            "from_local": _local(plan.start_ns, tz),
            "to_local": _local(plan.end_ns, tz),
            "from_ns": plan.start_ns,
            "to_ns": plan.end_ns,
            "decoding_from_ns": plan.preroll_ns,
            **packets,
        },
        "gaps": [
            {"from": format_time(s), "to": format_time(e), "from_ns": s, "to_ns": e}
            for s, e in plan.gaps
        ],
        "discontinuities": [{"at": format_time(e["at_ns"]), **e} for e in plan.events],
        "damaged": [
            {"from": format_time(s), "to": format_time(e), "from_ns": s, "to_ns": e}
            for s, e in plan.damaged
        ],
        "sources": [
            {
                "segment_id": p.segment.segment_id,
                "sha256": p.segment.sha256,
                "size_bytes": p.segment.size_bytes,
                "location": p.segment.location,
                "chunks": [
                    {
                        "from_ns": c.start_ns,
                        "to_ns": c.end_ns,
                        "offset": c.offset,
                        "length": c.length,
                        "crc32": f"{c.crc32:08x}",
                    }
                    for c in p.chunks
                ],
            }
            for p in plan.read_parts
        ],
        "notes": plan.notes,
        # Recorded tracks an MP4 has no place for (G.711 sound): named, never silently gone.
        "left_out": left_out,
    }


def _readme(doc: dict[str, Any], key_id: str) -> str:
    lines = [
        "EVIDENCE PACKAGE",
        "",
        f"Case:        {doc['case']}",
        f"Purpose:     {doc['purpose']}",
        f"Exported by: {doc['exported_by']} at {doc['exported_at']}",
        f"Node:        {doc['node']['store_uuid']} ({doc['node']['software']})",
        f"Signed by:   export key {key_id} (Ed25519)",
        "",
        "Clips:",
    ]
    for c in doc["clips"]:
        lines.append(
            f"  {c['file']}: camera {c['camera']['id']}, {c['delivered']['from_local']} to "
            f"{c['delivered']['to_local']}, SHA-256 {c['sha256']}"
        )
        lines.extend(f"    NOT IN THE CLIP: {note}" for note in c["left_out"])
        lines.extend(f"    GAP (no footage recorded): {g['from']} to {g['to']}" for g in c["gaps"])
        lines.extend(
            f"    DAMAGED (recorded, unreadable, left out): {d['from']} to {d['to']}"
            for d in c["damaged"]
        )
    lines += [
        "",
        "HOW TO VERIFY",
        "",
        "1. The manifest is signed. With OpenSSL 3 (no vstore needed):",
        "     openssl pkeyutl -verify -pubin -inkey signer.pem -rawin \\",
        "       -in manifest.json -sigfile manifest.json.sig",
        '   It prints "Signature Verified Successfully". Check that signer.pem is the',
        "   node's export key: compare it with what the node's operator publishes",
        "   (`vstore key list` on the node); the key id is the first 16 bytes of the",
        "   SHA-256 of the key's DER form:",
        "     openssl pkey -pubin -in signer.pem -outform DER | sha256sum",
        "2. Each clip's SHA-256 must be the one the manifest lists:",
        "     sha256sum clips/*.mp4",
        "3. Or all of it at once, offline, with vstore:",
        "     vstore verify THIS-PACKAGE --key signer-you-trust.pem",
        "",
        "The clips are the recorded video and audio remuxed into MP4, never re-encoded",
        "(recorded sound MP4 has no place for, such as G.711, is named above as not in the",
        "clip). The manifest lists, for each clip, the recorded segments and chunks (with",
        "their checksums) its samples come from, and any gap in the footage.",
    ]
    return "\n".join(lines) + "\n"


def package_path(out: str | os.PathLike[str]) -> Path:
    """Where a package is to go, refused when it is no place for one."""
    if str(out).strip() in ("", "-"):
        raise UsageError(
            "give the package's path: a new directory, or a file ending in .zip (a package "
            "is several files, never standard output)"
        )
    return Path(out)


# Bytes promised to packages being written, by file system: exports running at once (a
# node's jobs) each see the same free space, and must not all take it.
_reserved_lock = threading.Lock()
_reserved: dict[int, int] = {}


@contextmanager
def _room(store: Store, out_path: Path, need_bytes: int) -> Iterator[None]:
    """Room for a package of ``need_bytes``, held while it is written. An export never takes
    the store's disk below its watermark (min_free): the space keeper would delete the
    oldest unheld footage, any camera's, to make room for a copy, or cameras would pause.
    Refused (StorageFull) before a byte is written; elsewhere, a package that cannot fit
    is refused too."""
    where = out_path.absolute().parent
    dev = os.stat(where).st_dev
    same = dev == os.stat(store.root).st_dev
    usage = store.disk_usage() if same else disk_usage(where)
    floor = min_free_bytes(store.config.retention, usage) if same else 0
    with _reserved_lock:
        promised = _reserved.get(dev, 0)
        if usage.free_bytes - promised - need_bytes < floor:
            raise StorageFull(
                f"the package needs about {need_bytes / 1e6:,.0f} MB and {where} has "
                f"{(usage.free_bytes - promised) / 1e6:,.0f} MB free"
                + (" (besides packages being written)" if promised else "")
                + (f", {floor / 1e6:,.0f} MB of it kept free for recording (min_free)"
                   if floor else "")
                + ": export fewer or shorter ranges, or to another disk"
            )  # fmt: skip
        _reserved[dev] = promised + need_bytes
    try:
        yield
    finally:
        with _reserved_lock:
            _reserved[dev] -= need_bytes


def export_package(
    store: Store,
    items: Sequence[ExportItem],
    out: str | os.PathLike[str],
    *,
    case: str,
    purpose: str,
    by: str,
    keys: KeyRing | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PackageReport:
    """Write the package of ``items`` to ``out`` (a ZIP when it ends in ``.zip``, else a new
    directory). Nothing is left at ``out`` unless the whole package was written; an existing
    ``out`` is never overwritten."""
    t0 = time.perf_counter()
    if not items:
        raise UsageError("an export needs at least one camera and range")
    for label, value in (("case", case), ("purpose", purpose), ("by", by)):
        if not value or not value.strip():
            raise UsageError(f"an export needs a {label}")
        checked_text(value, f"the export's {label}")
    out_path = package_path(out)
    as_zip = out_path.suffix.lower() == ".zip"
    if out_path.exists() or out_path.is_symlink():
        raise UsageError(f"{out_path} exists: an evidence package is never overwritten")
    if not out_path.parent.is_dir():
        raise UsageError(f"{out_path.parent} is not a directory")
    ring = keys if keys is not None else store.keys
    signer = ring.signer("export")  # before any work: no key, no export
    eff = ring.signer("eff")
    plans = [plan_clip(store, it.camera, it.start_ns, it.end_ns) for it in items]
    # (a ZIP's clips are staged beside it until it is whole: twice their bytes at the end)
    with _room(store, out_path, sum(p.bytes for p in plans) * (2 if as_zip else 1)):
        # Audited before a byte is written: a process killed after it signed the package (the
        # staging directory, or the package renamed into place, whole) leaves no copy of
        # evidence the audit log does not name. `export` (or `export_failed`) follows.
        store.index.audit(
            "export_begun",
            by,
            {
                "case": case,
                "purpose": purpose,
                "package": str(out_path),
                "clips": [
                    {
                        "camera": it.camera,
                        "from": format_time(it.start_ns),
                        "to": format_time(it.end_ns),
                    }
                    for it in items
                ],
            },
            store.clock.wall_ns(),
        )
        staging = layout.staging_path(out_path.with_name(out_path.name + ".partial"))
        if staging.exists():
            shutil.rmtree(staging)
        (staging / CLIPS_DIR).mkdir(parents=True)
        try:
            total = sum(p.bytes for p in plans)
            done = 0
            clips: list[dict[str, Any]] = []
            for n, (item, plan) in enumerate(zip(items, plans, strict=True), start=1):
                name = _clip_name(n, item)

                # The clip is hashed as it is written, on a second thread: no pass of its own.
                follower = FollowingHasher(staging / name)

                def step(d: int, t: int, base: int = done, tap: Any = follower) -> None:
                    tap.written()
                    if progress is not None:
                        progress(base + d // 2, total)

                try:
                    res = write_clip(store, plan, staging / name, format="mp4", progress=step)
                except BaseException:
                    follower.abandon()
                    raise
                hashed = follower.finish()
                if res.muxer != "native":  # (FFmpeg's muxer goes back over the file: read again)
                    hashed = None
                done += plan.bytes
                with open(staging / name, "r+b") as f:
                    info = _eff_info(store, res.plan, f, case, purpose, by)
                    digest, media_digest = sign_appended(f, eff, info, hashed)
                counts = {"video_samples": res.video_packets, "audio_samples": res.audio_packets}
                entry = _clip_entry(
                    store,
                    res.plan,
                    name,
                    digest,
                    (staging / name).stat().st_size,
                    counts,
                    res.dropped_tracks,
                )
                entry["media_sha256"] = media_digest
                entry["eff"] = {"key_id": eff.info.key_id, "scheme": "oeff"}
                clips.append(entry)
            doc = {
                "format": FORMAT,
                "case": case,
                "purpose": purpose,
                "exported_by": by,
                "exported_at": format_time(time.time_ns()),
                "node": {"store_uuid": store.uuid, "software": f"vstore {__version__}"},
                "signature": {
                    "algorithm": "Ed25519",
                    "key_id": signer.info.key_id,
                    "file": SIGNATURE,
                    "public_key": SIGNER,
                },
                "clips": clips,
            }
            # The README restates the case and the clips for a reader: its hash is signed too,
            # so an edited README is caught like an edited manifest.
            readme = _readme(doc, signer.info.key_id).encode()
            doc["readme_sha256"] = hashlib.sha256(readme).hexdigest()
            manifest = manifest_bytes(doc)
            (staging / MANIFEST).write_bytes(manifest)
            (staging / SIGNATURE).write_bytes(signer.sign(manifest))
            (staging / SIGNER).write_text(signer.info.public_pem)
            (staging / README).write_bytes(readme)
            if as_zip:
                _zip(staging, out_path)
                shutil.rmtree(staging)
            else:
                _fsync_tree(staging)
                os.rename(staging, out_path)
                _fsync_dir(out_path.parent)
            size = (
                out_path.stat().st_size
                if as_zip
                else sum(p.stat().st_size for p in out_path.rglob("*") if p.is_file())
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if progress is not None:
            progress(total, total)
        store.index.audit(
            "export",
            by,
            {
                "case": case,
                "purpose": purpose,
                "package": str(out_path),
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                "key_id": signer.info.key_id,
                "clips": [
                    {
                        "camera": c["camera"]["id"],
                        "from": c["delivered"]["from"],
                        "to": c["delivered"]["to"],
                        "sha256": c["sha256"],
                    }
                    for c in clips
                ],
            },
            store.clock.wall_ns(),
        )
        return PackageReport(
            str(out_path),
            "zip" if as_zip else "directory",
            hashlib.sha256(manifest).hexdigest(),
            signer.info.key_id,
            [
                {
                    "file": c["file"],
                    "camera": c["camera"]["id"],
                    "sha256": c["sha256"],
                    "size_bytes": c["size_bytes"],
                    "from": c["delivered"]["from"],
                    "to": c["delivered"]["to"],
                    "left_out": c["left_out"],
                    "gaps": c["gaps"],
                    "damaged": c["damaged"],
                    "notes": c["notes"],
                }
                for c in clips
            ],
            size,
            time.perf_counter() - t0,
        )


def _zip(staging: Path, out_path: Path) -> None:
    """The package's files into a ZIP written beside ``out_path`` and renamed onto it. MP4s
    are stored (already compressed), text deflated; the manifest comes first."""
    part = layout.staging_path(out_path)
    names = [MANIFEST, SIGNATURE, SIGNER, README]
    names += sorted(str(p.relative_to(staging)) for p in (staging / CLIPS_DIR).iterdir())
    try:
        with zipfile.ZipFile(part, "w", allowZip64=True) as z:
            for name in names:
                method = zipfile.ZIP_STORED if name.endswith(".mp4") else zipfile.ZIP_DEFLATED
                z.write(staging / name, name, compress_type=method)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.rename(part, out_path)
        _fsync_dir(out_path.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in (root / CLIPS_DIR, root):
        _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
