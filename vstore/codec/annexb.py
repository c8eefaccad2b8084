"""H.264/H.265 bitstream framings: Annex-B start codes, length-prefixed (AVCC) access units,
and the avcC/hvcC records' parameter sets, converted between each other. The byte-level scans
of the recording path live in the compiled twins (``vstore._native``); these run off the hot
path (clip set-up, probing, snapshots)."""

from __future__ import annotations

from vstore.base.errors import CorruptSegment

START = b"\x00\x00\x00\x01"


def config_to_annexb(codec: str, record: bytes) -> bytes:
    """The parameter sets of an avcC (h264) or hvcC (hevc) record, as Annex-B units."""
    try:
        out = bytearray()
        if codec == "h264":
            pos = _copy_units(record, 6, record[5] & 0x1F, out)  # the SPSs
            _copy_units(record, pos + 1, record[pos], out)  # the PPSs
            return bytes(out)
        if codec == "hevc":
            pos = 23
            for _ in range(record[22]):  # one array per NAL unit type (VPS, SPS, PPS, SEI)
                count = int.from_bytes(record[pos + 1 : pos + 3], "big")
                pos = _copy_units(record, pos + 3, count, out)
            return bytes(out)
    except IndexError:
        raise CorruptSegment(f"malformed {codec} configuration record") from None
    raise ValueError(f"no configuration record conversion for {codec}")


def _copy_units(record: bytes, pos: int, count: int, out: bytearray) -> int:
    """Append ``count`` units stored as 16-bit length + bytes from ``pos`` to ``out`` as
    Annex-B; returns the position after them."""
    for _ in range(count):
        ln = int.from_bytes(record[pos : pos + 2], "big")
        if pos + 2 + ln > len(record):
            raise IndexError(pos)
        out += START + record[pos + 2 : pos + 2 + ln]
        pos += 2 + ln
    return pos


def length_prefixed_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """A length-prefixed (AVCC/HVCC) access unit as Annex-B."""
    out = bytearray()
    pos = 0
    while pos + length_size <= len(data):
        ln = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if ln == 0 or pos + ln > len(data):
            break
        out += START + data[pos : pos + ln]
        pos += ln
    return bytes(out)


def annexb_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte string (start codes removed)."""
    out: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        while nxt >= 0 and end > start and data[end - 1] == 0:
            end -= 1  # a 4-byte start code's leading zero
        if end > start:
            out.append(data[start:end])
        i = nxt
    return out


def annexb_to_length_prefixed(data: bytes) -> bytes:
    """An Annex-B access unit as 4-byte length-prefixed NAL units (MP4 sample form)."""
    return b"".join(len(u).to_bytes(4, "big") + u for u in annexb_units(data))
