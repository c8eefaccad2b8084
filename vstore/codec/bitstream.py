"""Conversions between H.264/H.265 bitstream framings: avcC/hvcC configuration records and
length-prefixed access units to Annex-B. Used off the hot path (clip set-up, snapshots)."""

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
