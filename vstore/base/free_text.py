"""Free text a person types that the store keeps and shows again (a case, a purpose, who
did it, why a hold was placed): one line of printable characters, checked where it comes in,
so that a stored field can never pass for another line of the audit log or of a package's
README, nor drive a terminal that shows it; and text from elsewhere made safe to print."""

from __future__ import annotations

import unicodedata

from vstore.base.errors import UsageError

MAX_CHARS = 1000
# Unicode categories that are no printable text: controls (line breaks, tabs, ESC), format
# characters (bidi overrides) and the line and paragraph separators.
_NOT_TEXT = frozenset(("Cc", "Cf", "Zl", "Zp"))


def _control(c: str) -> bool:
    return unicodedata.category(c) in _NOT_TEXT


def checked_text(value: object, what: str) -> str:
    """``value`` stripped; UsageError when it is empty, over MAX_CHARS or holds a control
    character (line breaks, tabs, escape sequences)."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} is empty: give one")
    text = value.strip()
    if len(text) > MAX_CHARS:
        raise UsageError(f"{what} is over {MAX_CHARS} characters")
    bad = next((c for c in text if _control(c)), None)
    if bad is not None:
        raise UsageError(f"{what} holds a control character ({bad!r}): one line of text")
    return text


def printable(value: object) -> str:
    """``str(value)`` with every control character written as an escape (for text output of
    what was stored before it was checked, or came from elsewhere)."""
    text = str(value)
    return "".join(repr(c)[1:-1] if _control(c) else c for c in text)
