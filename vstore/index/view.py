"""The private view a read-only index open goes through: a directory of links to the index's
files, outside the store, so that a reader writes nothing to the store (RocksDB writes
nothing to a database opened read-only, but the binding rewrites its config file and
RocksDB starts an info log in the directory it opens), and reads read-only media, an
evidence copy or a store another user owns."""

import atexit
import os
from pathlib import Path

from vstore.base import layout

# Views of indexes still open when the process exits (one that never closes its index).
_LIVE_VIEWS: set[Path] = set()
atexit.register(lambda: [remove_view(v) for v in list(_LIVE_VIEWS)])


def make_view(path: Path) -> Path:
    """A private directory of links to the index's files, outside the store, for a read-only
    open. RocksDB writes nothing to a database opened read-only, but the binding rewrites
    its config file and RocksDB starts an info log in the directory it opens: through the
    view a reader writes nothing to the store, and it also reads a store on read-only
    media, an evidence copy or a store another user owns."""
    path = path.resolve()  # the links must name their targets from anywhere
    scratch = Path(os.environ.get("TMPDIR") or "/tmp")
    while True:
        view = layout.index_view_dir(scratch, os.getpid(), os.urandom(6).hex())
        try:
            os.mkdir(view, 0o700)
            break
        except FileExistsError:
            continue
    _LIVE_VIEWS.add(view)
    for name in os.listdir(path):
        if not name.startswith(layout.INDEX_VIEW_SKIP):
            os.symlink(path / name, view / name)
    return view


def remove_view(view: Path) -> None:
    """Remove a view: its links, and what the binding and RocksDB wrote there (no shutil:
    it costs every command a few ms of start-up for bz2 and lzma)."""
    _LIVE_VIEWS.discard(view)
    try:
        for name in os.listdir(view):
            os.unlink(view / name)
        os.rmdir(view)
    except OSError:
        pass  # (in the scratch directory, not the store: a leftover harms nothing)
