"""MPEG-TS demuxing, pure-Python twin of ``ext/tsdemux.pyx``: 188-byte transport packets in,
whole PES payloads out (one per access unit for cameras' video), with PAT/PMT tracking.

No decoding and no codec parsing beyond the PES header: the writer scans NAL units itself.
Damage is never silent: a lost transport packet (continuity counter jump) or a transport
error flag marks the PES being assembled as corrupt, and lost sync is counted and re-found.
"""

from __future__ import annotations

TS_PACKET = 188
SYNC = 0x47
# Stream types (ISO/IEC 13818-1 table 2-34) that the native path frames.
STREAM_H264 = 0x1B
STREAM_HEVC = 0x24
STREAM_AAC_ADTS = 0x0F
MAX_PES_BYTES = 64 * 1024 * 1024  # a PES larger than this is damage, not a frame


def _ts(b: bytes | bytearray, i: int) -> int:
    """A 33-bit PES timestamp from the 5 bytes at i."""
    return (
        ((b[i] >> 1) & 0x07) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


class TsDemuxer:
    """Feed bytes in any slicing; ``feed`` returns the PES payloads completed so far as
    ``(pid, pts, dts, random_access, payload, corrupt)`` with pts/dts in 90 kHz ticks or
    None. Only PIDs listed by the PMT as H.264, H.265 or AAC (ADTS) are assembled."""

    def __init__(self) -> None:
        self._rest = b""
        self.pmt_pid = -1
        self.streams: dict[int, int] = {}  # pid -> stream_type assembled (from the PMT)
        self.program: dict[int, int] = {}  # every elementary stream of the PMT
        self.pmt_version = -1
        self.resyncs = 0
        self.cc_errors = 0
        self.tei_errors = 0
        self.oversize = 0
        self._cc: dict[int, int] = {}
        self._pes: dict[int, list] = {}  # pid -> [bytearray, pts, dts, rai, corrupt, length]

    @property
    def held_bytes(self) -> int:
        """Memory the PES assembly buffers hold, for memory accounting (here each PES gets a
        buffer of its own, dropped once emitted)."""
        return sum(len(p[0]) for p in self._pes.values())

    def feed(self, data: bytes) -> list[tuple[int, int | None, int | None, bool, bytes, bool]]:
        out: list[tuple[int, int | None, int | None, bool, bytes, bool]] = []
        buf = self._rest + data if self._rest else data
        n = len(buf)
        i = 0
        while i + TS_PACKET <= n:
            if buf[i] != SYNC or (i + TS_PACKET < n and buf[i + TS_PACKET] != SYNC):
                # Lost sync: find the next 0x47 followed by another one a packet later.
                j = i + 1
                while j + TS_PACKET <= n and not (
                    buf[j] == SYNC and (j + TS_PACKET >= n or buf[j + TS_PACKET] == SYNC)
                ):
                    j += 1
                self.resyncs += 1
                for p in self._pes.values():
                    p[4] = True  # bytes were lost inside whatever was being assembled
                i = j
                continue
            self._packet(buf, i, out)
            i += TS_PACKET
        self._rest = bytes(buf[i:])
        return out

    def flush(self) -> list[tuple[int, int | None, int | None, bool, bytes, bool]]:
        """Emit the PES payloads still being assembled (end of stream)."""
        out: list[tuple[int, int | None, int | None, bool, bytes, bool]] = []
        for pid in list(self._pes):
            self._emit(pid, out)
        return out

    def _packet(self, b: bytes | bytearray, i: int, out: list) -> None:
        b1, b2, b3 = b[i + 1], b[i + 2], b[i + 3]
        pid = (b1 & 0x1F) << 8 | b2
        tei = b1 & 0x80
        pusi = b1 & 0x40
        afc = (b3 >> 4) & 3
        cc = b3 & 0x0F
        pos = i + 4
        end = i + TS_PACKET
        rai = False
        if afc & 2:
            alen = b[pos]
            if alen and pos + 1 < end:
                rai = bool(b[pos + 1] & 0x40)
            pos += 1 + alen
        has_payload = afc & 1 and pos < end
        if pid == 0:
            if has_payload and pusi:
                self._pat(b, pos, end)
            return
        if pid == self.pmt_pid:
            if has_payload and pusi:
                self._pmt(b, pos, end)
            return
        if pid not in self.streams:
            return
        if tei:
            self.tei_errors += 1
        if afc & 1:
            last = self._cc.get(pid)
            if last is not None and cc != (last + 1) & 0x0F and cc != last:
                self.cc_errors += 1
                p = self._pes.get(pid)
                if p is not None:
                    p[4] = True
            elif last is not None and cc == last:
                return  # a duplicate packet (allowed once): ignore its payload
            self._cc[pid] = cc
        if not has_payload:
            return
        if pusi:
            self._emit(pid, out)
            self._start(pid, b, pos, end, rai, bool(tei), out)
            return
        p = self._pes.get(pid)
        if p is None:
            return  # joined mid-PES: wait for the next start
        if tei:
            p[4] = True
        p[0] += b[pos:end]
        if len(p[0]) > MAX_PES_BYTES:
            self.oversize += 1
            del self._pes[pid]
        elif p[5] and len(p[0]) >= p[5]:
            self._emit(pid, out)

    def _start(
        self, pid: int, b: bytes | bytearray, pos: int, end: int, rai: bool, bad: bool, out: list
    ) -> None:
        if end - pos < 9 or b[pos] != 0 or b[pos + 1] != 0 or b[pos + 2] != 1:
            self._pes.pop(pid, None)
            return
        plen = b[pos + 4] << 8 | b[pos + 5]
        flags = b[pos + 7] >> 6
        hlen = b[pos + 8]
        start = pos + 9 + hlen
        if start > end:
            self._pes.pop(pid, None)
            return
        pts = dts = None
        if flags & 2 and hlen >= 5:
            pts = _ts(b, pos + 9)
            dts = pts
            if flags == 3 and hlen >= 10:
                dts = _ts(b, pos + 14)
        length = plen - 3 - hlen if plen else 0
        self._pes[pid] = [bytearray(b[start:end]), pts, dts, rai, bad, max(0, length)]
        if length and end - start >= length:
            self._emit(pid, out)

    def _emit(self, pid: int, out: list) -> None:
        p = self._pes.pop(pid, None)
        if p is None:
            return
        data = p[0]
        if p[5] and len(data) > p[5]:
            del data[p[5] :]
        if data:
            out.append((pid, p[1], p[2], p[3], bytes(data), p[4]))

    def _section(self, b: bytes | bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
        pointer = b[pos]
        s = pos + 1 + pointer
        if s + 8 > end:
            return None
        length = (b[s + 1] & 0x0F) << 8 | b[s + 2]
        send = s + 3 + length - 4  # without the CRC
        if send > end or length < 9:
            return None
        return s, send, b[s + 5]

    def _pat(self, b: bytes | bytearray, pos: int, end: int) -> None:
        sec = self._section(b, pos, end)
        if sec is None or b[sec[0]] != 0x00:
            return
        s, send, _ver = sec
        j = s + 8
        while j + 4 <= send:
            program = b[j] << 8 | b[j + 1]
            pid = (b[j + 2] & 0x1F) << 8 | b[j + 3]
            if program != 0:  # program 0 names the network PID
                self.pmt_pid = pid
                return
            j += 4

    def _pmt(self, b: bytes | bytearray, pos: int, end: int) -> None:
        sec = self._section(b, pos, end)
        if sec is None or b[sec[0]] != 0x02:
            return
        s, send, ver = sec
        if ver == self.pmt_version:
            return
        info_len = (b[s + 10] & 0x0F) << 8 | b[s + 11]
        j = s + 12 + info_len
        program: dict[int, int] = {}
        while j + 5 <= send:
            stype = b[j]
            pid = (b[j + 1] & 0x1F) << 8 | b[j + 2]
            es_len = (b[j + 3] & 0x0F) << 8 | b[j + 4]
            program[pid] = stype
            j += 5 + es_len
        self.program = program
        self.streams = {
            p: t for p, t in program.items() if t in (STREAM_H264, STREAM_HEVC, STREAM_AAC_ADTS)
        }
        for pid in [p for p in self._pes if p not in self.streams]:
            del self._pes[pid]  # streams that stay keep their state (and partial PES)
        for pid in [p for p in self._cc if p not in self.streams]:
            del self._cc[pid]
        self.pmt_version = ver
