"""Ingest edge cases with real encoders: PyAV packets pushed directly, several host threads
writing at once, a mid-stream resolution change, truncated and garbage files."""

from __future__ import annotations

import os
import threading
import time

import av
import pytest

from tests.conftest import START_NS
from tests.test_roundtrip import decode_counters
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.base.errors import SourceError, UsageError
from vstore.ingest.file_import import import_file
from vstore.ingest.tracks import tracks_from_av
from vstore.lifecycle.check import check_store


def test_pyav_packets_are_written_directly(store, media):
    path = media("h264-aac.mkv", 3.0, codec="h264", audio="aac", gop_frames=25)
    with (
        av.open(str(path)) as src,
        store.writer("cam", tracks_from_av(src), start_ns=START_NS) as w,
    ):
        for pkt in src.demux():
            if pkt.size:
                w.write(pkt)
        assert w.stats.packets > 75
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert {p.track for p in pk} == {0, 1}
    seg = next(store.index.segments(store.camera_num("cam")))
    with store.segment_reader(seg) as rd:
        counters = decode_counters(rd.meta.tracks[0], [p for p in pk if p.track == 0])
    assert counters == list(range(75))


def test_writes_from_several_threads_are_serialized(store):
    audio = __import__("tests.test_timestamps", fromlist=["AUDIO"]).AUDIO
    w = store.writer("cam", [VIDEO, audio], start_ns=START_NS)
    lock_step = threading.Barrier(2)

    def video():
        lock_step.wait()
        for i in range(500):
            key, data = au(i)
            w.write(Packet(0, i * 3600, i * 3600, key, data))

    def sound():
        lock_step.wait()
        for i in range(500):
            w.write(Packet(1, i * 320, i * 320, True, b"\x7f" * 160))

    ts = [threading.Thread(target=video), threading.Thread(target=sound)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    w.close()
    assert check_store(store).ok
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert sum(p.track == 0 for p in pk) == 500
    # Audio before the first keyframe is dropped by design; the rest is all there.
    assert sum(p.track == 1 for p in pk) + w.stats.dropped_before_keyframe == 500


def test_resolution_change_mid_stream_starts_new_segment(store, media, tmp_path):
    a = media("small.ts", 2.0, codec="h264", width=320, height=240, gop_frames=25)
    b = media("large.ts", 2.0, codec="h264", width=640, height=360, gop_frames=25, start_index=50)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())  # what a camera reconfigured live sends
    res = import_file(store, joined, "cam", START_NS)
    assert res.packets == 100
    num = store.camera_num("cam")
    segs = list(store.index.segments(num))
    assert len(segs) == 2
    kinds = [e.kind for e in store.index.events(num)]
    assert "codec_parameters_changed" in kinds
    counters = []
    for seg in segs:
        with store.segment_reader(seg) as rd:
            counters += decode_counters(rd.meta.tracks[0], list(rd.iter_packets()))
    assert counters == list(range(100))
    assert check_store(store).ok


def test_truncated_ts_imports_the_whole_gops_it_has(store, media, tmp_path):
    src = media("h264.ts", 4.0, codec="h264", gop_frames=25)
    cut = tmp_path / "cut.ts"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3 + 77])  # mid-packet, mid-frame
    res = import_file(store, cut, "cam", START_NS)
    assert 40 <= res.packets < 100
    assert check_store(store).ok


def test_truncated_mp4_without_index_is_a_clear_error(store, media, tmp_path):
    src = media("h264.mp4", 2.0, codec="h264")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[:3000])
    with pytest.raises(SourceError):
        import_file(store, cut, "cam", START_NS)
    assert list(store.layout.iter_segment_files()) == []


def test_import_before_existing_footage_is_refused(store, media):
    from vstore.base.errors import UsageError

    src = media("h264.ts", 2.0, codec="h264")
    import_file(store, src, "cam", START_NS)
    with pytest.raises(UsageError, match="already has footage"):
        import_file(store, src, "cam", START_NS)


def test_audio_only_file_is_refused(store, tmp_path):
    p = tmp_path / "a.mkv"
    with av.open(str(p), "w") as out:
        s = out.add_stream("aac", rate=48000)
        s.layout = "mono"
    with pytest.raises(SourceError):
        import_file(store, p, "cam", START_NS)


def test_paced_import_leaves_the_disk_to_live_recording(store, media):
    """An unpaced import writes as fast as the disk takes it, which starves cameras recording
    on the same disk; with a rate, the footage written waits its turn (a fake clock shows
    how long the pace made it take), and every frame is still stored."""
    from vstore.base.ratelimit import RateLimiter

    path = media("paced.ts", 4.0, codec="h264", gop_frames=25)
    now = [0.0]

    def sleep(s):
        now[0] += s

    rate = RateLimiter(50_000, clock=lambda: now[0], sleep=sleep)
    r = import_file(store, path, "cam", START_NS, rate=rate)
    with av.open(str(path)) as src:
        payload = sum(p.size for p in src.demux() if p.size)
    assert r.packets == 100
    # A 0.1 s burst, then 50 kB/s of the file's own packet bytes.
    assert now[0] == pytest.approx((payload - 5_000) / 50_000, rel=0.01)
    assert check_store(store).ok


def test_import_cli_max_rate(store_dir, media, capsys):
    import json

    from vstore.cli.main import main

    path = str(media("paced-cli.ts", 2.0, codec="h264", gop_frames=25))
    base = ["import", path, "--camera", "x", "--start", "2025-01-17T01:00:00Z"]
    base += ["--store", str(store_dir)]
    assert main([*base, "--max-rate", "auto"]) == 2  # a pace of its own cameras: tiering only
    assert "a size per second" in capsys.readouterr().err
    assert main([*base, "--max-rate", "slow"]) == 2
    assert "a size per second" in capsys.readouterr().err
    assert main([*base, "--max-rate", "200MB", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["packets"] == 50 and doc["max_rate_bytes"] == 200_000_000


def _clip_frames(store, tmp_path, start_ns: int, end_ns: int) -> list[tuple[float, int]]:
    """(seconds from the clip's start, frame counter) of every frame a clip shows."""
    from tools.camsim import read_frame_counter
    from vstore.export.clip import write_clip
    from vstore.export.clip_plan import plan_clip

    out = tmp_path / f"c{start_ns}.mp4"
    write_clip(store, plan_clip(store, "cam", start_ns, end_ns), out)
    with av.open(str(out)) as c:
        return [(round(float(f.time), 3), read_frame_counter(f.to_ndarray(format="rgb24")))
                for f in c.decode(video=0)]  # fmt: skip


def test_a_matroska_file_with_b_frames_keeps_its_first_gop_in_order(store, media, tmp_path):
    """Matroska gives its first B-frame GOP's first packets no decode time: taken as their
    presentation times, the writer reordered them and clips showed that GOP's frames out of
    order (and from the wrong frame)."""
    path = media("bf.mkv", 3.0, bframes=2, gop_frames=25)
    with av.open(str(path)) as c:
        assert next(c.demux(video=0)).dts is None  # (the case: no decode time at first)
    import_file(store, path, "cam", START_NS)
    got = _clip_frames(store, tmp_path, START_NS + 80_000_000, START_NS + 320_000_000)
    assert got == [(k * 0.04, 2 + k) for k in range(6)]


def _cut(src, dst, keep) -> None:
    """Remux ``src`` into ``dst`` with only the packets ``keep(packet)`` accepts, their
    timestamps as they were."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        outs = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for pkt in i.demux():
            if pkt.size and keep(pkt):
                pkt.stream = outs[pkt.stream_index]
                o.mux(pkt)


def test_an_import_places_the_file_s_first_frame_at_its_start(store, media, tmp_path):
    """A file that begins inside a GOP (a cut MPEG-TS) keeps its frames where it shows
    them: its first keyframe lands as far after the start as the file says, and the frames
    before it, which nothing can decode, are counted as dropped. It used to land on the
    start itself, everything early by the frames before it."""
    src = media("cut.ts", 4.0, gop_frames=25)
    cut = tmp_path / "cut.ts"
    # (frames 10.. of a 25-frame GOP first: its next keyframe is frame 25, 0.6 s later)
    _cut(src, cut, lambda p: p.pts is None or p.pts >= 10 * 3600 + p.stream.start_time)
    r = import_file(store, cut, "cam", START_NS)
    assert r.first_ns == START_NS + 600_000_000 and r.stats["dropped_before_keyframe"] == 15
    got = _clip_frames(store, tmp_path, START_NS + 600_000_000, START_NS + 680_000_000)
    assert got == [(0.0, 25), (0.04, 26)]


def test_an_import_places_the_first_frame_an_edit_list_shows_at_its_start(store, media, tmp_path):
    """An MP4 whose edit list hides its first frames (cut with `ffmpeg -ss -c copy`) is
    placed by the first frame it shows: the hidden ones, kept for decoding, lie before the
    start. The first keyframe used to land on the start, every shown frame late."""
    src = media("el.mp4", 3.0, gop_frames=25)
    cut = tmp_path / "el.mp4"
    with av.open(str(src)) as i, av.open(str(cut), "w") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        shift = int(0.48 / i.streams.video[0].time_base)  # (frames 0-11 hidden)
        for pkt in i.demux(video=0):
            if pkt.size:
                pkt.pts, pkt.dts, pkt.stream = pkt.pts - shift, pkt.dts - shift, out
                o.mux(pkt)
    with av.open(str(cut)) as c:
        assert next(c.demux(video=0)).is_discard  # (the case: an edit list hides it)
    r = import_file(store, cut, "cam", START_NS)
    assert r.first_ns == START_NS - 480_000_000
    assert _clip_frames(store, tmp_path, START_NS, START_NS + 80_000_000) == [
        (0.0, 12), (0.04, 13)]  # fmt: skip
    # Right after earlier footage (a file cut from the recording before it), the hidden
    # frames would lie over it: the frames up to the next keyframe are left out, said so,
    # and the rest keep their times (the file used to be shifted late by the hidden time).
    end = START_NS + 3 * 10**9 - 480_000_000  # (where the first import's footage ends)
    r = import_file(store, cut, "cam", end)
    assert r.first_ns == end + 520_000_000  # (frame 25, the next keyframe: 13 frames on)
    assert any("hides frames ahead of its first shown frame" in w for w in r.warnings)
    assert _clip_frames(store, tmp_path, r.first_ns, r.first_ns + 80_000_000) == [
        (0.0, 25), (0.04, 26)]  # fmt: skip
    assert check_store(store).ok


def test_abutting_files_import_in_any_order(store, media):
    """A file's length for the overlap check is its pictures': sound running a few
    milliseconds past the last picture made a file refused in front of the file after it
    (imported first), as if they overlapped."""
    path = media("abut.mp4", 2.0, audio="aac", gop_frames=25)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert c.duration / 1e6 > float(v.duration * v.time_base)  # (the case: sound longer)
    import_file(store, path, "cam", START_NS + 2 * 10**9)
    r = import_file(store, path, "cam", START_NS)
    assert r.end_ns == START_NS + 2 * 10**9
    assert check_store(store).ok


def test_an_import_whose_length_is_not_believed_stops_at_now(store, media, tmp_path):
    """Footage is never stored ahead of the clock: a file whose length is not known (an
    MPEG-TS spliced from two recordings, whose length FFmpeg reckons at hours) is stopped
    where it would run past now, what came before kept. Its length used to refuse it whole."""
    a, b = media("splice-a.ts", 4.0, gop_frames=25), media("splice-b.ts", 4.0, gop_frames=25)
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(b.read_bytes() + a.read_bytes())  # (b's clock runs hours later)
    with av.open(str(b)) as i, av.open(str(spliced), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(video=0):
            if pkt.size:
                pkt.pts, pkt.dts, pkt.stream = (
                    pkt.pts + 10 * 3600 * 90000,
                    pkt.dts + 10 * 3600 * 90000,
                    s,
                )
                o.mux(pkt)
    with open(spliced, "ab") as f:
        f.write(a.read_bytes())
    with av.open(str(spliced)) as c:
        assert c.streams.video[0].duration / 90000 > 3600  # (the case: hours, as FFmpeg says)
    now = time.time_ns()
    with pytest.raises(UsageError, match="runs on past now"):
        import_file(store, spliced, "cam", now - 2 * 10**9)
    end = max(r.end_ns for r in store.index.segments(store.camera_num("cam")))
    assert now - 2 * 10**9 < end <= now + 4 * 10**9
    assert check_store(store).ok


def test_a_file_still_being_written_is_imported_with_a_warning(store, media, tmp_path):
    """A file another program still writes is imported as far as it goes then, and says
    so: it used to be reported as a plain success, the rest silently missing."""
    data = media("growing.ts", 4.0, gop_frames=25).read_bytes()
    path = tmp_path / "growing.ts"
    half = len(data) // 2 // 188 * 188
    path.write_bytes(data[:half])

    def append_rest() -> None:
        with path.open("ab") as f:
            f.write(data[half:])

    rest = threading.Timer(0.2, append_rest)
    rest.start()
    r = import_file(store, path, "cam", START_NS)
    rest.join()
    (warning,) = r.warnings
    assert "changed while it was imported" in warning
    untouched = tmp_path / "whole.ts"
    untouched.write_bytes(data)
    os.utime(untouched, ns=(time.time_ns() - 10**10,) * 2)  # (written a while ago)
    assert import_file(store, untouched, "cam2", START_NS).warnings == ()


def test_packets_the_source_marks_damaged_are_named_not_silent(store, media, tmp_path):
    """Packets a source marks corrupt were stored flagged, and nothing said so: no count,
    no timeline event, no note in a clip of them. A run of damaged chunks is one event."""
    path = media("damaged.ts", 6.0, gop_frames=25)
    with (
        av.open(str(path)) as src,
        store.writer("cam", tracks_from_av(src), start_ns=START_NS) as w,
    ):
        for k, pkt in enumerate(src.demux()):
            if pkt.size:
                w.write_raw(0, pkt.pts, pkt.dts, pkt.is_keyframe, bytes(pkt), None,
                            k in (30, 40, 60, 90, 140))  # fmt: skip
    assert w.stats.corrupt_packets == 5
    # (frames 30-90 lie in the GOPs from 1 s to 4 s: one run; frame 140 after a clean GOP)
    runs = [(e.at_ns - START_NS, e.detail) for e in store.index.events(store.camera_num("cam"))
            if e.kind == "source_damage"]  # fmt: skip
    assert runs == [(10**9, {"packets": 4, "to_ns": START_NS + 4 * 10**9}),
                    (5 * 10**9, {"packets": 1, "to_ns": START_NS + 6 * 10**9})]  # fmt: skip
    from vstore.export.clip_plan import plan_clip

    (note,) = plan_clip(store, "cam", START_NS + 10**9, START_NS + 2 * 10**9).notes
    assert "marked 4 packet(s)" in note
    # A clip that starts inside the run names it too.
    (note,) = plan_clip(store, "cam", START_NS + 3 * 10**9, START_NS + 3_500_000_000).notes
    assert "marked 4 packet(s)" in note
    assert check_store(store).ok


def test_a_backfill_leaves_the_timeline_s_gap_events_true(store, media):
    """Footage imported into part of a gap used to leave the gap's event naming the whole
    gap (shown by `timeline` and in clips), and no event for what was left after it."""
    path = media("gap-part.ts", 4.0, gop_frames=25)
    s = 10**9
    import_file(store, path, "cam", START_NS)
    import_file(store, path, "cam", START_NS + 30 * s)  # a gap from 4 s to 30 s
    import_file(store, path, "cam", START_NS + 10 * s)  # footage 10-14 s into it

    def gaps():
        return [(e.detail["from_ns"] - START_NS, e.detail["to_ns"] - START_NS) for e in
                store.index.events(store.camera_num("cam")) if e.kind == "gap"]  # fmt: skip

    assert gaps() == [(4 * s, 10 * s), (14 * s, 30 * s)]
    import_file(store, path, "cam", START_NS + 26 * s)  # 26-30 s: nothing left after it
    assert gaps() == [(4 * s, 10 * s), (14 * s, 26 * s)]
    import_file(store, path, "cam", START_NS + 14 * s)  # 14-18 s, right after footage
    assert gaps() == [(4 * s, 10 * s), (18 * s, 26 * s)]


def test_a_start_whole_hours_from_the_file_s_creation_time_is_questioned(store, media, tmp_path):
    """A --start given in the wrong time zone lies whole hours from the file's own
    creation_time: the import stores it as told, and warns."""
    made = tmp_path / "made.mp4"
    with av.open(str(media("made-src.mp4", 2.0, gop_frames=25))) as i, av.open(str(made), "w") as o:
        o.metadata["creation_time"] = "2025-01-17T01:00:00.000000Z"
        s = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(video=0):
            if pkt.size:
                pkt.stream = s
                o.mux(pkt)
    (w,) = import_file(store, made, "a", START_NS + 7 * 3600 * 10**9).warnings
    assert "7 h from --start" in w
    assert import_file(store, made, "b", START_NS).warnings == ()  # (START_NS: 01:00Z)
    assert import_file(store, made, "c", START_NS + 5700 * 10**9).warnings == ()  # (1 h 35)
    (w,) = import_file(store, made, "d", START_NS + (5 * 3600 + 45 * 60) * 10**9).warnings
    assert "5 h 45 min from --start" in w  # (Nepal's +05:45 given as Z)
