"""The native MPEG-TS path: both demuxer twins give exactly PyAV's packets, whatever the read
slicing; damage (a lost transport packet, garbage between packets, a truncated stream) is
flagged, never silent; AAC PES split into ADTS frames; the probe and the FFmpeg fallback."""

from __future__ import annotations

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.camsim import StreamSpec, write_file
from vstore import _native
from vstore.base.errors import SourceError
from vstore.codec.aac import split_adts
from vstore.codec.annexb import annexb_units
from vstore.ingest.mpegts import _probe_bytes, probe
from vstore.ingest.tracks import tracks_from_av

TWINS = _native.implementations()


@pytest.fixture(params=sorted(TWINS), ids=lambda k: k)
def demuxer(request):
    return TWINS[request.param]["tsdemux"].TsDemuxer


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("ts")
    for codec in ("h264", "hevc"):
        p = d / f"{codec}.ts"
        write_file(str(p), StreamSpec(codec=codec, gop_frames=25, audio="aac"), 3)
        out[codec] = p.read_bytes()
    return out


def pyav_packets(data: bytes):
    import io

    with av.open(io.BytesIO(data), format="mpegts") as c:
        return [(p.stream.id, p.pts, p.dts, bytes(p)) for p in c.demux() if p.size]


def demux_all(cls, data: bytes, step: int = 1000):
    d = cls()
    out = []
    for k in range(0, len(data), step):
        out += d.feed(data[k : k + step])
    out += d.flush()
    return d, out


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_native_demux_gives_exactly_pyavs_packets(demuxer, streams, codec):
    data = streams[codec]
    d, got = demux_all(demuxer, data)
    # Per stream, the same packets in the same order (streams interleave by arrival).
    ref = pyav_packets(data)
    for pid in (256, 257):
        assert [(*g[:3], g[4]) for g in got if g[0] == pid] == [p for p in ref if p[0] == pid]
    assert len(got) == len(ref)
    assert not any(c for *_x, c in got)
    assert set(d.streams.values()) == {0x1B if codec == "h264" else 0x24, 0x0F}
    assert (d.resyncs, d.cc_errors, d.tei_errors) == (0, 0, 0)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 5000), min_size=1, max_size=40))
def test_any_read_slicing_gives_the_same_packets(streams, cuts):
    data = streams["h264"]
    for twin in TWINS.values():
        cls = twin["tsdemux"].TsDemuxer
        _d, whole = demux_all(cls, data, len(data))
        d = cls()
        got, pos, i = [], 0, 0
        while pos < len(data):
            n = cuts[i % len(cuts)]
            got += d.feed(data[pos : pos + n])
            pos += n
            i += 1
        got += d.flush()
        assert got == whole


def test_twins_agree_on_damaged_input(streams):
    import random

    rnd = random.Random(7)
    data = bytearray(streams["h264"])
    for _ in range(20):  # flipped bytes, cut packets, inserted garbage
        k = rnd.randrange(len(data))
        op = rnd.randrange(3)
        if op == 0:
            data[k] ^= 0xFF
        elif op == 1:
            del data[k : k + rnd.randrange(1, 400)]
        else:
            data[k:k] = rnd.randbytes(rnd.randrange(1, 300))
    results = {name: demux_all(t["tsdemux"].TsDemuxer, bytes(data)) for name, t in TWINS.items()}
    outs = [out for _d, out in results.values()]
    assert all(o == outs[0] for o in outs)
    stats = [(d.resyncs, d.cc_errors, d.tei_errors) for d, _o in results.values()]
    assert all(s == stats[0] for s in stats) and stats[0][0] > 0


def _video_pes_spans(data: bytes):
    """(start packet, end packet) of each video PES: transport packets of PID 256."""
    idx = [i for i in range(0, len(data), 188) if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) == 256]
    starts = [i for i in idx if data[i + 1] & 0x40]
    return idx, starts


def test_a_lost_transport_packet_marks_its_frame_corrupt(demuxer, streams):
    data = streams["h264"]
    idx, starts = _video_pes_spans(data)
    # A packet in the middle of the 5th frame (a continuation, not its start).
    victim = next(i for i in idx if starts[4] < i < starts[5])
    damaged = data[:victim] + data[victim + 188 :]
    d, got = demux_all(demuxer, damaged)
    video = [g for g in got if g[0] == 256]
    assert d.cc_errors == 1
    assert [k for k, g in enumerate(video) if g[5]] == [4]  # exactly that frame, flagged
    ref = [p for p in pyav_packets(data) if p[0] == 256]
    assert [g[4] for k, g in enumerate(video) if k != 4] == [
        p[3] for k, p in enumerate(ref) if k != 4
    ]


def test_garbage_between_packets_is_resynced_and_flagged(demuxer, streams):
    data = streams["h264"]
    _idx, starts = _video_pes_spans(data)
    cut = starts[10] + 188 * 2  # inside frame 10
    damaged = data[:cut] + b"\x47garbage\x00" * 7 + data[cut:]
    d, got = demux_all(demuxer, damaged)
    video = [g for g in got if g[0] == 256]
    assert d.resyncs >= 1 and video[10][5] and not any(g[5] for g in video[11:])
    assert len(video) == len([p for p in pyav_packets(data) if p[0] == 256])


def test_a_truncated_stream_ends_with_what_was_whole(demuxer, streams):
    data = streams["h264"]
    _idx, starts = _video_pes_spans(data)
    _d, got = demux_all(demuxer, data[: starts[20] + 100])  # cut mid transport packet
    video = [g for g in got if g[0] == 256]
    assert len(video) == 20  # the partial 21st frame is never started: its start is cut
    assert [g[4] for g in video] == [p[3] for p in pyav_packets(data) if p[0] == 256][:20]


def _adts(payload_len: int, rate_idx: int = 3) -> bytes:
    n = payload_len + 7
    return bytes(
        [
            0xFF,
            0xF1,
            (1 << 6) | (rate_idx << 2),
            0x80 | (n >> 11),
            (n >> 3) & 0xFF,
            ((n & 7) << 5) | 0x1F,
            0xFC,
        ]
    ) + bytes(payload_len)


def test_aac_pes_with_several_frames_is_split_with_their_times():
    frames = [_adts(100), _adts(37), _adts(250)]
    got = split_adts(b"".join(frames))
    assert got == [(0, frames[0]), (1920, frames[1]), (3840, frames[2])]  # 1024 at 48 kHz
    # Not ADTS (or damaged): kept whole rather than guessed at.
    assert split_adts(b"\x00" * 50) == [(0, b"\x00" * 50)]
    assert split_adts(frames[0][:-10]) == [(0, frames[0][:-10])]


def test_probe_reads_until_a_keyframe_and_keeps_every_byte(streams):
    data = streams["hevc"]
    chunks = iter([data[k : k + 4096] for k in range(0, len(data), 4096)])
    pr = probe(lambda: next(chunks, b""), "tcp://cam")
    assert pr.native and data.startswith(pr.head)
    assert {t.codec for t in pr.tracks.tracks} == {"hevc", "aac"}
    assert set(pr.pid_to_track) == {256, 257} and pr.aac_pids == {257}


def test_probe_of_a_stream_without_keyframes_is_a_clear_error(streams):
    data = streams["h264"]
    audio_only = b"".join(
        data[i : i + 188]
        for i in range(0, len(data), 188)
        if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) != 256
    )
    chunks = iter([audio_only])
    with pytest.raises(SourceError, match="ended before its first keyframe"):
        probe(lambda: next(chunks, b""), "tcp://cam")


def test_streams_the_native_path_cannot_frame_go_to_ffmpeg(streams):
    pr = _probe_bytes(streams["h264"], "tcp://cam", tracks_from_av, framed={256: 0x1B})
    assert not pr.native  # the AAC PID is not framed natively: FFmpeg demuxes this source


def test_udp_read_returns_what_is_queued_without_waiting_for_more():
    """A read drains the datagrams already queued and returns: it must not wait for a full
    READ_BYTES (a quiet camera would stall the read until the no-data timeout)."""
    import socket
    import time

    from vstore.ingest.mpegts import TsSocket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_sock:
        probe_sock.bind(("127.0.0.1", 0))
        port = probe_sock.getsockname()[1]
    ts = TsSocket(f"udp://127.0.0.1:{port}", timeout_s=3.0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(3):
                tx.sendto(bytes([0x47]) + bytes([i]) * 187 * 7, ("127.0.0.1", port))
        t = time.monotonic()
        data = ts.read()
        assert len(data) == 3 * (1 + 187 * 7) and time.monotonic() - t < 1.0
        t = time.monotonic()
        with pytest.raises(SourceError, match="no data for 3 s"):
            ts.read()  # nothing more arrives: a clear error after the timeout, not a hang
        assert 2.5 < time.monotonic() - t < 5.0
    finally:
        ts.close()


def _ts_with(codec: str, width: int, height: int, options: dict, audio_layout: str | None):
    """A short MPEG-TS from PyAV's encoders with the given encoder options."""
    import io
    from fractions import Fraction

    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        v = out.add_stream("libx264" if codec == "h264" else "libx265", rate=25)
        v.width, v.height, v.pix_fmt = width, height, options.pop("pix_fmt", "yuv420p")
        v.options = {"preset": "ultrafast", **options}
        a = None
        if audio_layout:
            a = out.add_stream("aac", rate=44100)
            a.layout = audio_layout
        for i in range(8):
            img = np.full((height, width, 3), (i * 30) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=v.pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(v.encode(frame))
            if a is not None:
                channels = len(a.layout.channels)
                af = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1764 * channels), np.int16), format="s16", layout=audio_layout
                )
                af.sample_rate, af.pts = 44100, i * 1764
                out.mux(a.encode(af))
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return buf.getvalue()


@pytest.mark.parametrize(
    "codec,size,options,audio",
    [
        ("h264", (1920, 1080), {"profile": "baseline"}, "mono"),  # cropped 1088 -> 1080
        ("h264", (640, 360), {"profile": "high"}, "stereo"),
        ("h264", (720, 576), {"x264-params": "interlaced=1"}, None),  # field coding
        ("h264", (320, 240), {"pix_fmt": "yuv444p"}, None),  # High 4:4:4
        ("h264", (424, 238), {"profile": "main"}, None),  # cropped on the right and bottom
        ("hevc", (1920, 1080), {"x265-params": "log-level=error"}, "stereo"),
        ("hevc", (426, 240), {"x265-params": "log-level=error"}, None),  # conformance window
    ],
)
def test_native_probe_reads_the_same_tracks_as_pyav(codec, size, options, audio):
    """Codec parameters read from the stream's own SPS and ADTS headers (no FFmpeg at start-
    up) are exactly what PyAV's probe reads, across profiles, crops and field coding."""
    data = _ts_with(codec, *size, dict(options), audio)
    chunks = iter([data[k : k + 8192] for k in range(0, len(data), 8192)])
    native = probe(lambda: next(chunks, b""), "tcp://cam")
    ref = _probe_bytes(data, "tcp://cam", tracks_from_av, framed={256: 0x1B, 257: 0x0F})
    assert native.native and native.pid_to_track == ref.pid_to_track
    assert native.aac_pids == ref.aac_pids
    for got, want in zip(native.tracks.tracks, ref.tracks.tracks, strict=True):
        # Same fields; the parameter sets may differ only in their start codes' length.
        assert got._replace(extradata=b"") == want._replace(extradata=b"")
        assert annexb_units(got.extradata) == annexb_units(want.extradata)
    v = native.tracks.tracks[0]
    assert (v.width, v.height) == size


def test_native_probe_leaves_other_programs_to_pyav():
    """A PMT with a stream type vstore does not read itself (MPEG audio here) is probed by
    PyAV, which then hands the source to FFmpeg's demuxer."""
    from vstore.ingest import mpegts

    data = _ts_with("h264", 320, 240, {}, None)
    assert mpegts._native_probe({256: 0x1B, 257: 0x03}, b"", {}, data) is None
    assert mpegts._native_probe({256: 0x1B, 300: 0x1B}, b"", {}, data) is None  # two videos
    assert mpegts._native_probe({256: 0x1B}, b"\x00\x00\x01\x67", {}, data) is None  # bad SPS
    assert mpegts._native_probe({256: 0x1B, 257: 0x0F}, b"", {257: b"junk"}, data) is None
    # AAC whose channel layout is in the payload (channel configuration 0): PyAV decodes it.
    params = next(t for t in probe(iter([data, b""]).__next__, "x").tracks.tracks).extradata
    pce = bytes([0xFF, 0xF1, 0x4C, 0x00, 0x02, 0x1F, 0xFC])
    assert mpegts._native_probe({256: 0x1B, 257: 0x0F}, params, {257: pce}, data) is None
    assert mpegts._native_probe({256: 0x1B}, params, {}, data) is not None


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> None:
        self.bits += [(v >> (n - 1 - k)) & 1 for k in range(n)]

    def ue(self, v: int) -> None:
        code = v + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, v: int) -> None:
        self.ue(2 * v - 1 if v > 0 else -2 * v)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1] + [0] * (-(len(self.bits) + 1) % 8)
        raw = bytes(int("".join(map(str, bits[k : k + 8])), 2) for k in range(0, len(bits), 8))
        out = bytearray()
        for byte in raw:  # emulation prevention, as an encoder writes it
            if len(out) >= 2 and out[-1] == 0 and out[-2] == 0 and byte <= 3:
                out.append(3)
            out.append(byte)
        return bytes(out)


def test_h264_sps_with_scaling_matrices_and_poc_cycle_gives_its_size():
    """SPS fields no encoder here writes (scaling lists, POC type 1): the size still reads
    right past them."""
    from vstore.codec.parameter_sets import video_size

    w = _BitWriter()
    w.ue(0)  # seq_parameter_set_id
    w.ue(1)  # chroma_format_idc 4:2:0
    w.ue(0), w.ue(0), w.u(1, 0)  # bit depths, qpprime
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(8):
        w.u(1, 1 if i in (0, 6) else 0)
        if i in (0, 6):
            for j in range(16 if i < 6 else 64):
                w.se(3 if j % 2 else -2)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    w.u(1, 0), w.se(-1), w.se(2)
    w.ue(2), w.se(1), w.se(-3)  # a cycle of two offsets
    w.ue(4), w.u(1, 0)  # max_num_ref_frames, gaps
    w.ue(1920 // 16 - 1), w.ue(1088 // 16 - 1)
    w.u(1, 1), w.u(1, 1)  # frame_mbs_only, direct_8x8
    w.u(1, 1)  # frame_cropping_flag
    w.ue(0), w.ue(0), w.ue(0), w.ue(4)  # bottom 4 * 2 lines
    w.u(1, 0)  # no VUI
    sps = b"\x00\x00\x00\x01\x67\x64\x00\x28" + w.rbsp()
    assert video_size("h264", sps) == (1920, 1080)


def test_demuxer_lets_go_of_keyframe_sized_buffers(demuxer, tmp_path):
    """A PID's assembly buffer grows to a keyframe's size and must not stay there: kept at its
    high-water mark it would hold a keyframe per camera for good (a recorder's memory)."""
    p = tmp_path / "big.ts"
    write_file(
        str(p), StreamSpec(width=640, height=360, gop_frames=10, noise=64, bitrate=8_000_000), 2
    )
    d, out = demux_all(demuxer, p.read_bytes(), 4096)
    assert max(len(pkt[4]) for pkt in out) > 128 * 1024  # keyframes larger than the keep size
    assert d.held_bytes <= 2 * 64 * 1024  # after flush: at most the small buffer per stream
