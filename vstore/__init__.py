"""vstore: a storage engine for city-scale video surveillance.

Public API: ``open_store`` gives a ``Store``; ``Store.writer`` gives a ``CameraWriter`` that
takes PyAV packets or ``Packet`` records; ``Store.clip`` cuts clips; ``TimeRange`` and the
errors complete the facade. Names are imported on first use, so that `vstore` commands start
fast (PyAV, NumPy and RocksDB load only when a command needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vstore._version import __version__
from vstore.errors import (
    ConfigError,
    CorruptSegment,
    NotFound,
    SourceError,
    StorageFull,
    StoreLocked,
    UsageError,
    VstoreError,
)

if TYPE_CHECKING:
    from vstore.format import TrackInfo
    from vstore.packet import Packet
    from vstore.segment_writer import CameraWriter
    from vstore.store import Store, open_store
    from vstore.timebase import TimeRange, format_time, parse_time_ns, to_ns

_LAZY = {
    "CameraWriter": "vstore.segment_writer",
    "Packet": "vstore.packet",
    "Store": "vstore.store",
    "TimeRange": "vstore.timebase",
    "TrackInfo": "vstore.format",
    "format_time": "vstore.timebase",
    "open_store": "vstore.store",
    "parse_time_ns": "vstore.timebase",
    "to_ns": "vstore.timebase",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


__all__ = [
    "CameraWriter",
    "ConfigError",
    "CorruptSegment",
    "NotFound",
    "Packet",
    "SourceError",
    "StorageFull",
    "Store",
    "StoreLocked",
    "TimeRange",
    "TrackInfo",
    "UsageError",
    "VstoreError",
    "__version__",
    "format_time",
    "open_store",
    "parse_time_ns",
    "to_ns",
]
