"""HTTP byte ranges (RFC 9110 section 14): which part of a representation a request asks for."""

from __future__ import annotations


class Unsatisfiable(Exception):
    """No range of the request overlaps the representation (416)."""


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a ``Range`` header asks of ``size`` bytes; None to send it all
    (no header, a unit other than bytes, a malformed header, or several ranges: a server
    may ignore any Range header, and one multipart answer is not worth its weight here).
    Raises Unsatisfiable when the one range asked lies wholly past the end."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first + last).isascii():
        return None  # (isdigit() alone takes other scripts' digits)
    try:
        if not first:  # suffix: the last N bytes
            if not last.isdigit():
                return None
            n = int(last)
            if n == 0:
                raise Unsatisfiable
            return max(size - n, 0), size
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) + 1 if last else max(size, start + 1)
    except ValueError:
        return None
    if end <= start:
        return None  # invalid: last before first
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)
