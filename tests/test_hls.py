"""HLS playlists of any range: the GOPs of the chunk rows (continuations joined), a gap as a
discontinuity, a new segment file as a new map; the same text whether a sealed segment's
GOPs were kept from an earlier playlist or read afresh, and never a kept GOP of a segment
that has since been deleted."""

from __future__ import annotations

import itertools
import random

import pytest

from bench.conftest import PPS, SPS
from tests.conftest import START_NS
from vstore import TrackInfo
from vstore.api import open_store
from vstore.base.timebase import GAP_TOLERANCE_NS, NS_PER_S
from vstore.export.hls import Playlists
from vstore.lifecycle.check import check_store
from vstore.segment import format as fmt
from vstore.store.garbage import delete_segment

VIDEO = TrackInfo(0, "video", "h264", (1, 90000), bitstream="annexb")
KEY = SPS + PPS + b"\x00\x00\x00\x01\x65" + bytes(50_000)
P = b"\x00\x00\x00\x01\x41" + bytes(30_000)


def _write(w, first_s: int, last_s: int) -> None:
    """One frame a second, a keyframe every other: a 2 s GOP of 80 kB, over the 64 KiB
    chunk limit, so each GOP is a chunk and a continuation."""
    for i in range(first_s, last_s):
        w.write_raw(0, i * 90000, i * 90000, i % 2 == 0, KEY if i % 2 == 0 else P)


@pytest.fixture
def rec(tmp_path):
    """A store of a camera: 40 s, a 20 s gap, 30 s, a gap, and 9 s still being written."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text("[store]\nsegment_duration_s = 6\nmax_chunk_bytes = 65536\n")
    s = open_store(d)
    with s.writer("cam", [VIDEO], start_ns=START_NS) as w:
        _write(w, 0, 40)
    with s.writer("cam", [VIDEO], start_ns=START_NS + 60 * NS_PER_S) as w:
        _write(w, 0, 30)
    live = s.writer("cam", [VIDEO], start_ns=START_NS + 120 * NS_PER_S)
    _write(live, 0, 9)  # still open: its last segment is being written
    live.flush()
    yield s, live
    live.close()
    s.close()


@pytest.fixture
def st(rec):
    return rec[0]


def _reference(st, start_ns: int, end_ns: int) -> list[tuple[int, int, int]]:
    """(start, end, segment) of each GOP showing [start_ns, end_ns), straight from the rows."""
    gops: list[list[int]] = []
    for c in st.index.chunks(st.camera_num("cam"), -(2**63), 2**63 - 1):
        if c.flags & fmt.CHUNK_CONTINUATION and gops and gops[-1][2] == c.segment_id:
            gops[-1][1] = c.end_ns
        else:
            gops.append([c.start_ns, c.end_ns, c.segment_id])
    return [tuple(g) for g in gops if g[1] > start_ns and g[0] < end_ns]


def _check(text: str, ref: list[tuple[int, int, int]]) -> None:
    lines = text.splitlines()
    assert [x for x in lines if x.startswith("seg/")] == [f"seg/{g[0]}.m4s" for g in ref]
    gaps = sum(1 for a, b in itertools.pairwise(ref) if b[0] - a[1] > GAP_TOLERANCE_NS)
    maps = 1 + sum(
        1 for a, b in itertools.pairwise(ref) if b[0] - a[1] > GAP_TOLERANCE_NS or a[2] != b[2]
    )
    assert text.count("#EXT-X-DISCONTINUITY") == gaps
    assert text.count("#EXT-X-MAP") == maps
    assert text.count("#EXT-X-PROGRAM-DATE-TIME") == gaps + 1
    durations = [float(x[8:-1]) for x in lines if x.startswith("#EXTINF:")]
    assert durations == [round((g[1] - g[0]) / NS_PER_S, 3) for g in ref]


@pytest.mark.parametrize("max_gops", [500_000, 7], ids=["all-kept", "evicting"])
def test_kept_and_fresh_playlists_are_the_rows_own(st, max_gops):
    kept = Playlists(max_gops)
    whole = kept.playlist(st, "cam", START_NS, START_NS + 200 * NS_PER_S, False)
    ref = _reference(st, START_NS, START_NS + 200 * NS_PER_S)
    assert len(ref) == 20 + 15 + 5 and whole is not None
    _check(whole, ref)
    assert whole.rstrip().endswith("#EXT-X-ENDLIST")
    rnd = random.Random(3)
    for _ in range(60):
        a, b = sorted(rnd.sample(range(-5, 140), 2))
        start, end = START_NS + a * NS_PER_S + rnd.randrange(NS_PER_S), START_NS + b * NS_PER_S
        ref = _reference(st, start, end)
        text = kept.playlist(st, "cam", start, end, False)
        fresh = Playlists().playlist(st, "cam", start, end, False)
        assert text == fresh, (a, b)
        if not ref:
            assert text is None
            continue
        _check(text, ref)
        assert text.splitlines()[-2].startswith("seg/") or text.rstrip().endswith("ENDLIST")


def test_a_live_playlist_grows_with_the_open_segment(rec):
    st, live = rec
    kept = Playlists()
    start, end = START_NS + 100 * NS_PER_S, START_NS + 300 * NS_PER_S
    before = kept.playlist(st, "cam", start, end, True)
    assert before is not None and "#EXT-X-ENDLIST" not in before
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in before
    for i in range(9, 16):
        live.write_raw(0, i * 90000, i * 90000, i % 2 == 0, KEY if i % 2 == 0 else P)
    live.flush()
    after = kept.playlist(st, "cam", start, end, True)
    assert after is not None and len(after) > len(before)
    # Only the last GOP of the earlier one may change (it was still growing).
    assert after.startswith(before.rsplit("#EXTINF", 1)[0])
    _check(after, _reference(st, start, end))


def _numbered(text: str) -> dict[int, str]:
    """Each segment URL of a playlist by its media sequence number."""
    lines = text.splitlines()
    seq = int(next(x for x in lines if x.startswith("#EXT-X-MEDIA-SEQUENCE:")).split(":")[1])
    return {seq + i: u for i, u in enumerate(x for x in lines if x.startswith("seg/"))}


def test_a_sliding_live_playlist_lists_the_last_window_and_continues_its_numbers(rec):
    st, live = rec
    kept = Playlists()
    start, end = START_NS, START_NS + 300 * NS_PER_S
    window = 15 * NS_PER_S
    before = kept.playlist(st, "cam", start, end, True, window)
    assert before is not None
    assert "#EXT-X-PLAYLIST-TYPE" not in before and "#EXT-X-ENDLIST" not in before
    ref = _reference(st, start, end)
    # The window: the GOPs that end within its last 15 s of footage, after 2 gaps.
    cut = ref[-1][1] - window
    first = next(i for i, g in enumerate(ref) if g[1] > cut)
    shown = ref[first:]
    assert _numbered(before) == {first + i: f"seg/{g[0]}.m4s" for i, g in enumerate(shown)}
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:2" in before
    assert before.count("#EXT-X-DISCONTINUITY\n") == 0  # both gaps lie before the window
    assert before.count("#EXT-X-PROGRAM-DATE-TIME") == 1
    assert _numbered(Playlists().playlist(st, "cam", start, end, True, window)) == _numbered(before)
    for i in range(9, 40):
        live.write_raw(0, i * 90000, i * 90000, i % 2 == 0, KEY if i % 2 == 0 else P)
    live.flush()
    after = kept.playlist(st, "cam", start, end, True, window)
    a, b = _numbered(before), _numbered(after)
    assert min(b) > min(a) and max(b) > max(a)
    # Every number both list names the same GOP (the last of the earlier one aside: it was
    # still growing, but it starts where it did).
    assert all(a[k] == b[k] for k in a.keys() & b.keys())
    assert len(after) < 2 * len(before)
    # A window that reaches back over a gap lists it as a discontinuity, counted from there.
    wide = kept.playlist(st, "cam", start, end, True, 100 * NS_PER_S)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in wide and wide.count("#EXT-X-DISCONTINUITY\n") == 1


def _kept_then_changed(st, end_s: int, change) -> str:
    """A playlist kept, the store changed by ``change(num)``, the playlist again: it must be
    what a fresh build gives, and the rows' own."""
    kept = Playlists()
    start, end = START_NS, START_NS + end_s * NS_PER_S
    kept.playlist(st, "cam", start, end, False)
    change(st.camera_num("cam"))
    text = kept.playlist(st, "cam", start, end, False)
    assert text is not None and text == Playlists().playlist(st, "cam", start, end, False)
    _check(text, _reference(st, start, end))
    return text


def test_a_deleted_segment_leaves_the_kept_playlists(st):
    gone = []

    def delete(num):
        row = next(iter(st.index.segments(num, START_NS + 10 * NS_PER_S, START_NS + 11 * NS_PER_S)))
        assert row.state == "sealed"
        delete_segment(st, row, "cam", "test", {})
        gone.append(row.start_ns)

    text = _kept_then_changed(st, 100, delete)
    assert f"seg/{gone[0]}.m4s" not in text


def test_a_quarantined_chunk_leaves_the_kept_playlists(st):
    def rot(num):
        c = next(iter(st.index.chunks(num, START_NS + 12 * NS_PER_S, START_NS + 50 * NS_PER_S)))
        row = next(r for r in st.index.segments(num) if r.segment_id == c.segment_id)
        path = st.layout.path(row.path)
        raw = bytearray(path.read_bytes())
        raw[c.offset + c.length // 2] ^= 0xFF  # bit rot in a sealed segment
        path.write_bytes(raw)
        check_store(st, repair=True)  # the rotten chunk leaves the index, quarantined
        assert st.index.chunk_at(num, c.start_ns) is None

    _kept_then_changed(st, 50, rot)


def test_playlists_from_gop_tables_are_those_from_chunk_rows_and_check_keeps_them_so(st):
    """Sealed rows carry their GOP table; a playlist from the tables is the one built from
    the chunk rows (rows without a table, as older stores have), and `vstore check` finds
    and rebuilds a table that differs from its chunk rows."""
    num = st.camera_num("cam")
    sealed = [r for r in st.index.segments(num) if r.state == "sealed"]
    assert sealed and all(r.gops for r in sealed)
    rnd = random.Random(5)
    ranges = [(START_NS - 5 * NS_PER_S, START_NS + 200 * NS_PER_S)]
    for _ in range(20):
        a, b = sorted(rnd.sample(range(-5, 140), 2))
        ranges.append((START_NS + a * NS_PER_S + rnd.randrange(NS_PER_S), START_NS + b * NS_PER_S))
    with_tables = [Playlists().playlist(st, "cam", a, b, False) for a, b in ranges]
    for r in sealed:
        st.index.put_sync(r.key(), r._replace(gops="").value())
    from_rows = [Playlists().playlist(st, "cam", a, b, False) for a, b in ranges]
    assert with_tables == from_rows
    assert check_store(st, verify_hashes=False).ok  # (no table: nothing to compare)
    # A table that lies (one GOP's end moved) is found, and rebuilt by --repair.
    bad = sealed[1]._replace(gops=sealed[0].gops)
    st.index.put_sync(bad.key(), bad.value())
    rep = check_store(st, verify_hashes=False)
    assert [p.code for p in rep.problems] == ["C10"]
    assert check_store(st, verify_hashes=False, repair=True).problems[-1].repaired
    assert check_store(st, verify_hashes=False).ok
    fixed = next(r for r in st.index.segments(num) if r.segment_id == bad.segment_id)
    assert fixed.gops == sealed[1].gops


def test_a_media_segment_has_the_sound_of_its_own_time(tmp_path, media):
    """MPEG-TS sends sound ahead of its pictures, so a GOP's first moments of sound are
    stored with the GOP before: a player starting at a segment heard silence there. Each
    media segment now carries the sound from its keyframe to the next one's, from the chunk
    before where it was sent ahead, and consecutive segments neither overlap nor leave a
    hole."""
    import io

    import av

    from tests.test_clip import sound_ahead_store
    from vstore.export.hls import init_for, media_for

    with sound_ahead_store(tmp_path, media, 60) as st:
        num = st.camera_num("cam")
        gops = [c.start_ns for c in st.index.chunks(num, 0, 2**63 - 1)
                if not c.flags & fmt.CHUNK_CONTINUATION]  # fmt: skip
        spans = []
        for k in (3, 4, 5):  # (GOPs inside the segment, each with a GOP before)
            body = init_for(st, "cam", gops[k]) + b"".join(
                map(bytes, media_for(st, "cam", gops[k]))
            )
            with av.open(io.BytesIO(body)) as c:
                video = [float(f.time) for f in c.decode(video=0)]
            with av.open(io.BytesIO(body)) as c:
                sound = [(float(f.time), f.samples / f.sample_rate) for f in c.decode(audio=0)]
            assert abs(sound[0][0] - video[0]) < 1024 / 48000, (k, sound[0], video[0])
            spans.append((sound[0][0], sound[-1][0] + sound[-1][1]))
        for (_a, end), (start, _b) in itertools.pairwise(spans):
            assert abs(start - end) < 1e-3  # (no overlap, no hole)
