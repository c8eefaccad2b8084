"""The one place that chooses compiled (``vstore._ext``) or pure-Python (``vstore._py``) twins.

Set ``VSTORE_NO_EXTENSIONS=1`` to force the pure-Python path. No other module imports
``vstore._ext``; tests reach both implementations through ``implementations()``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from vstore._py import cliptab as _py_cliptab
from vstore._py import keycodec as _py_keycodec
from vstore._py import nal as _py_nal
from vstore._py import ptable as _py_ptable
from vstore._py import tsdemux as _py_tsdemux

NO_EXTENSIONS = os.environ.get("VSTORE_NO_EXTENSIONS", "") not in ("", "0")

_compiled: dict[str, ModuleType] = {}
if not NO_EXTENSIONS and sys.byteorder == "little":
    try:
        from vstore._ext import cliptab as _c_cliptab
        from vstore._ext import keycodec as _c_keycodec
        from vstore._ext import nal as _c_nal
        from vstore._ext import ptable as _c_ptable
        from vstore._ext import tsdemux as _c_tsdemux

        _compiled = {
            "nal": _c_nal,
            "ptable": _c_ptable,
            "keycodec": _c_keycodec,
            "tsdemux": _c_tsdemux,
            "cliptab": _c_cliptab,
        }
    except ImportError:  # not built: the pure path is complete, only slower
        _compiled = {}

_pure = {
    "nal": _py_nal,
    "ptable": _py_ptable,
    "keycodec": _py_keycodec,
    "tsdemux": _py_tsdemux,
    "cliptab": _py_cliptab,
}

COMPILED = bool(_compiled)
IMPL = "c" if COMPILED else "py"

nal = _compiled.get("nal", _py_nal)
ptable = _compiled.get("ptable", _py_ptable)
keycodec = _compiled.get("keycodec", _py_keycodec)
tsdemux = _compiled.get("tsdemux", _py_tsdemux)
cliptab = _compiled.get("cliptab", _py_cliptab)

# Shared constants come from the pure module: both twins agree on them (tested).
CODEC_H264 = _py_nal.CODEC_H264
CODEC_HEVC = _py_nal.CODEC_HEVC
NAL_KEY = _py_nal.NAL_KEY
NAL_SPS = _py_nal.NAL_SPS
NAL_PPS = _py_nal.NAL_PPS
NAL_VPS = _py_nal.NAL_VPS
NAL_VCL = _py_nal.NAL_VCL
FORM_STORED = _py_nal.FORM_STORED
FORM_ANNEXB = _py_nal.FORM_ANNEXB
FORM_ADTS = _py_nal.FORM_ADTS


@contextmanager
def use(name: str) -> Iterator[None]:
    """Temporarily make ``name`` ("py" or "c") the active implementation (benchmarks, tests).

    Writers pick their twins when they are created, so create them inside the block.
    """
    global nal, ptable, keycodec, tsdemux, cliptab
    mods = implementations()[name]
    saved = nal, ptable, keycodec, tsdemux, cliptab
    nal, ptable, keycodec, tsdemux, cliptab = (
        mods["nal"],
        mods["ptable"],
        mods["keycodec"],
        mods["tsdemux"],
        mods["cliptab"],
    )
    try:
        yield
    finally:
        nal, ptable, keycodec, tsdemux, cliptab = saved


def implementations() -> dict[str, dict[str, ModuleType]]:
    """``{"py": {...}, "c": {...}}``; "c" is absent when the extensions are not built."""
    out = {"py": dict(_pure)}
    if _compiled:
        out["c"] = dict(_compiled)
    return out
