"""A logger that loads `logging` at its first message.

Modules on the path of the short read-only commands (`clip`, `snapshot`, `ls`) log only when
something is wrong. Importing `logging` (and traceback, linecache, tokenize with it) costs a
fresh process about 4 ms, a twentieth of a `vstore clip`; with this, a run that logs nothing
never pays for it. Records carry the same logger names as ``logging.getLogger(name)``.
"""

from __future__ import annotations

from typing import Any


class Logger:
    """``logging.getLogger(name)``, fetched on the first call of one of its methods."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def _get(self) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return self._logger

    # stacklevel=2: the record names the caller's line, as a plain logger's would.
    def debug(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._get().debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._get().info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._get().warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._get().error(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._get().exception(msg, *args, stacklevel=2, **kwargs)


def get_logger(name: str) -> Logger:
    """The logger for module ``name`` (pass ``__name__``)."""
    return Logger(name)


def configure(level: int, fmt: str) -> None:
    """Log to stderr from ``level`` up, in ``fmt`` (``%(asctime)s`` for the time), each line
    stamped in ISO 8601 with its UTC offset, as vstore prints every time."""
    import logging
    from datetime import datetime

    class _IsoTime(logging.Formatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return (
                datetime.fromtimestamp(record.created)
                .astimezone()
                .isoformat(timespec="milliseconds")
            )

    handler = logging.StreamHandler()
    handler.setFormatter(_IsoTime(fmt))
    logging.basicConfig(level=level, handlers=[handler])
