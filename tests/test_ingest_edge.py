"""Ingest edge cases with real encoders: PyAV packets pushed directly, several host threads
writing at once, a mid-stream resolution change, truncated and garbage files."""

from __future__ import annotations

import threading

import av
import pytest

from tests.conftest import START_NS
from tests.test_roundtrip import decode_counters
from tests.test_timestamps import VIDEO, au
from vstore import Packet
from vstore.base.errors import SourceError
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
