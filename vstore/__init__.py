"""vstore: a storage engine for city-scale video surveillance.

Public API: ``open_store`` gives a ``Store``; ``Store.writer`` gives a ``CameraWriter`` that
takes PyAV packets or ``Packet`` records; ``TimeRange`` and the errors complete the facade.
"""

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
from vstore.format import TrackInfo
from vstore.packet import Packet
from vstore.segment_writer import CameraWriter
from vstore.store import Store, open_store
from vstore.timebase import TimeRange

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
    "open_store",
]
