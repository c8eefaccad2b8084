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
            n_sps = record[5] & 0x1F
            pos = 6
            for _ in range(n_sps):
                ln = int.from_bytes(record[pos : pos + 2], "big")
                out += START + record[pos + 2 : pos + 2 + ln]
                pos += 2 + ln
            n_pps = record[pos]
            pos += 1
            for _ in range(n_pps):
                ln = int.from_bytes(record[pos : pos + 2], "big")
                out += START + record[pos + 2 : pos + 2 + ln]
                pos += 2 + ln
            return bytes(out)
        if codec == "hevc":
            n_arrays = record[22]
            pos = 23
            for _ in range(n_arrays):
                n = int.from_bytes(record[pos + 1 : pos + 3], "big")
                pos += 3
                for _ in range(n):
                    ln = int.from_bytes(record[pos : pos + 2], "big")
                    out += START + record[pos + 2 : pos + 2 + ln]
                    pos += 2 + ln
            return bytes(out)
    except IndexError:
        raise CorruptSegment(f"malformed {codec} configuration record") from None
    raise ValueError(f"no configuration record conversion for {codec}")


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
