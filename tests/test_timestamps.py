"""Bad timing input: jumps, wraps, repeats, missing values, clock drift and steps.

Packets are pushed through the embedding API (vstore.Packet) with small synthetic H.264
access units, so each failure mode is exact. The invariants: nothing acknowledged is lost,
chunk rows stay in strict time order, and every anomaly is recorded as an event.
"""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import START_NS
from vstore import Packet, TrackInfo, _native
from vstore.api import open_store
from vstore.base.clock import FakeClock
from vstore.base.errors import VstoreError

SPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f\xaa"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR = b"\x00\x00\x00\x01\x65\x88\x84\x00\x21"
SLICE = b"\x00\x00\x00\x01\x41\x9a\x02\x03"
SPS2 = b"\x00\x00\x00\x01\x67\x64\x00\x28\xbb"

VIDEO = TrackInfo(index=0, kind="video", codec="h264", time_base=(1, 90000), bitstream="annexb")
AUDIO = TrackInfo(
    index=1, kind="audio", codec="pcm_mulaw", time_base=(1, 8000), sample_rate=8000, channels=1
)
FRAME = 3600  # 25 fps at 90 kHz


def au(i: int, gop: int = 25, sps: bytes = SPS) -> tuple[bool, bytes]:
    key = i % gop == 0
    return key, (sps + PPS + IDR if key else SLICE) + i.to_bytes(4, "big")


def push(writer, n, start=0, step=FRAME, gop=25, first_index=0, wall=None):
    for i in range(n):
        key, data = au(first_index + i, gop)
        ts = start + i * step
        writer.write(Packet(0, ts, ts, key, data, None if wall is None else wall(i)))


def chunk_rows(store, cam="cam"):
    return list(store.index.chunks(store.camera_num(cam), -(2**62), 2**62))


def assert_ordered(rows):
    for a, b in itertools.pairwise(rows):
        assert a.start_ns < a.end_ns <= b.start_ns


def events(store, cam="cam"):
    return [e.kind for e in store.index.events(store.camera_num(cam))]


def test_backwards_jump_is_recorded_and_rebased(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 50, start=900_000)
        push(w, 50, start=0, first_index=50)  # camera rebooted: timestamps restart
    rows = chunk_rows(store)
    assert_ordered(rows)
    assert "timestamp_jump" in events(store)
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert len(pk) == 100  # nothing dropped
    dts = [p.dts for p in pk]
    assert dts == sorted(dts) and len(set(dts)) == 100
    # media time continued seamlessly: 100 frames span 4 s of wall time
    assert pk[-1].wall_ns - pk[0].wall_ns == 99 * 40_000_000


def test_forward_jump_beyond_drift_limit_is_recorded(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 25)
        push(w, 25, start=25 * FRAME + 3600 * 90000, first_index=25)  # +1 h in one frame
    assert "timestamp_jump" in events(store)
    assert_ordered(chunk_rows(store))


def test_a_hole_in_the_source_s_times_is_a_gap_not_a_stretched_frame(store):
    """Two runs of one file 6 s apart in its own times (files of a recorder that stopped,
    joined): the chunk before the hole ended at the next keyframe, so the hole was
    "recorded" footage, its last picture stretched over it, and neither `ls`, the
    timeline nor a clip showed a gap. It ends one frame after its last frame now, and the
    footage after it is a new run with a gap event."""
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 50)  # 0 .. 2 s
        push(w, 50, start=50 * FRAME + 6 * 90000, first_index=50)  # 8 .. 10 s
    rows = chunk_rows(store)
    assert_ordered(rows)
    assert rows[1].end_ns == START_NS + 2 * 10**9  # (one frame after its last)
    tl = store.timeline("cam", None, None)
    assert tl.gaps == [(START_NS + 2 * 10**9, START_NS + 8 * 10**9)]
    [gap] = [e for e in store.index.events(store.camera_num("cam")) if e.kind == "gap"]
    assert gap.detail["reason"] == "source_gap"
    assert len(list(store.read_packets("cam", START_NS, START_NS + 10**12))) == 100


def test_a_slow_camera_slowing_further_leaves_no_gap(store):
    """A camera sending a frame a second, then one 3 s after the last (a still scene): a
    frame time up to four times the one before it is no hole, and the run goes on."""
    sec = 25 * FRAME
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 10, step=sec, gop=5)  # 0 .. 9 s, a keyframe every 5 s
        push(w, 5, start=9 * sec + 3 * sec, step=sec, gop=5, first_index=10)
    assert store.timeline("cam", None, None).gaps == []
    assert "gap" not in events(store)
    assert len(list(store.index.segments(store.camera_num("cam")))) == 1


@pytest.mark.parametrize("twin", sorted(_native.implementations()))
def test_frames_lost_inside_a_gop_are_a_gap(store, twin):
    """Frames lost in the middle of a GOP (UDP loss; their timestamps go on): the chunk
    spanned the hole and the timeline called it recorded. The hole is a gap on the timeline
    and in a clip; the frames after it stay, as received. (Ordinary frames take the fast
    path: both of its twins.)"""
    from vstore.export.clip_plan import plan_clip

    with _native.use(twin), store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 90)  # 0 .. 3.6 s
        push(w, 110, start=165 * FRAME, first_index=165)  # frames 90..164 (3 s) lost
    [gap] = store.timeline("cam", None, None).gaps
    assert (gap[0], gap[1]) == (START_NS + 90 * 40_000_000, START_NS + 165 * 40_000_000)
    plan = plan_clip(store, "cam", START_NS, START_NS + 11 * 10**9)
    assert plan.gaps == [gap]
    # A window that begins inside the hole shows it too (its event is where it began).
    inside = store.timeline("cam", START_NS + 5 * 10**9, START_NS + 10 * 10**9)
    assert inside.gaps == [(START_NS + 5 * 10**9, gap[1])]
    [summary] = store.cameras()  # (`vstore ls` counts it, and not as recorded time)
    assert summary.gaps == 1 and summary.recorded_ns == 11 * 10**9 - (gap[1] - gap[0])
    assert len(list(store.read_packets("cam", START_NS, START_NS + 10**12))) == 200


def _av(w, frames, sound=True, skip=()):
    """Write ``frames`` (indices, 25 fps) of a camera with G.711 sound sent ahead of the
    pictures, leaving out the sound of the seconds in ``skip`` ((from_s, to_s) pairs)."""
    at = frames[0] * 320
    for i in frames:
        while sound and at * 40_000_000 // 320 <= i * 40_000_000:
            if not any(a * 8000 <= at < b * 8000 for a, b in skip):
                w.write(Packet(1, at, at, True, b"\xff" * 160))
            at += 160
        key, data = au(i)
        w.write(Packet(0, i * FRAME, i * FRAME, key, data))


def _gaps_s(store):
    return [((a - START_NS) / 1e9, (b - START_NS) / 1e9)
            for a, b in store.timeline("cam", None, None).gaps]  # fmt: skip


@pytest.mark.parametrize("twin", sorted(_native.implementations()))
def test_holes_are_gaps_however_they_fall(store_dir, twin):
    """Found by an audit of the first rules: a hole hidden when the sound was lost with the
    pictures (the first sound after it comes before the keyframe), after one slow interval
    raised the limit for the rest of the run, when the GOP's last frame came after it, and
    when the recording ended before the next keyframe, or in a run's first GOP; and a false
    one where the pictures stalled inside a GOP while the sound went on."""
    cases = {
        # 3 s of sound and pictures lost, up to the keyframe at 8 s
        "sound_lost_too": ([*range(125), *range(200, 300)], [(5, 8)], [(5.0, 8.0)]),
        # a 1.9 s loss at a keyframe (under the limit), then a 4 s one: still a gap
        "after_a_slow_interval": ([*range(103), *range(150, 200), *range(300, 400)],
                                  [(4.12, 6), (8, 12)], [(8.0, 12.0)]),
        # frames 102..198 lost, frame 199 and the keyframe come: a hole inside the GOP
        "before_the_last_frame": ([*range(102), 199, *range(200, 300)], [(4.08, 7.96)],
                                  [(4.08, 7.96)]),
        # a hole inside a GOP, and the recording ends before the next keyframe
        "then_the_end": ([*range(300), *range(400, 455)], [(12, 16)], [(12.0, 16.0)]),
        # the pictures stall 3 s inside a GOP while the sound goes on: no gap
        "stall_with_sound": ([*range(110), *range(185, 300)], [], []),
        # 4 s lost inside a run's first GOP (as after every reconnect): judged by its frames
        "in_the_first_gop": ([*range(10), *range(110, 200)], [(0.4, 4.4)], [(0.4, 4.4)]),
    }  # fmt: skip
    for name, (frames, lost, want) in cases.items():
        d = store_dir / name
        with open_store(d) as st, _native.use(twin), st.writer("cam", [VIDEO, AUDIO],
                                                               start_ns=START_NS) as w:  # fmt: skip
            _av(w, frames, skip=lost)
        with open_store(d) as st:
            assert [(round(a, 2), round(b, 2)) for a, b in _gaps_s(st)] == want, name


def test_a_camera_lowering_its_frame_rate_at_a_keyframe_leaves_no_gap(store):
    """25 fps, then a still scene: the next frame, a keyframe, comes a second later, and one
    a second after that (dynamic frame rate). Nothing was lost: one run, no gap."""
    sec = 25 * FRAME
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 50)
        for j in range(5):
            ts = 49 * FRAME + (j + 1) * sec
            w.write(Packet(0, ts, ts, True, au(0)[1]))
    assert "gap" not in events(store) and store.timeline("cam", None, None).gaps == []
    assert len(list(store.index.segments(store.camera_num("cam")))) == 1


def test_a_slow_camera_of_keyframes_only_leaves_no_gap(store):
    """A frame a second, every one a keyframe: the first frame's time is not known when
    the second comes, and that is no hole."""
    sec = 25 * FRAME
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        for i in range(10):
            w.write(Packet(0, i * sec, i * sec, True, au(0)[1]))
    assert "gap" not in events(store) and store.timeline("cam", None, None).gaps == []


def test_sound_recorded_while_the_pictures_stalled_is_no_gap(store):
    """The pictures stop for 2 s while the sound goes on: that sound is recorded footage,
    on the timeline and in a clip, not a gap."""
    from vstore.export.clip_plan import plan_clip

    with store.writer("cam", [VIDEO, AUDIO], start_ns=START_NS) as w:
        vt = at = 0
        for block in range(2):
            for i in range(50):
                while at * 10**9 // 8000 < vt * 10**9 // 90000:
                    w.write(Packet(1, at, at, True, b"\xff" * 160))
                    at += 160
                key, data = au(i)
                w.write(Packet(0, vt, vt, key, data))
                vt += FRAME
            vt += 2 * 90000 if block == 0 else 0
    assert store.timeline("cam", None, None).gaps == []
    plan = plan_clip(store, "cam", START_NS + 2_500_000_000, START_NS + 3_500_000_000)
    assert plan.parts and not plan.gaps


def test_mpegts_33bit_pts_wrap_is_continuous(store):
    start = (1 << 33) - 30 * FRAME
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        for i in range(75):
            key, data = au(i)
            ts = (start + i * FRAME) % (1 << 33)
            w.write(Packet(0, ts, ts, key, data))
    assert events(store) == ["pts_wrap"]
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert len(pk) == 75
    walls = [p.wall_ns for p in pk]
    assert all(b - a == 40_000_000 for a, b in itertools.pairwise(walls))


def test_missing_timestamps_are_synthesized_and_flagged(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 10)
        for i in range(10, 20):
            key, data = au(i)
            w.write(Packet(0, None, None, key, data))
        stats = w.stats
    assert stats.timestamps_synthesized == 10
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    assert [p.dts for p in pk] == [i * FRAME for i in range(20)]


def test_repeated_dts_keeps_order(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 10)
        key, data = au(10)
        w.write(Packet(0, 9 * FRAME, 9 * FRAME, key, data))  # same dts as the previous one
        push(w, 5, start=11 * FRAME, first_index=11)
        assert w.stats.non_monotonic == 1
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    dts = [p.dts for p in pk]
    assert len(pk) == 16 and dts == sorted(dts) and len(set(dts)) == 16


def test_stream_without_keyframe_stores_nothing_and_counts(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        for i in range(30):
            w.write(Packet(0, i * FRAME, i * FRAME, False, SLICE))
        assert w.stats.dropped_before_keyframe == 30
        assert w.stats.packets == 0
    assert chunk_rows(store) == []
    assert list(store.layout.iter_segment_files()) == []


def test_keyframe_without_parameter_sets_is_dropped_until_they_arrive(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        w.write(Packet(0, 0, 0, True, IDR))  # no SPS/PPS anywhere yet: undecodable
        w.write(Packet(0, FRAME, FRAME, False, SLICE))
        push(w, 25, start=2 * FRAME, first_index=0)
        assert w.stats.dropped_no_params == 1
        assert w.stats.dropped_before_keyframe == 1
        assert w.stats.packets == 25
    seg = next(store.index.segments(store.camera_num("cam")))
    from vstore.segment.reader import SegmentReader

    with SegmentReader.open(store.layout.path(seg.path)) as rd:
        assert rd.meta.tracks[0].extradata == SPS + PPS  # self-describing from in-band sets


def test_parameter_set_change_starts_new_segment(store):
    with store.writer("cam", [VIDEO], start_ns=START_NS) as w:
        push(w, 50)
        for i in range(50, 100):
            key, data = au(i, sps=SPS2)
            w.write(Packet(0, i * FRAME, i * FRAME, key, data))
    segs = list(store.index.segments(store.camera_num("cam")))
    assert len(segs) == 2
    assert segs[0].end_ns == segs[1].start_ns
    assert "codec_parameters_changed" in events(store)


def test_audio_before_first_keyframe_waits_for_it_then_interleaves(store):
    """Sound sent ahead of the first keyframe waits for it: what is timed from the keyframe
    on goes into the first chunk (the run's footage used to begin silent), what is timed
    before it is dropped and counted."""
    with store.writer("cam", [VIDEO, AUDIO], start_ns=START_NS) as w:
        w.write(Packet(1, -320, -320, True, b"\xff" * 160))  # (before the keyframe's time)
        w.write(Packet(1, 0, 0, True, b"\xfe" * 320))  # (its time, sent ahead of it)
        for i in range(50):
            key, data = au(i)
            w.write(Packet(0, i * FRAME, i * FRAME, key, data))
            w.write(Packet(1, (i + 1) * 320, (i + 1) * 320, True, b"\x7f" * 320))
        assert w.stats.dropped_before_keyframe == 1
    pk = list(store.read_packets("cam", START_NS, START_NS + 10**12))
    audio = [p for p in pk if p.track == 1]
    assert len(audio) == 51 and bytes(audio[0].data) == b"\xfe" * 320
    assert audio[0].wall_ns == START_NS
    assert audio[1].wall_ns - START_NS == 40_000_000  # audio and video share the media clock
    # Sound whose keyframe never comes is counted as dropped when the writer closes.
    with store.writer("cam2", [VIDEO, AUDIO], start_ns=START_NS) as w2:
        for i in range(3):
            w2.write(Packet(1, i * 320, i * 320, True, b"\x7f" * 320))
    assert w2.stats.dropped_before_keyframe == 3 and w2.stats.packets == 0


def test_live_clock_drift_reanchors_with_event(store_dir):
    clock = FakeClock(wall_ns=START_NS)
    with open_store(store_dir, clock=clock) as st:
        with st.writer("cam", [VIDEO]) as w:
            for i in range(100):
                key, data = au(i)
                # The camera's clock runs 2x fast: media time outruns receive time.
                w.write(Packet(0, 2 * i * FRAME, 2 * i * FRAME, key, data))
                clock.advance(40_000_000)
                if i == 49:
                    clock.advance(60 * 10**9)  # and a 60 s stall in delivery
        assert "clock_drift" in events(st)
        rows = chunk_rows(st)
        assert_ordered(rows)
        segs = list(st.index.segments(st.camera_num("cam")))
        assert len(segs) >= 2


def test_a_live_camera_restarting_after_a_pause_leaves_a_gap_where_it_was(store_dir):
    """A camera silent 3 s that comes back with its timestamps restarted: the rebase spliced
    the pause shut, its footage stamped 3 s early and no gap shown. A live source's jump is
    placed by when the footage came."""
    with open_store(store_dir) as st:
        with st.writer("cam", [VIDEO]) as w:
            push(w, 100, wall=lambda i: START_NS + i * 40_000_000)  # 0 .. 4 s
            push(w, 50, wall=lambda i: START_NS + 7 * 10**9 + i * 40_000_000, first_index=100)
        [gap] = st.timeline("cam", None, None).gaps
        assert abs(gap[0] - (START_NS + 4 * 10**9)) < 10**8
        assert abs(gap[1] - (START_NS + 7 * 10**9)) < 10**8
        assert "timestamp_jump" in events(st)


def test_a_live_camera_s_clock_stepping_ahead_is_no_gap_and_no_future(store_dir):
    """A camera whose clock steps 10 s ahead while its frames keep coming: the hole rule took
    it for 10 s of lost footage and stamped the rest 10 s late. It is a clock step: the
    footage is placed by when it came, one run, no gap."""
    with open_store(store_dir) as st:
        with st.writer("cam", [VIDEO]) as w:
            push(w, 100, wall=lambda i: START_NS + i * 40_000_000)
            push(w, 100, start=100 * FRAME + 10 * 90000, first_index=100,
                 wall=lambda i: START_NS + (100 + i) * 40_000_000)  # fmt: skip
        assert st.timeline("cam", None, None).gaps == []
        assert "clock_step" in events(st)
        last = chunk_rows(st)[-1]
        assert last.end_ns <= START_NS + 200 * 40_000_000 + 10**8  # (not 10 s ahead)


def test_host_clock_stepping_back_never_breaks_index_order(store_dir):
    clock = FakeClock(wall_ns=START_NS)
    with open_store(store_dir, clock=clock) as st:
        w = st.writer("cam", [VIDEO])
        push(w, 50, wall=lambda i: START_NS + i * 40_000_000)
        w.new_run(reason="reconnect")
        # After the reconnect the host clock is 1 hour behind (NTP step backwards).
        push(w, 50, wall=lambda i: START_NS - 3600 * 10**9 + i * 40_000_000)
        w.close()
        rows = chunk_rows(st)
        assert_ordered(rows)
        # Placed at the clock's time in the free hour before (K2), or clamped after (T3).
        assert {"clock_behind", "clock_stepped_back"} & set(events(st))
        assert sum(r.packet_count for r in rows) == 100


def test_reconnect_gap_is_recorded(store_dir):
    clock = FakeClock(wall_ns=START_NS)
    with open_store(store_dir, clock=clock) as st:
        w = st.writer("cam", [VIDEO])
        push(w, 50, wall=lambda i: START_NS + i * 40_000_000)
        w.new_run(reason="reconnect")
        push(w, 50, wall=lambda i: START_NS + 60 * 10**9 + i * 40_000_000)
        w.close()
        tl = st.timeline("cam", None, None)
        assert len(tl.covered) == 2 and len(tl.gaps) == 1
        assert "gap" in events(st)
        [summary] = st.cameras()
        assert summary.gaps == 1


@pytest.mark.parametrize(
    "bad",
    [
        Packet(5, 0, 0, True, IDR),
        Packet(None, 0, 0, True, IDR),  # type: ignore[arg-type]
    ],
)
def test_unknown_track_is_a_clear_error(store, bad):
    from vstore.base.errors import UsageError

    with (
        store.writer("cam", [VIDEO], start_ns=START_NS) as w,
        pytest.raises(UsageError, match="unknown track"),
    ):
        w.write(bad)


def test_writer_requires_one_video_track(store):
    from vstore.base.errors import UsageError

    with pytest.raises(UsageError, match="video"):
        store.writer("cam", [AUDIO])


def _store_dir(tmp_path, store_toml: str):
    """A store directory whose vstore.toml [store] table holds ``store_toml``."""
    d = tmp_path / "store"
    d.mkdir()
    (d / "vstore.toml").write_text(f"[store]\n{store_toml}\n")
    return d


def test_write_many_stores_exactly_what_write_raw_stores(tmp_path, impl):
    """The batch call (the native MPEG-TS path's) against one call per packet, with the
    awkward cases inside the batches: keyframes, a corrupt packet, a timestamp jump, a
    repeated timestamp, a chunk filled to its byte limit."""
    from vstore.api import open_store

    d = _store_dir(tmp_path, "max_chunk_bytes = 65536\nfsync_interval_s = 60")
    items = []
    t = 0
    for i in range(400):
        key, data = au(i)
        t += FRAME if i != 200 else 50 * 90000  # a jump
        if i == 300:
            t -= FRAME  # a repeat
        items.append((0, t, t, key, data + bytes(3000 * (i % 7)), None, i == 123))
    with open_store(d) as st:
        a = st.writer("one-by-one", [VIDEO], start_ns=10**18)
        for it in items:
            a.write_raw(*it)
        a.close()
        b = st.writer("batched", [VIDEO], start_ns=10**18)
        for k in range(0, len(items), 37):
            b.write_many(items[k : k + 37])
        b.close()
        sa, sb = a.stats.as_dict(), b.stats.as_dict()
        assert sa == sb and sa["packets"] > 390

        def stored(cam):
            return [
                (p.pts, p.dts, p.is_key, p.corrupt, p.data) for p in st.read_packets(cam, 0, 2**62)
            ]

        assert stored("one-by-one") == stored("batched")
        ca = [
            (c.start_ns, c.length, c.flags)
            for c in st.index.chunks(st.camera_num("one-by-one"), 0, 2**62)
        ]
        cb = [
            (c.start_ns, c.length, c.flags)
            for c in st.index.chunks(st.camera_num("batched"), 0, 2**62)
        ]
        assert ca == cb


def test_compiled_write_raw_stores_exactly_what_the_method_stores(tmp_path, impl):
    """``writer.write_raw`` is the FastPath's (no Python frame for an ordinary packet); the
    class's own ``write_raw`` is the reference. Same packets, bytearray and memoryview data,
    a corrupt packet, a jump and chunks filled to their limit: the same footage and rows."""
    from vstore.api import open_store
    from vstore.store.camera_writer import CameraWriter

    d = _store_dir(tmp_path, "max_chunk_bytes = 65536\nfsync_interval_s = 60")
    items = []
    t = 0
    for i in range(300):
        key, data = au(i)
        t += FRAME if i != 150 else 50 * 90000
        body = data + bytes(4000 * (i % 5))
        if i % 11 == 3:
            body = bytearray(body)
        elif i % 13 == 4:
            body = memoryview(body)
        items.append((0, t, t, key, body, None, i == 77))
    with open_store(d) as st:
        fast = st.writer("fast", [VIDEO], start_ns=10**18)
        ref = st.writer("ref", [VIDEO], start_ns=10**18)
        for it in items:
            fast.write_raw(*it)
            CameraWriter.write_raw(ref, *it)
        fast.close()
        ref.close()
        assert fast.stats.as_dict() == ref.stats.as_dict()
        assert fast.stats.packets == 300 and fast.stats.chunks > 10

        def stored(cam):
            return [
                (p.pts, p.dts, p.is_key, p.corrupt, bytes(p.data))
                for p in st.read_packets(cam, 0, 2**62)
            ]

        assert stored("fast") == stored("ref")
        assert [
            (c.start_ns, c.length, c.flags)
            for c in st.index.chunks(st.camera_num("fast"), 0, 2**62)
        ] == [
            (c.start_ns, c.length, c.flags) for c in st.index.chunks(st.camera_num("ref"), 0, 2**62)
        ]
        with pytest.raises(VstoreError, match="closed"):
            fast.write_raw(*items[5][:5])  # an ordinary packet: the fast path refuses it too


def test_a_write_raw_held_across_new_run_never_uses_the_old_state(tmp_path):
    """A caller that keeps ``wr = w.write_raw`` across ``new_run(tracks)`` (which rebuilds
    the timestamp state) must get the new run's rules: P-frames before the new run's first
    keyframe are dropped, exactly as through the method."""
    from vstore.api import open_store
    from vstore.store.camera_writer import CameraWriter

    d = _store_dir(tmp_path, "fsync_interval_s = 60")

    def feed(w, wr):
        for i in range(60):
            key, data = au(i)
            wr(0, i * FRAME, i * FRAME, key, data)
        w.new_run([VIDEO], reason="reconnect")
        for i in range(60, 130):  # the stream goes on, but from a P-frame
            key, data = au(i + 5)
            wr(0, i * FRAME, i * FRAME, key, data)
        w.close()

    with open_store(d) as st:
        a = st.writer("held", [VIDEO], start_ns=10**18)
        held = a.write_raw
        feed(a, held)
        assert a.write_raw is held  # the new run reset the fast path in place: still in use
        b = st.writer("method", [VIDEO], start_ns=10**18)
        feed(b, lambda *args: CameraWriter.write_raw(b, *args))
        assert a.stats.as_dict() == b.stats.as_dict()
        assert a.stats.dropped_before_keyframe > 0

        def stored(cam):
            return [(p.dts, p.is_key, bytes(p.data)) for p in st.read_packets(cam, 0, 2**62)]

        assert stored("held") == stored("method")


def test_a_step_back_past_zero_is_reported_as_the_step_back_it_is():
    """FFmpeg gives a 90 kHz stream that steps back past 0 as a step forward of nearly
    2^33 ticks: the jump is reported as the step back (both twins)."""
    from vstore import _native

    for mod in {_native.ptable, __import__("vstore._py.ptable", fromlist=["x"])}:
        fp = mod.FastPath(mod.PacketTable(), 0, [(90000 * 30, True, -1, 0)])
        fp.normalise(0, 450_000_000, 450_000_000)
        fp.normalise(0, 450_003_600, 450_003_600)
        _dts, _pts, notes, jump = fp.normalise(0, 2**33, 2**33)
        assert notes & mod.TS_JUMPED and jump == 2**33 - 450_003_600 - 2**33, mod


def test_a_jump_of_the_source_s_clock_keeps_sound_and_pictures_together():
    """A jump of the source's clock (a spliced file, a camera's clock stepped back) used to
    rebase each track on its own, one step after its own last packet: sound and pictures
    came out as far apart as their last packets before the jump were (96 ms in a spliced
    file). The first track to see the jump sets the shift; the others take it (both twins)."""
    from vstore import _native

    video = (90000 * 30, True, -1, 0, 1, 90000)
    audio = (48000 * 30, False, -1, 0, 1, 48000)
    for mod in {_native.ptable, __import__("vstore._py.ptable", fromlist=["x"])}:
        fp = mod.FastPath(mod.PacketTable(), 0, [video, audio])
        out: dict[int, list[tuple[int, float]]] = {0: [], 1: []}
        rates = {0: 90000, 1: 48000}
        # 20 s of 25 fps pictures and 1024-sample AAC frames, in time order; at 10 s the
        # clock steps back 5000 s, and the sound after it begins 50 ms after the pictures
        # (a file spliced on: its own sound starts late).
        packets = sorted([(k * 3600 / 90000, 0, k * 3600) for k in range(500)]
                         + [(j * 1024 / 48000, 1, j * 1024) for j in range(937)
                            if not 10 <= j * 1024 / 48000 < 10.05])  # fmt: skip
        for at_s, t, ticks in packets:
            raw = ticks - (5000 * rates[t] if at_s >= 10 else 0)
            out[t].append((ticks, fp.normalise(t, raw, raw)[0] / rates[t]))
        # After the jump, each packet's time minus its source time is the same for both.
        shift_v = {round(o - t / 90000, 4) for t, o in out[0] if t >= 10 * 90000}
        shift_a = {round(o - t / 48000, 4) for t, o in out[1] if t >= 10 * 48000}
        assert len(shift_v) == 1 and len(shift_a) == 1, mod
        assert abs(shift_v.pop() - shift_a.pop()) < 1e-4, mod
