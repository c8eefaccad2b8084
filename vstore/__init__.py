"""vstore: a storage engine for city-scale video surveillance.

Public API: ``open_store`` gives a ``Store``; ``Store.writer`` gives a ``CameraWriter`` that
takes PyAV packets or ``Packet`` records (``tracks_from_av`` maps a PyAV container's streams
to its tracks); ``Store.clip`` cuts clips; ``TimeRange`` and the
errors complete the facade. Names are imported on first use, so that `vstore` commands start
fast (PyAV, NumPy and RocksDB load only when a command needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vstore._version import __version__
from vstore.base.errors import (
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
    from vstore.api import Store, open_store
    from vstore.base.timebase import TimeRange, format_time, parse_time_ns, to_ns
    from vstore.ingest.tracks import tracks_from_av
    from vstore.segment.format import TrackInfo
    from vstore.segment.packet import Packet
    from vstore.store.camera_writer import CameraWriter

_LAZY = {
    "CameraWriter": "vstore.store.camera_writer",
    "Packet": "vstore.segment.packet",
    "Store": "vstore.api",
    "TimeRange": "vstore.base.timebase",
    "TrackInfo": "vstore.segment.format",
    "format_time": "vstore.base.timebase",
    "open_store": "vstore.api",
    "parse_time_ns": "vstore.base.timebase",
    "to_ns": "vstore.base.timebase",
    "tracks_from_av": "vstore.ingest.tracks",
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
    "tracks_from_av",
]
