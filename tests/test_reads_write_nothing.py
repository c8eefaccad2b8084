"""A read writes nothing to the store's index: `ls`, `timeline`, `clip` and `snapshot` and a
library read-only open go through a private view of links outside the store, so a reader
beside a recorder never touches the files the recorder owns (and reads read-only media)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import START_NS
from tests.test_cli import seed
from vstore.api import open_store
from vstore.base.timebase import format_time
from vstore.cli.main import main


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def _views() -> set[str]:
    scratch = Path(os.environ.get("TMPDIR") or "/tmp")
    return {p.name for p in scratch.glob(f"vstore-index-view-{os.getpid()}-*")}


def test_reads_leave_the_index_untouched_and_clean_up_their_view(store_dir, tmp_path, capsys):
    seed(store_dir)
    index = store_dir / "index"
    before = _snapshot(index)
    views = _views()
    t0, t1 = format_time(START_NS), format_time(START_NS + 2_000_000_000)
    store = ["--store", str(store_dir)]
    assert main(["ls", *store]) == 0
    assert main(["timeline", *store, "--camera", "cam"]) == 0
    assert (
        main(
            [
                "clip",
                *store,
                "--camera",
                "cam",
                "--from",
                t0,
                "--to",
                t1,
                "-o",
                str(tmp_path / "c.mp4"),
            ]
        )
        == 0
    )
    with open_store(store_dir, read_only=True) as st:
        assert st.index.read_only
        assert _views() != views  # the open goes through a view...
    assert _views() == views  # ...removed when the store closes
    assert _snapshot(index) == before
    capsys.readouterr()


def test_a_read_only_open_sees_what_a_writer_committed_after_an_earlier_view(store_dir):
    """Each open makes its own view: footage a writer added since is seen."""
    seed(store_dir, cam="a")
    with open_store(store_dir, read_only=True) as st:
        assert [c.camera for c in st.cameras()] == ["a"]
    seed(store_dir, cam="b")
    with open_store(store_dir, read_only=True) as st:
        assert sorted(c.camera for c in st.cameras()) == ["a", "b"]
