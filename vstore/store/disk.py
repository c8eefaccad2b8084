"""Disk usage, and the free space the retention watermark asks for."""

import os
from typing import NamedTuple

from vstore.store.config import RetentionConfig


class DiskUsage(NamedTuple):
    total_bytes: int
    free_bytes: int


def disk_usage(path: os.PathLike[str] | str) -> DiskUsage:
    st = os.statvfs(path)  # (what shutil.disk_usage reads, without loading shutil)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def min_free_bytes(cfg: RetentionConfig, disk: DiskUsage) -> int:
    if cfg.min_free_bytes is not None:
        return cfg.min_free_bytes
    if cfg.min_free_ratio is not None:
        return int(disk.total_bytes * cfg.min_free_ratio)
    return 0
