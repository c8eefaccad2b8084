"""AAC framing: ADTS frame headers, the AudioSpecificConfig they imply, and splitting a PES
into its ADTS frames."""

from __future__ import annotations

# Samples per channel in one AAC frame (raw data block): every AAC-LC frame cameras send.
AAC_FRAME_SAMPLES = 1024


def aac_frame_ns(sample_rate: int) -> int:
    """How long one AAC frame plays, in nanoseconds."""
    return AAC_FRAME_SAMPLES * 1_000_000_000 // sample_rate


def aac_lead_in_ns(sample_rate: int) -> int:
    """How much AAC before its start a clip with an edit list keeps (and hides): the frame
    playing at the start and the one before it, since a frame decodes whole only after the
    one before (their transforms overlap): without it the first sound is garbled."""
    return 2 * aac_frame_ns(sample_rate)


AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def adts_to_asc(frame: bytes) -> tuple[bytes, int] | None:
    """AudioSpecificConfig and header length from an ADTS frame header, or None."""
    if len(frame) < 7 or frame[0] != 0xFF or frame[1] & 0xF6 != 0xF0:
        return None
    profile = (frame[2] >> 6) & 0x3
    freq_idx = (frame[2] >> 2) & 0xF
    chan = ((frame[2] & 0x1) << 2) | (frame[3] >> 6)
    header = 7 if frame[1] & 0x01 else 9  # protection_absent
    asc = ((profile + 1) << 11) | (freq_idx << 7) | (chan << 3)
    return asc.to_bytes(2, "big"), header


def asc_sample_rate(asc: bytes) -> int:
    idx = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    return AAC_RATES[idx] if idx < len(AAC_RATES) else 0


def split_adts(payload: bytes) -> list[tuple[int, bytes]]:
    """ADTS frames of an AAC PES as (tick offset from the PES pts, frame with its header).
    A PES that is not a clean run of ADTS frames comes back whole at offset 0."""
    out: list[tuple[int, bytes]] = []
    n = len(payload)
    i = 0
    ticks = 0
    while i + 7 <= n:
        if payload[i] != 0xFF or payload[i + 1] & 0xF0 != 0xF0:
            return [(0, payload)] if not out else [*out, (ticks, payload[i:])]
        rate_idx = (payload[i + 2] >> 2) & 0x0F
        length = (payload[i + 3] & 0x03) << 11 | payload[i + 4] << 3 | payload[i + 5] >> 5
        blocks = (payload[i + 6] & 0x03) + 1
        if length < 7 or i + length > n or rate_idx >= len(AAC_RATES):
            return [(0, payload)] if not out else [*out, (ticks, payload[i:])]
        out.append((ticks, payload[i : i + length]))
        ticks += blocks * AAC_FRAME_SAMPLES * 90000 // AAC_RATES[rate_idx]
        i += length
    if i < n:
        return [(0, payload)] if not out else [*out, (ticks, payload[i:])]
    return out
