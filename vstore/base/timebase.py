"""The one time base of vstore and the conversions into and out of it.

Inside vstore every wall-clock instant is an ``int`` of nanoseconds since the Unix epoch, UTC
(names end in ``_ns``). Media timestamps keep the stream's own rational time base (``ticks``) and
are converted with exact integer arithmetic. See docs/design/time.md.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, NamedTuple, Self

from vstore import _native
from vstore.base.errors import UsageError


class _WallClock:
    """Marks an ``int`` field as a wall-clock instant (not a duration, not media time)."""

    def __repr__(self) -> str:
        return "WALL_CLOCK"


WALL_CLOCK = _WallClock()
# A wall-clock instant in ns since the epoch, UTC. Reports show such a field twice: as ISO 8601
# text under its name without ``_ns``, and as the integer.
WallNs = Annotated[int, WALL_CLOCK]

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
GAP_TOLERANCE_NS = NS_PER_S // 2  # footage further apart than this has a gap between

# The instants vstore accepts: [1900-01-01, 2200-01-01) UTC. Index keys hold a signed 64-bit
# nanosecond count (1677..2262); the margin keeps range arithmetic on accepted times (an end
# plus a retention period, a GOP, a clip's padding) inside it. docs/design/time.md.
MIN_TIME_NS = -2_208_988_800 * NS_PER_S  # 1900-01-01T00:00:00Z
MAX_TIME_NS = 7_258_118_400 * NS_PER_S  # 2200-01-01T00:00:00Z (exclusive)
MAX_DURATION_NS = MAX_TIME_NS - MIN_TIME_NS

_UNITS_NS = {
    "ns": 1,
    "us": NS_PER_US,
    "ms": NS_PER_MS,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    "d": 86400 * NS_PER_S,
    "w": 7 * 86400 * NS_PER_S,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w)")


def ticks_to_ns(ticks: int, tb_num: int, tb_den: int) -> int:
    """Media ticks in time base tb_num/tb_den to nanoseconds, rounded half away from zero."""
    num = ticks * tb_num * NS_PER_S
    q, r = divmod(abs(num), tb_den)
    if 2 * r >= tb_den:
        q += 1
    return q if num >= 0 else -q


def ns_to_ticks(ns: int, tb_num: int, tb_den: int) -> int:
    """Nanoseconds to media ticks, rounded half away from zero (inverse of ticks_to_ns)."""
    num = ns * tb_den
    den = tb_num * NS_PER_S
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def ticks_to_ns_many(ticks: list[int], tb_num: int, tb_den: int, plus_ns: int = 0) -> list[int]:
    """``plus_ns + ticks_to_ns(v)`` over a list (the same rounding: half away from zero)."""
    return _native.cliptab.ticks_to_ns_many(ticks, tb_num, tb_den, plus_ns)


def ns_to_ticks_many(ns: list[int], timescale: int) -> list[int]:
    """``ns_to_ticks(v, 1, timescale)`` over a list."""
    return _native.cliptab.ns_to_ticks_many(ns, timescale)


def parse_duration_ns(text: str) -> int:
    """Parse ``90s``, ``15m``, ``1h30m``, ``30d``, ``2w`` or plain seconds into nanoseconds."""
    return _bounded_duration(_duration_ns(text), text)


def _duration_ns(text: str) -> "float | Fraction":  # noqa: F821
    """A duration's nanoseconds, however long (UsageError for what is none)."""
    s = text.strip().lower()
    if not s:
        raise UsageError("empty duration")
    try:
        seconds = float(s)
    except ValueError:
        pass
    else:
        if math.isnan(seconds):
            raise UsageError(f"bad duration {text!r}: use e.g. 90s, 15m, 1h30m, 30d")
        if seconds < 0:
            raise UsageError(f"negative duration: {text!r}")
        return seconds * NS_PER_S
    pos = 0
    from fractions import Fraction  # lazily: most commands parse no duration

    total = Fraction(0)
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += Fraction(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise UsageError(f"bad duration {text!r}: use e.g. 90s, 15m, 1h30m, 30d")
    return total


def _bounded_duration(ns: "float | Fraction", text: str) -> int:  # noqa: F821
    """A parsed duration no longer than the whole time range (inf and 1e400 included)."""
    if ns > MAX_DURATION_NS:
        raise UsageError(f"duration {text!r} is longer than vstore's time range (300 years)")
    return round(ns)


def parse_age_ns(text: object, what: str) -> int:
    """An age in a policy (max_age, older_than), which needs a unit: a bare number would be
    seconds, and ``max_age = 30`` read as 30 s would delete a month of footage."""
    s = str(text).strip()
    try:
        float(s)
    except ValueError:
        return parse_duration_ns(s)
    raise UsageError(f'{what} {s!r} needs a unit, e.g. "{s}d", "{s}h" or "{s}s"')


def to_ns(t: "int | datetime | str") -> int:
    """An instant as the library takes it: nanoseconds since the epoch, a timezone-aware
    ``datetime``, or text as the command line takes it (``parse_time_ns``)."""
    if isinstance(t, bool):
        raise UsageError(f"not a time: {t!r}")
    if isinstance(t, int):
        return t
    if isinstance(t, datetime):
        if t.tzinfo is None or t.utcoffset() is None:
            raise UsageError(f"{t.isoformat()} has no time zone: give an aware datetime")
        delta = t - datetime(1970, 1, 1, tzinfo=UTC)
        return check_time_ns(
            (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000,
            t.isoformat(),
        )
    if isinstance(t, str):
        return parse_time_ns(t)
    raise UsageError(f"not a time: {t!r} (give ns since the epoch, an aware datetime or text)")


def parse_time_ns(text: str, now_ns: int | None = None) -> int:
    """Parse a command-line time: ISO 8601 with an offset or ``Z``, ``now``, or ``-15m``.

    A time without an offset is refused: guessing the zone is how DST bugs begin.
    """
    s = text.strip()
    if s[-1:] == "z":  # (RFC 3339 allows a lower-case Z)
        s = s[:-1] + "Z"
    if now_ns is None:
        now_ns = time.time_ns()
    if s.lower() == "now":
        return check_time_ns(now_ns, text)
    if s.startswith("-"):
        try:
            ago = _duration_ns(s[1:])
        except UsageError:
            raise UsageError(
                f"bad relative time {text!r}: use e.g. -90s, -15m, -1h30m, -2d"
            ) from None
        if ago > MAX_DURATION_NS:
            raise UsageError(f"relative time {text!r} is longer ago than vstore's time range")
        return check_time_ns(now_ns - round(ago), text)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise UsageError(
            f"bad time {text!r}: use ISO 8601 with an offset "
            "(2025-01-17T08:00:00+07:00 or ...Z), 'now', or a relative time like -15m"
        ) from exc
    if dt.tzinfo is None:
        raise UsageError(f"time {text!r} has no UTC offset: add Z or +HH:MM")
    try:
        t_ns = datetime_to_ns(dt)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before datetime.min in UTC
        t_ns = MIN_TIME_NS - 1
    return check_time_ns(t_ns, text)


def check_time_ns(t_ns: int, text: str | None = None) -> int:
    """``t_ns`` if vstore accepts that instant (MIN_TIME_NS <= t < MAX_TIME_NS), else a
    UsageError naming the time as the user wrote it (``text``) or as ISO 8601."""
    if MIN_TIME_NS <= t_ns < MAX_TIME_NS:
        return t_ns
    if text is None:
        try:
            text = format_time(t_ns)
        except (OverflowError, ValueError):  # beyond datetime's years 1..9999
            text = f"{t_ns} ns since 1970"
    shown = repr(text)
    raise UsageError(
        f"time {shown} is outside the range vstore stores: "
        "1900-01-01T00:00:00Z up to 2200-01-01T00:00:00Z"
    )


def datetime_to_ns(dt: datetime) -> int:
    """An aware datetime to UTC nanoseconds, exactly (microsecond precision)."""
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * NS_PER_US


def ns_to_datetime(t_ns: int, tz=UTC) -> datetime:
    """UTC nanoseconds to an aware datetime (microseconds truncated)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_ns // NS_PER_US)
    return dt.astimezone(tz)


def format_detail(detail: Any, tz=UTC) -> str:
    """An event's detail as a person reads it: ``key=value, ...``, an instant (a ``*_ns``
    key that holds wall time) as an ISO time under its name without the unit, a duration
    (``*_ns`` under 100 days) in seconds."""
    if not isinstance(detail, dict):
        return str(detail)
    out = []
    for k, v in detail.items():
        if k.endswith("_ns") and isinstance(v, int) and not isinstance(v, bool):
            name = k[: -len("_ns")]
            if abs(v) >= _DETAIL_INSTANT_NS:
                out.append(f"{name}={format_time(v, tz)}")
            else:
                out.append(f"{name}={v / 1e9:g}s")
        else:
            out.append(f"{k}={v}")
    return ", ".join(out)


# A *_ns value this far from the epoch is an instant; below it, a duration (100 days).
_DETAIL_INSTANT_NS = 100 * 86_400 * 1_000_000_000


def format_time(t_ns: int, tz=UTC) -> str:
    """ISO 8601 with offset and millisecond precision; ``Z`` is spelled ``+00:00``."""
    dt = ns_to_datetime(t_ns, tz)
    offset = dt.utcoffset()
    if offset is not None and offset.seconds % 60:
        # A zone's local mean time before standard time (Asia/Bangkok in 1900: +06:42:04)
        # has seconds, which ISO 8601 offsets cannot carry: the same instant at the offset
        # rounded to the minute.
        minutes = round(offset.total_seconds() / 60)
        dt = dt.astimezone(timezone(timedelta(minutes=minutes)))
    return dt.isoformat(timespec="milliseconds")


def format_duration(ns: int) -> str:
    """A short human duration: ``1h02m03s``, ``4.2s``, ``35ms``."""
    if ns < NS_PER_S:
        return f"{ns / NS_PER_MS:.0f}ms"
    s = ns / NS_PER_S
    if s < 60:
        return f"{s:.1f}s"
    total = int(s)
    d, rem = divmod(total, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    return f"{m}m{sec:02d}s"


class _Range(NamedTuple):
    start_ns: int
    end_ns: int


class TimeRange(_Range):
    """A half-open wall-clock range [start_ns, end_ns) in UTC nanoseconds."""

    __slots__ = ()

    def __new__(cls, start_ns: int, end_ns: int) -> Self:
        # What an index key holds (1677..2262), not the narrower range accepted as input:
        # footage imported to start just before 2200 runs past it and must still be read.
        if end_ns > start_ns and not (start_ns >= -(1 << 63) and end_ns <= (1 << 63) - 1):
            raise UsageError(
                f"time range {start_ns} .. {end_ns} ns lies outside what an index key holds"
            )
        if end_ns <= start_ns:
            raise UsageError(
                f"empty or inverted time range: {format_time(start_ns)} .. {format_time(end_ns)}"
            )
        return super().__new__(cls, start_ns, end_ns)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return start_ns < self.end_ns and end_ns > self.start_ns


def merge_ranges(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` sorted, those that overlap or touch joined: one gap where a segment's end
    and the damaged chunks before it are both missing, not three that overlap."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def subtract_ranges(
    spans: list[tuple[int, int]], cut: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(what of ``spans`` lies outside every range of ``cut``, what lies inside one), both
    sorted: covered footage less its damaged ranges, or gaps split into the damaged ones."""
    outside: list[tuple[int, int]] = []
    inside: list[tuple[int, int]] = []
    cuts = sorted(cut)
    for s, e in spans:
        cursor = s
        for cs, ce in cuts:
            if ce <= cursor or cs >= e:
                continue
            if cs > cursor:
                outside.append((cursor, cs))
            inside.append((max(cs, cursor), min(ce, e)))
            cursor = max(cursor, ce)
            if cursor >= e:
                break
        if cursor < e:
            outside.append((cursor, e))
    return outside, sorted(inside)
