"""Store configuration: ``vstore.toml`` inside the store, parsed into frozen, validated settings.

Every setting has a default, so a store works with no file at all; limits are enforced here so
that nothing downstream has to re-check them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vstore.errors import ConfigError

CONFIG_TEMPLATE = """\
# vstore store configuration. Every value shown is the default; edit and keep what you need.
[store]
# Target segment length. Segments are always cut at a keyframe, so real ones run a GOP longer.
segment_duration_s = 60
# 0 = fsync after every chunk (GOP); N > 0 = at most every N seconds (a crash may lose up to N s).
fsync_interval_s = 0
# A GOP longer than this many bytes is split into continuation chunks (bounds crash loss).
max_chunk_bytes = 33554432
# Camera media clock vs receive wall clock: beyond this the run is re-anchored (discontinuity).
max_clock_drift_s = 30
# Packets buffered between a camera's source and its writer before back-pressure applies.
queue_packets = 2048

# Per-camera settings override [store] and may name a source for `vstore record --all`:
# [cameras.front-door]
# url = "rtsp://192.0.2.10/stream1"
# segment_duration_s = 30
"""


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """Settings that a camera's writer uses; store-wide values with per-camera overrides."""

    segment_duration_s: float = 60.0
    fsync_interval_s: float = 0.0
    max_chunk_bytes: int = 32 * 1024 * 1024
    max_clock_drift_s: float = 30.0
    queue_packets: int = 2048
    url: str | None = None

    def validate(self, where: str) -> None:
        if not 1.0 <= self.segment_duration_s <= 3600.0:
            raise ConfigError(f"{where}: segment_duration_s must be within 1..3600")
        if not 0.0 <= self.fsync_interval_s <= 60.0:
            raise ConfigError(f"{where}: fsync_interval_s must be within 0..60")
        if not 64 * 1024 <= self.max_chunk_bytes <= 1024 * 1024 * 1024:
            raise ConfigError(f"{where}: max_chunk_bytes must be within 64 KiB..1 GiB")
        if not 1.0 <= self.max_clock_drift_s <= 86400.0:
            raise ConfigError(f"{where}: max_clock_drift_s must be within 1..86400")
        if not 16 <= self.queue_packets <= 1_000_000:
            raise ConfigError(f"{where}: queue_packets must be within 16..1000000")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    defaults: CameraSettings = field(default_factory=CameraSettings)
    cameras: dict[str, CameraSettings] = field(default_factory=dict)

    def camera(self, camera_id: str) -> CameraSettings:
        return self.cameras.get(camera_id, self.defaults)


_NAMES = {f.name for f in fields(CameraSettings)}


def _settings(base: CameraSettings, table: dict[str, Any], where: str) -> CameraSettings:
    unknown = set(table) - _NAMES
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for f in fields(CameraSettings):
        if f.name not in table:
            continue
        v = table[f.name]
        if f.name == "url":
            if not isinstance(v, str):
                raise ConfigError(f"{where}: url must be a string")
        elif f.name in ("max_chunk_bytes", "queue_packets"):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{where}: {f.name} must be an integer")
        elif not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError(f"{where}: {f.name} must be a number")
        else:
            v = float(v)
        values[f.name] = v
    out = replace(base, **values)
    out.validate(where)
    return out


def load_config(path: Path) -> StoreConfig:
    """Parse vstore.toml; a missing file means all defaults."""
    if not path.exists():
        return StoreConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(doc) - {"store", "cameras", "retention", "tier"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    store = doc.get("store", {})
    if not isinstance(store, dict):
        raise ConfigError(f"{path}: [store] must be a table")
    defaults = _settings(CameraSettings(), store, f"{path} [store]")
    cameras: dict[str, CameraSettings] = {}
    cams = doc.get("cameras", {})
    if not isinstance(cams, dict):
        raise ConfigError(f"{path}: [cameras] must be a table of tables")
    from vstore.layout import validate_camera_id

    for cam_id, table in cams.items():
        validate_camera_id(cam_id)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [cameras.{cam_id}] must be a table")
        cameras[cam_id] = _settings(defaults, table, f"{path} [cameras.{cam_id}]")
    return StoreConfig(defaults=defaults, cameras=cameras)
