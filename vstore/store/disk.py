"""Disk usage, and the free space the retention watermark asks for."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from vstore.store.config import RetentionConfig


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int


def disk_usage(path: os.PathLike[str] | str) -> DiskUsage:
    u = shutil.disk_usage(path)
    return DiskUsage(u.total, u.free)


def min_free_bytes(cfg: RetentionConfig, disk: DiskUsage) -> int:
    if cfg.min_free_bytes is not None:
        return cfg.min_free_bytes
    if cfg.min_free_ratio is not None:
        return int(disk.total_bytes * cfg.min_free_ratio)
    return 0
