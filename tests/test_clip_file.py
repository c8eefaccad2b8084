"""A clip laid out before its payload is read (what HTTP Range serves): the same bytes as
`write_clip`, any range of them reading only the chunks it covers, a validator that changes
with the footage, and its footage leased while it is open."""

from __future__ import annotations

import random
import time

import pytest

from tests.conftest import START_NS
from vstore.api import open_store
from vstore.base.errors import NotFound
from vstore.export.clip import write_clip
from vstore.export.clip_file import open_clip_file
from vstore.export.clip_plan import plan_clip
from vstore.ingest.file_import import import_file
from vstore.segment.reader import SegmentReader

FRAME_NS = 40_000_000


def t(frame: int) -> int:
    return START_NS + frame * FRAME_NS


@pytest.fixture(
    params=[
        ("cf.mp4", {"codec": "h264", "audio": "aac", "bframes": 2}),  # avcC, raw AAC
        ("cf-aac.ts", {"codec": "h264", "audio": "aac"}),  # Annex-B video, ADTS audio
        ("cf-hevc.ts", {"codec": "hevc"}),
    ],
    ids=["mp4-bframes", "ts-aac", "hevc"],
)
def st(request, tmp_path, media):
    name, spec = request.param
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 2\n")
    s = open_store(d)
    import_file(s, media(name, 8.0, gop_frames=25, **spec), "cam", START_NS)
    yield s
    s.close()


def _joined(blocks) -> bytes:
    return b"".join(bytes(b) for block in blocks for b in block)


def test_every_range_is_the_slice_of_the_clip_write_clip_makes(st, tmp_path):
    whole = tmp_path / "whole.mp4"
    write_clip(st, plan_clip(st, "cam", t(13), t(170)), whole)
    data = whole.read_bytes()
    with open_clip_file(st, "cam", t(13), t(170)) as cf:
        assert cf.size == len(data)
        assert _joined(cf.read()) == data
        rnd = random.Random(7)
        edges = [0, 1, cf.head_bytes - 1, cf.head_bytes, cf.head_bytes + 1, cf.size - 1]
        cuts = [(a, b) for a in edges for b in (a + 1, a + 1000, cf.size)]
        cuts += [tuple(sorted(rnd.sample(range(cf.size + 1), 2))) for _ in range(40)]
        for a, b in cuts:
            assert _joined(cf.read(a, b)) == data[a:b], (a, b)


def test_the_last_megabyte_reads_only_the_chunks_it_covers(st, monkeypatch):
    reads: list[int] = []
    real = SegmentReader.read_chunk
    monkeypatch.setattr(
        SegmentReader,
        "read_chunk",
        lambda self, off, n, crc=None, known=None: (
            reads.append(n) or real(self, off, n, crc, known)
        ),
    )
    with open_clip_file(st, "cam", t(0), t(200)) as cf:
        before = len(reads)  # (the first GOP's, to find the frame on screen at the start)
        tail = _joined(cf.read(cf.size - 2000, cf.size))
    assert len(tail) == 2000
    chunks = [c for p in cf.plan.parts for c in p.chunks]
    assert 1 <= len(reads) - before <= 2 < len(chunks)


def test_the_validator_names_the_footage(st):
    with (
        open_clip_file(st, "cam", t(13), t(170)) as a,
        open_clip_file(st, "cam", t(13), t(170)) as b,
    ):
        assert a.etag == b.etag and a.etag.startswith('"')
    with open_clip_file(st, "cam", t(13), t(171)) as c:
        assert c.etag != a.etag


def test_an_open_clip_file_leases_its_footage(st):
    with open_clip_file(st, "cam", t(13), t(170)) as cf:
        ids = {p.segment.segment_id for p in cf.plan.parts}
        assert ids <= st.leases().segment_ids
    assert not st.leases().segment_ids & ids


def test_a_range_without_footage_is_not_found(st):
    with pytest.raises(NotFound):
        open_clip_file(st, "cam", t(10_000), t(10_100))
    assert not st.leases().segment_ids


def test_the_service_keeps_a_layout_for_a_run_of_range_requests(st, monkeypatch):
    from vstore.service import clip_cache

    cache = clip_cache.ClipCache()
    made: list[int] = []

    def make():
        made.append(1)
        return open_clip_file(st, "cam", t(13), t(170))

    key = ("cam", t(13), t(170))
    a, done_a = cache.acquire(key, make)
    b, done_b = cache.acquire(key, make)
    assert a is b and len(made) == 1
    done_a()
    done_b()
    assert st.leases().segment_ids  # kept, leased
    monkeypatch.setattr(clip_cache, "TTL_S", 0.0)
    cache.expire()
    assert not st.leases().segment_ids and not st.leases().ranges
    # A range at the live edge is never kept: its footage may still grow.
    live = ("cam", t(0), time.time_ns())
    _c, done_c = cache.acquire(live, lambda: open_clip_file(st, "cam", t(0), t(100)))
    done_c()
    assert not st.leases().segment_ids
    cache.close()
