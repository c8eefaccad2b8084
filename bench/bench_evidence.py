"""Evidence: an export package of 60 s (clip, EFF signature, manifest, Ed25519 signature,
everything fsynced) beside the plain clip the same call writes; `vstore verify` of a package
of the whole hour beside SHA-256 alone over the same bytes; the cost of one audit record."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

from bench.conftest import NS, T0
from vstore.api import open_store
from vstore.evidence.package import ExportItem, export_package
from vstore.evidence.verify import verify_package
from vstore.export.clip import write_clip
from vstore.export.clip_plan import plan_clip
from vstore.store.keys import KeyRing

ROUNDS = 7


def _range(footage) -> tuple[int, int]:
    return T0 + int(footage["start"] * NS), T0 + int(footage["end"] * NS)


def test_export_plain_clip(benchmark, city_hour):
    """The baseline: the same 60 s as a plain MP4 (library call, to a file), fsynced as the
    package's files are: what delivering the clip durably costs without the evidence."""
    s, e = _range(city_hour)
    out = city_hour["tmp"] / "plain.mp4"

    def run():
        res = write_clip(st, plan_clip(st, "cam", s, e), out)
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return res

    with open_store(city_hour["store"], read_only=True) as st:
        res = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["bytes"] = res.bytes_written


def test_export_package_60s(benchmark, city_hour):
    """`export_package` of the same 60 s to a directory: the clip, its EFF signature (one
    read of the clip), the signed manifest, README, and an fsync of every file."""
    s, e = _range(city_hour)
    base = city_hour["tmp"] / "packages"
    base.mkdir(exist_ok=True)
    n = [0]
    with open_store(city_hour["store"]) as st:
        ring = KeyRing.of_store(st)
        ring.signer("export"), ring.signer("eff")  # keys made before timing

        def run():
            n[0] += 1
            out = base / f"p{n[0]}"
            return export_package(st, [ExportItem("cam", s, e)], out, case="bench",
                                  purpose="bench", by="bench", keys=ring)  # fmt: skip

        def cleanup():
            for p in base.iterdir():
                shutil.rmtree(p)

        rep = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, setup=cleanup)
    benchmark.extra_info["bytes"] = rep.bytes_written


def test_verify_package_of_an_hour(benchmark, city_hour):
    """`verify_package` (no store) of a package of the whole hour, beside SHA-256 of the
    package's clip bytes read the same way (1 MiB blocks from the page cache)."""
    out = city_hour["tmp"] / "hour-package"
    if not out.exists():
        with open_store(city_hour["store"]) as st:
            export_package(st, [ExportItem("cam", T0, T0 + int(city_hour["hour_s"] * NS))],
                           out, case="bench", purpose="bench", by="bench")  # fmt: skip
    clip = next((out / "clips").iterdir())

    def sha_only() -> float:
        t = time.perf_counter()
        h = hashlib.sha256()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        with open(clip, "rb", buffering=0) as f:
            while k := f.readinto(buf):
                h.update(view[:k])
        return time.perf_counter() - t

    sha_only()  # warm the page cache
    sha_s = sorted(sha_only() for _ in range(3))[1]
    rep = benchmark.pedantic(lambda: verify_package(out), rounds=3, iterations=1)
    assert rep.ok
    benchmark.extra_info.update(sha256_s=sha_s, bytes=clip.stat().st_size)


def test_audit_append(benchmark, tmp_path):
    """One audit record appended and synced (what every view, clip and hold costs)."""
    with open_store(tmp_path / "store") as st:
        detail = {"camera": "cam", "from": "2025-01-17T01:00:00+00:00", "purpose": "bench"}
        benchmark.pedantic(
            lambda: st.index.audit("view_timeline", "bench", detail, time.time_ns()),
            rounds=200,
            iterations=1,
        )
