"""Edits of vstore.toml made for a client (a camera's table set or removed): the file's
comments and layout kept (``tomlkit``), the whole new text checked as a configuration before
it replaces the old one, durably, and never over an edit someone made meanwhile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vstore.base.errors import ConfigError, NotFound, UsageError
from vstore.base.free_text import checked_text
from vstore.base.fsutil import Fs, write_durably
from vstore.base.layout import staging_path, validate_camera_id
from vstore.store.config import CameraSettings, StoreConfig, parse_config

# What a camera's table may set: every per-camera setting.
CAMERA_KEYS = CameraSettings._fields


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _edit(path: Path, change: Any) -> StoreConfig:
    """Apply ``change(doc)`` to the file's TOML document, check the result as a whole
    configuration, and replace the file with it; the new configuration is returned."""
    import tomlkit  # (only when a client edits the file: ~5 MB a node need not hold)
    import tomlkit.exceptions

    before = _stamp(path)
    try:
        text = path.read_text(encoding="utf-8") if before is not None else ""
        doc = tomlkit.parse(text)
    except (UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    change(doc)
    new_text = tomlkit.dumps(doc).rstrip() + "\n"
    config = parse_config(new_text, path)  # an edit that breaks the file is refused here
    if _stamp(path) != before:
        raise ConfigError(f"{path} changed while it was being edited: try again")
    mode = os.stat(path).st_mode & 0o777 if before is not None else 0o644
    write_durably(Fs(), path, staging_path(path), new_text.encode("utf-8"), mode)
    return config


def set_camera(path: Path, camera_id: str, values: dict[str, Any]) -> tuple[bool, StoreConfig]:
    """Give ``[cameras.ID]`` exactly ``values`` (keys of CAMERA_KEYS); True when the camera
    was not in the file before."""
    validate_camera_id(camera_id)
    unknown = sorted(set(values) - set(CAMERA_KEYS))
    if unknown:
        raise UsageError(f"a camera has no setting {', '.join(unknown)}")
    for key, value in values.items():  # (every text setting is one printable line)
        if isinstance(value, str):
            checked_text(value, f"the camera's {key}")
    url = values.get("url")
    if isinstance(url, str) and "://" not in url and not Path(url).exists():
        # (a stream has a scheme; without one it is a file, which must be there)
        raise UsageError(
            f"{url!r} is neither a stream URL (rtsp://, tcp://, udp://...) nor a file here"
        )
    created = False

    def change(doc: Any) -> None:
        import tomlkit

        nonlocal created
        cams = doc.get("cameras")
        if cams is None:
            cams = doc["cameras"] = tomlkit.table(is_super_table=True)
        table = tomlkit.table()
        for key, value in values.items():
            if value is not None:
                table[key] = value
        created = camera_id not in cams
        table.add(tomlkit.nl())
        cams[camera_id] = table

    config = _edit(path, change)
    return created, config


def remove_camera(path: Path, camera_id: str) -> StoreConfig:
    """Take ``[cameras.ID]`` out of the file (its footage stays in the store)."""

    def change(doc: Any) -> None:
        cams = doc.get("cameras")
        if cams is None or camera_id not in cams:
            raise NotFound(f"camera {camera_id!r} is not in vstore.toml")
        del cams[camera_id]

    return _edit(path, change)
