"""The compiled twins and their pure-Python references agree, on golden bytes and at random.

Every test here runs once per implementation (ids py/c); the hypothesis tests compare the two
directly when both are available.
"""

from __future__ import annotations

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import IMPLS
from vstore._native import (
    CODEC_H264,
    CODEC_HEVC,
    FORM_ADTS,
    FORM_ANNEXB,
    FORM_STORED,
    NAL_KEY,
    NAL_PPS,
    NAL_SPS,
    NAL_VCL,
    NAL_VPS,
)
from vstore.codec.aac import adts_to_asc
from vstore.codec.annexb import annexb_to_length_prefixed

SPS = b"\x67\x42\x00\x1f\xaa"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x21"
SLICE = b"\x41\x9a\x02\x03"
SEI = b"\x06\x05\x01\x02"


def annexb(*units: bytes, four: bool = True) -> bytes:
    sc = b"\x00\x00\x00\x01" if four else b"\x00\x00\x01"
    return b"".join(sc + u for u in units)


def avcc(*units: bytes) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


class TestNal:
    def test_h264_annexb_idr_with_parameter_sets(self, impl):
        data = annexb(SEI, SPS, PPS, IDR)
        assert impl["nal"].nal_flags(data, CODEC_H264, 0) == (NAL_KEY | NAL_SPS | NAL_PPS | NAL_VCL)
        assert impl["nal"].parameter_sets(data, CODEC_H264, 0) == annexb(SPS, PPS)

    def test_three_byte_start_codes(self, impl):
        data = annexb(SPS, PPS, IDR, four=False)
        assert impl["nal"].parameter_sets(data, CODEC_H264, 0) == annexb(SPS, PPS)

    def test_non_key_slice_stops_scan(self, impl):
        # A slice ends the scan: an SPS after it (in slice data) must not be reported.
        data = annexb(SLICE, SPS)
        assert impl["nal"].nal_flags(data, CODEC_H264, 0) == NAL_VCL

    def test_avcc_length_prefixed(self, impl):
        data = avcc(SPS, PPS, IDR)
        assert impl["nal"].nal_flags(data, CODEC_H264, 4) == (NAL_KEY | NAL_SPS | NAL_PPS | NAL_VCL)
        assert impl["nal"].parameter_sets(data, CODEC_H264, 4) == annexb(SPS, PPS)

    def test_avcc_truncated_length_is_not_read_past_end(self, impl):
        data = avcc(SPS) + b"\x00\x00\x10\x00\x65"  # claims 4096 bytes, has 1
        assert impl["nal"].nal_flags(data, CODEC_H264, 4) == NAL_SPS

    def test_hevc_irap_and_parameter_sets(self, impl):
        vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1"
        idr = b"\x26\x01\xaf"  # type 19 IDR_W_RADL
        trail = b"\x02\x01\xd0"  # type 1
        data = annexb(vps, sps, pps, idr)
        assert impl["nal"].nal_flags(data, CODEC_HEVC, 0) == (
            NAL_KEY | NAL_VPS | NAL_SPS | NAL_PPS | NAL_VCL
        )
        assert impl["nal"].parameter_sets(data, CODEC_HEVC, 0) == annexb(vps, sps, pps)
        assert impl["nal"].nal_flags(annexb(trail), CODEC_HEVC, 0) == NAL_VCL

    @pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x01", b"garbage without codes"])
    def test_garbage_and_empty(self, impl, data):
        assert impl["nal"].nal_flags(data, CODEC_H264, 0) in (0,)
        assert impl["nal"].parameter_sets(data, CODEC_H264, 0) == b""

    def test_first_key_finds_a_keyframe_on_the_video_track_only(self, impl):
        def pkt(track, data):
            return (track, 0, 0, False, data, 0, False)

        p_frames = [pkt(0, annexb(SEI, SLICE)), pkt(1, b"\xff\xf1audio")]
        key = pkt(0, annexb(SPS, PPS, IDR))
        first_key = impl["nal"].first_key
        assert first_key([], 0, CODEC_H264) == -1
        assert first_key(p_frames, 0, CODEC_H264) == -1
        assert first_key([*p_frames, key, *p_frames, key], 0, CODEC_H264) == 2
        # An IDR's bytes on another track (audio, data) are not a video keyframe.
        assert first_key([*p_frames, pkt(1, annexb(SPS, PPS, IDR))], 0, CODEC_H264) == -1
        assert first_key([pkt(0, memoryview(annexb(IDR)))], 0, CODEC_H264) == 0  # any buffer
        assert first_key([pkt(0, b"")], 0, CODEC_H264) == -1

    def test_sample_sizes_are_the_sizes_annexb_to_length_prefixed_makes(self, impl):
        packets = [
            annexb(SPS, PPS, IDR),  # 4-byte start codes: the same size
            annexb(SEI, SLICE, four=False),  # 3-byte: one byte more a unit
            b"junk" + annexb(SLICE),  # bytes before the first start code are dropped
            annexb(SLICE) + b"\x00\x00" + annexb(SLICE, four=False),  # trailing zeros too
            b"\x00\x00\x01\x00\x00\x01" + SLICE,  # an empty unit is skipped
            b"",
            b"\xff\xf1 audio, left as it is",
        ]
        adts = [
            b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x21" * 9,  # 7-byte header, no CRC
            b"\xff\xf0\x50\x80\x02\x1f\xfc\x00\x00" + b"\x21" * 9,  # 9 bytes: with CRC
            b"\x21" * 12,  # no ADTS header: stored whole
        ]
        packets += adts
        tracks = bytes([0, 0, 0, 0, 0, 0, 1, 2, 2, 2])
        forms = bytes([FORM_ANNEXB, FORM_STORED, FORM_ADTS])
        col = impl["nal"].sample_sizes(packets, tracks, forms)
        got = [int.from_bytes(col[i : i + 4], "little") for i in range(0, len(col), 4)]
        want = [len(annexb_to_length_prefixed(p)) for p in packets[:6]] + [len(packets[6])]
        want += [len(a) - adts_to_asc(a[:7])[1] if adts_to_asc(a[:7]) else len(a) for a in adts]
        assert got == want
        assert got[:3] == [len(packets[0]), len(packets[1]) + 2, len(packets[2]) - 4]
        assert got[7:] == [9, 9, 12]
        views = [memoryview(p) for p in packets]  # any buffer, as the writer holds them
        assert impl["nal"].sample_sizes(views, tracks, forms) == col
        assert impl["nal"].sample_sizes(packets, tracks, b"") == b"".join(
            len(p).to_bytes(4, "little") for p in packets
        )
        with pytest.raises(ValueError):
            impl["nal"].sample_sizes(packets, tracks[:-1], forms)

    @pytest.mark.parametrize("name,codec", [("h264.ts", CODEC_H264), ("hevc.ts", CODEC_HEVC)])
    def test_real_encoder_output(self, impl, media, name, codec):
        path = media(name, 2.5, codec=name.split(".")[0], gop_frames=25)
        keys = 0
        with av.open(str(path)) as c:
            for pkt in c.demux(video=0):
                if not pkt.size:
                    continue
                flags = impl["nal"].nal_flags(bytes(pkt), codec, 0)
                assert bool(flags & NAL_KEY) == bool(pkt.is_keyframe)
                key_at = impl["nal"].first_key([(0, 0, 0, 0, bytes(pkt))], 0, codec)
                assert key_at == (0 if pkt.is_keyframe else -1)
                if pkt.is_keyframe:
                    keys += 1
                    assert flags & NAL_SPS and flags & NAL_PPS
        assert keys >= 2


@pytest.mark.skipif(len(IMPLS) < 2, reason="compiled extensions not built")
class TestTwinsAgree:
    @settings(max_examples=300, deadline=None)
    @given(
        st.binary(max_size=200), st.sampled_from([CODEC_H264, CODEC_HEVC]), st.sampled_from([0, 4])
    )
    def test_nal_random_bytes(self, data, codec, length_size):
        py, c = IMPLS["py"]["nal"], IMPLS["c"]["nal"]
        assert py.nal_flags(data, codec, length_size) == c.nal_flags(data, codec, length_size)
        assert py.parameter_sets(data, codec, length_size) == c.parameter_sets(
            data, codec, length_size
        )

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.binary(max_size=120), max_size=8),
        st.lists(st.sampled_from([FORM_STORED, FORM_ANNEXB, FORM_ADTS]), max_size=3),
    )
    def test_sample_sizes_random_bytes(self, packets, form_list):
        # Random bytes hold few start codes or ADTS syncwords: splice some in.
        packets = [
            p.replace(b"\x07", b"\x00\x00\x01").replace(b"\x08", b"\xff\xf1") for p in packets
        ]
        tracks = bytes(i % 3 for i in range(len(packets)))
        forms = bytes(form_list)
        py, c = IMPLS["py"]["nal"], IMPLS["c"]["nal"]
        col = c.sample_sizes(packets, tracks, forms)
        assert py.sample_sizes(packets, tracks, forms) == col
        for i, p in enumerate(packets):
            form = forms[tracks[i]] if tracks[i] < len(forms) else FORM_STORED
            want = len(p)
            if form == FORM_ANNEXB:
                want = len(annexb_to_length_prefixed(p))
            elif form == FORM_ADTS and (conv := adts_to_asc(p[:7])) is not None:
                want -= conv[1]
            assert int.from_bytes(col[4 * i : 4 * i + 4], "little") == want

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(-(2**40), 2**40),
                st.integers(0, 2**20),
                st.integers(0, 2**32 - 1),
                st.integers(0, 255),
                st.integers(0, 255),
            ),
            max_size=50,
        )
    )
    def test_ptable_pack(self, rows):
        tables = [IMPLS[k]["ptable"].PacketTable() for k in ("py", "c")]
        for dts, cts, size, flags, track in rows:
            for t in tables:
                t.append(dts, dts + cts, size, flags, track)
        assert tables[0].pack() == tables[1].pack()
        assert tables[0].payload_bytes == tables[1].payload_bytes

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.integers(-(2**63), 2**63 - 1))
    def test_keycodec(self, cam, t):
        py, c = IMPLS["py"]["keycodec"], IMPLS["c"]["keycodec"]
        assert py.encode_key(b"K", cam, t) == c.encode_key(b"K", cam, t)
        assert c.decode_key(c.encode_key(b"K", cam, t)) == (b"K", cam, t)

    @settings(max_examples=300, deadline=None)
    @given(
        st.integers(0, 2**32 - 1),
        st.integers(-(2**62), 2**62),
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**40),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**61),
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
    )
    def test_chunk_rows(self, cam, start, seg, off, length, n, dur, crc, flags):
        py, c = IMPLS["py"]["keycodec"], IMPLS["c"]["keycodec"]
        v = py.encode_chunk_value(seg, off, length, n, dur, crc, flags)
        assert c.encode_chunk_value(seg, off, length, n, dur, crc, flags) == v
        key = py.encode_key(b"K", cam, start)
        expect = (cam, start, start + dur, seg, off, length, n, crc, flags)
        assert py.decode_chunk_row(key, v) == c.decode_chunk_row(key, v) == expect


class TestChunkRowCodec:
    def test_golden_value(self, impl):
        v = impl["keycodec"].encode_chunk_value(7, 370, 87, 2, 2_000_000_000, 0x05E5D39D, 1)
        assert v.hex() == "07f2025702" + "80a8d6b907" + "9dd3e505" + "01"

    @pytest.mark.parametrize("cut", [0, 1, 5, 10, 13])
    def test_truncated_value_is_an_error(self, impl, cut):
        kc = impl["keycodec"]
        v = kc.encode_chunk_value(7, 370, 87, 2, 2_000_000_000, 0x05E5D39D, 1)
        with pytest.raises(ValueError):
            kc.decode_chunk_row(kc.encode_key(b"K", 1, 0), v[:cut])


class TestKeyOrder:
    @settings(max_examples=300, deadline=None)
    @given(
        st.integers(0, 2**32 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(-(2**63), 2**63 - 1),
    )
    def test_key_order_is_camera_then_time(self, cam_a, t_a, cam_b, t_b):
        for mods in IMPLS.values():
            kc = mods["keycodec"]
            a, b = kc.encode_key(b"K", cam_a, t_a), kc.encode_key(b"K", cam_b, t_b)
            assert (a < b) == ((cam_a, t_a) < (cam_b, t_b))

    def test_golden_key_bytes(self, impl):
        key = impl["keycodec"].encode_key(b"K", 1, 1_737_075_600_000_000_000)
        assert key.hex() == "4b00000001" + "981b550e05ffa000"
        assert impl["keycodec"].decode_key(key) == (b"K", 1, 1_737_075_600_000_000_000)


class TestPacketTable:
    def test_pack_golden(self, impl):
        t = impl["ptable"].PacketTable()
        t.append(1000, 1000, 5000, 1, 0)
        t.append(4600, 8200, 300, 0, 0)
        t.append(4000, 4000, 40, 0, 1)
        raw = t.pack()
        assert len(raw) == 3 * 18
        assert raw.hex() == (
            "e803000000000000"
            "100e000000000000"
            "a8fdffffffffffff"  # dts deltas
            "00000000"
            "100e0000"
            "00000000"  # cts
            "88130000"
            "2c010000"
            "28000000"  # sizes
            "010000"
            "000001"  # flags, tracks
        )
        assert t.payload_bytes == 5340
        t.reset()
        assert len(t) == 0 and t.pack() == b""

    def test_cts_overflow_is_refused(self, impl):
        t = impl["ptable"].PacketTable()
        with pytest.raises(OverflowError):
            t.append(0, 2**31, 1, 0, 0)


# --- timestamp normalisation: the FastPath twins --------------------------------------------

TICK = 3600  # one 25 fps frame at 90 kHz
WRAP = 1 << 33
VIDEO_TRACK = (60 * 90000, True, CODEC_H264, 0)  # max jump 60 s, 33-bit wrap, Annex-B H.264
AUDIO_TRACK = (60 * 48000, False, -1, 0)


def _frames(dts_list, pts_shift=0):
    return [(0, None if d is None else d + pts_shift, d) for d in dts_list]


TIMESTAMP_CASES = {
    "steady": _frames([i * TICK for i in range(40)]),
    "b_frames": [(0, i * TICK + (2 * TICK if i % 3 else 0), i * TICK) for i in range(40)],
    "wrap": _frames([(WRAP - 10 * TICK + i * TICK) % WRAP for i in range(40)]),
    "pts_across_wrap": [
        (0, (WRAP - TICK + 3 * TICK) % WRAP, WRAP - TICK),
        (0, 2 * TICK, 0),
        *_frames([TICK * i for i in range(1, 10)]),
    ],
    "jump_forward": _frames([i * TICK for i in range(10)] + [10**9 + i * TICK for i in range(10)]),
    "clock_step_back": _frames(
        [10**9 + i * TICK for i in range(10)] + [i * TICK for i in range(10)]
    ),
    "repeat_and_reorder": _frames([0, TICK, TICK, 2 * TICK, 4 * TICK, 3 * TICK, 5 * TICK]),
    "missing": [
        (0, None, 0),
        (0, TICK, None),
        (0, None, None),
        (0, None, None),
        (0, 5 * TICK, 5 * TICK),
    ],
    "missing_first": [(0, None, None), (0, 0, 0), (0, TICK, TICK)],
    "drift": _frames(
        [sum(TICK + (1 if j % 2 else -1) * (j % 5) for j in range(i)) for i in range(60)]
    ),
    "pts_far_after_dts": [(0, i * TICK + (2**31 if i == 5 else 0), i * TICK) for i in range(10)],
    "pts_before_dts": [(0, i * TICK - (5 * TICK if i == 4 else 0), i * TICK) for i in range(10)],
    "hole": _frames([i * TICK + (3 * 90000 if i >= 20 else 0) for i in range(40)]),
    "with_audio": [
        p for i in range(30) for p in ((0, i * TICK, i * TICK), (1, i * 1920, i * 1920))
    ],
}


def _run_fast_path(ptable_mod, packets):
    """Drive a FastPath as the writer does: the fast path first, else ``normalise``."""
    table = ptable_mod.PacketTable()
    fp = ptable_mod.FastPath(table, 0, [VIDEO_TRACK, AUDIO_TRACK])
    out = []
    for n, (track, pts, dts) in enumerate(packets):
        data = b"\x00\x00\x00\x01\x41\x9a" + bytes([n % 256])  # a non-key H.264 slice
        payload: list = []
        if fp.push(track, pts, dts, False, data, payload) == ptable_mod.FAST_APPENDED:
            out.append(("fast", payload == [data]))
        else:
            r = fp.normalise(track, pts, dts)
            out.append(("slow", r))
            if r is not None:
                table.append(r[0], r[1], len(data), 0, track)
        fp.started = True  # the first packet stands for the writer's first keyframe
    states = [fp.state(t) for t in (0, 1)]
    return (out, states, table.pack(), fp.chunk_last_vpts, fp.chunk_vdelta, fp.chunk_gap,
            fp.chunk_gap_end)  # fmt: skip


@pytest.mark.parametrize("case", sorted(TIMESTAMP_CASES))
def test_timestamp_normalisation_keeps_dts_increasing_and_pts_at_or_after_it(impl, case):
    import numpy as np

    packed = _run_fast_path(impl["ptable"], TIMESTAMP_CASES[case])[2]
    n = len(packed) // 18
    dts = np.cumsum(np.frombuffer(packed[: 8 * n], "<i8"))
    cts = np.frombuffer(packed[8 * n : 12 * n], "<i4")
    tracks = np.frombuffer(packed[17 * n :], "u1")
    for t in (0, 1):
        assert (np.diff(dts[tracks == t]) > 0).all()
    assert (cts >= 0).all()


@pytest.mark.skipif(len(IMPLS) < 2, reason="compiled extensions not built")
@pytest.mark.parametrize("case", sorted(TIMESTAMP_CASES))
def test_timestamp_normalisation_twins_agree(case):
    packets = TIMESTAMP_CASES[case]
    py = _run_fast_path(IMPLS["py"]["ptable"], packets)
    c = _run_fast_path(IMPLS["c"]["ptable"], packets)
    assert py == c
    assert any(kind == "fast" for kind, _ in py[0])  # the pure twin takes packets too


@pytest.mark.skipif(len(IMPLS) < 2, reason="compiled extensions not built")
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 0, 0, 1]),
            st.one_of(st.none(), st.integers(-(2**34), 2**34)),
            st.one_of(st.none(), st.integers(-(2**34), 2**34)),
        ),
        max_size=60,
    )
)
def test_timestamp_normalisation_twins_agree_at_random(packets):
    assert _run_fast_path(IMPLS["py"]["ptable"], packets) == _run_fast_path(
        IMPLS["c"]["ptable"], packets
    )


def test_normalisation_notes_are_the_same_numbers_in_both_twins():
    names = [n for n in dir(IMPLS["py"]["ptable"]) if n.startswith("TS_")]
    assert len(names) == 7
    for mod in IMPLS.values():
        assert [getattr(mod["ptable"], n) for n in names] == [
            getattr(IMPLS["py"]["ptable"], n) for n in names
        ]


KEY = 1  # the key flag the tests give select_track
TB = (1, 12800)  # FFmpeg's MP4 time base at 25 fps: 512 ticks a frame


def _bframe_gop(n: int, first_pts: int, leading: int = 0) -> tuple[list[int], list[int]]:
    """pts and dts of a GOP in decode order with 2 B-frames (I P B B P B B ...), 512 ticks a
    frame; ``leading`` B-frames after the keyframe shown before it (an open GOP)."""
    order = [0]
    order += [-(k + 1) for k in range(leading)]  # leading frames: shown before the keyframe
    k = 1
    while k < n:
        p = min(k + 2, n - 1)
        order.append(p)
        order += range(k, p)
        k = p + 1
    pts = [first_pts + 512 * o for o in order][:n]
    dts = [first_pts - 1024 + 512 * i for i in range(len(pts))]
    return pts, dts


class TestClipTables:
    """The per-packet arithmetic of clip sample tables (cliptab), in each twin."""

    def test_select_keeps_the_range_and_cuts_video_in_decode_order(self, impl):
        pts, dts = _bframe_gop(10, 0)
        track = bytes(len(pts))
        flags = bytes([KEY] + [0] * (len(pts) - 1))
        # The clip ends 4.5 frames in: frames shown at 0..4 stay; in decode order the cut
        # comes after the last of them, so the P-frame shown at 6 (sent before the B-frames
        # at 4 and 5) stays too, for the frame at 4 to decode.
        end_ns = 4 * 40_000_000 + 20_000_000
        got = impl["cliptab"].select_track(
            pts, dts, flags, track, 0, *TB, 0, end_ns, 12800, True, False, KEY
        )
        assert got is not None
        sel, d_out, c_out, keys = got
        shown = sorted(pts[i] for i in sel)
        assert shown == [0, 512, 1024, 1536, 2048, 3072]
        assert sel == list(range(len(sel)))  # a prefix in decode order
        assert keys == [0]
        assert [d + c for d, c in zip(d_out, c_out, strict=True)] == [pts[i] for i in sel]

    def test_select_leaves_out_the_first_keyframes_leading_frames(self, impl):
        pts, dts = _bframe_gop(8, 1024, leading=2)
        track = bytes(len(pts))
        flags = bytes([KEY] + [0] * (len(pts) - 1))
        args = (pts, dts, flags, track, 0, *TB, 0, 10**12, 12800, True)
        first = impl["cliptab"].select_track(*args, True, KEY)
        later = impl["cliptab"].select_track(*args, False, KEY)
        assert first is not None and later is not None
        assert [pts[i] for i in later[0]] == pts
        assert all(pts[i] >= 1024 for i in first[0]) and len(first[0]) == len(pts) - 2

    def test_select_audio_keeps_what_is_shown_inside(self, impl):
        pts = list(range(0, 1024 * 10, 1024))
        track = bytes([1] * 10)
        got = impl["cliptab"].select_track(
            pts,
            pts,
            bytes([KEY] * 10),
            track,
            1,
            1,
            48000,
            -42_666_667,  # the 3rd frame (2,048 ticks) at the clip's start
            10**8,
            48000,
            False,
            False,
            KEY,
        )
        assert got is not None
        # Frames shown from 0 ms to 85 ms stay; the 8th, at 107 ms, is past the end (100 ms).
        assert got[0] == [2, 3, 4, 5, 6]
        assert (
            impl["cliptab"].select_track(
                pts, pts, bytes(10), track, 0, 1, 48000, 0, 10**9, 48000, False, False, KEY
            )
            is None
        )  # (no packet of track 0)

    def test_tables(self, impl):
        ct = impl["cliptab"]
        assert ct.durations([]) == []
        assert ct.durations([5]) == [1]
        assert ct.durations([5], 1024) == [1024]  # a lone sample lasts what it says
        assert ct.durations([5, 9], 1024) == [4, 4]
        assert ct.durations([0, 512, 1024, 1000]) == [512, 512, 1, 1]
        assert ct.presentation([0, 512], [1024, 0], [512, 512]) == (512, 1536)
        assert ct.presentation([], [], []) == (0, 0)
        assert ct.runs([]) == []
        assert ct.runs([3, 3, 3, 1, 3]) == [3, 3, 1, 1, 1, 3]


_times = st.integers(-(2**45), 2**45)


@pytest.mark.skipif(len(IMPLS) < 2, reason="compiled extensions not built")
class TestClipTablesTwinsAgree:
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.integers(-(2**64), 2**64), max_size=40),
        st.sampled_from([(1, 12800), (1, 90000), (1001, 30000), (1, 1), (7, 2**33)]),
        st.integers(-(2**63), 2**63),
        st.sampled_from([1, 12800, 48000, 90000, 2**40]),
    )
    def test_conversions(self, ticks, tb, plus, scale):
        py, c = IMPLS["py"]["cliptab"], IMPLS["c"]["cliptab"]
        assert py.ticks_to_ns_many(ticks, *tb, plus) == c.ticks_to_ns_many(ticks, *tb, plus)
        assert py.ns_to_ticks_many(ticks, scale) == c.ns_to_ticks_many(ticks, scale)

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(st.tuples(_times, st.integers(-(2**20), 2**20), st.integers(0, 3)), max_size=60),
        st.integers(0, 3),
        st.sampled_from([(1, 12800), (1, 90000), (1001, 30000), (1, 48000)]),
        st.integers(-(2**46), 2**46),
        st.integers(-(2**40), 2**46),
        st.sampled_from([12800, 48000, 90000]),
        st.booleans(),
        st.booleans(),
    )
    def test_select(self, rows, tr, tb, plus, end, scale, video, first):
        pts = [d + c for d, c, _ in rows]
        dts = [d for d, _, _ in rows]
        track = bytes(t for _, _, t in rows)
        flags = bytes((d + t) & 3 for d, _, t in rows)
        covering = 21_333_333 if (plus + end) % 2 else 0  # (audio: a frame playing at 0)
        args = (pts, dts, flags, track, tr, *tb, plus, end, scale, video, first, KEY, covering)
        assert IMPLS["py"]["cliptab"].select_track(*args) == IMPLS["c"]["cliptab"].select_track(
            *args
        )

    def test_select_past_64_bits_is_the_pure_answer(self):
        pts = [2**62 + 5, 2**70]
        args = (pts, pts, b"\x01\x00", b"\x00\x00", 0, 1, 90000, 0, 2**80, 90000, True, True, 1)
        assert IMPLS["py"]["cliptab"].select_track(*args) == IMPLS["c"]["cliptab"].select_track(
            *args
        )

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(_times, st.integers(-(2**30), 2**30), _times), max_size=50))
    def test_tables(self, rows):
        py, c = IMPLS["py"]["cliptab"], IMPLS["c"]["cliptab"]
        dts = [r[0] for r in rows]
        cts = [r[1] for r in rows]
        durs = [r[2] for r in rows]
        assert py.durations(dts) == c.durations(dts)
        assert py.durations(dts[:1], 1024) == c.durations(dts[:1], 1024)
        assert py.presentation(dts, cts, durs) == c.presentation(dts, cts, durs)
        assert py.runs(cts) == c.runs(cts)
        small = [v % 3 for v in dts]
        assert py.runs(small) == c.runs(small)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.data())
    def test_sample_runs(self, sizes, data):
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        payload = memoryview(bytes(range(256)) * (1 + sum(sizes) // 256))
        idxs = sorted(data.draw(st.sets(st.integers(0, len(sizes) - 1))))
        got = [IMPLS[k]["cliptab"].sample_runs(payload, offsets, sizes, idxs) for k in ("py", "c")]
        assert got[0][0] == got[1][0] == [sizes[i] for i in idxs]
        assert [bytes(b) for b in got[0][1]] == [bytes(b) for b in got[1][1]]
        assert b"".join(got[1][1]) == b"".join(
            payload[offsets[i] : offsets[i] + sizes[i]] for i in idxs
        )
