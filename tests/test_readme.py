"""The README's embedding example runs as written, against a local file and a scratch store."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent


def embedding_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    (example,) = [b for b in blocks if "store.writer(" in b]
    return example


def test_the_readme_embedding_example_runs_and_its_clip_plays(media, tmp_path):
    source = media("readme-camera.ts", 6.0, audio="aac")
    store = tmp_path / "store"
    out = tmp_path / "c.mp4"
    # The example writes a camera file as fast as it demuxes, so its footage starts now and
    # runs a few seconds into the future: the clip asks for the hour around now instead of
    # the README's fixed morning.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    code = embedding_example()
    for old, new in (
        ('"/var/lib/vstore"', repr(str(store))),
        ('"rtsp://camera/stream1"', repr(str(source))),
        ('"2025-01-17T08:00:05+07:00"', '"-1h"'),
        ('"2025-01-17T08:01:05+07:00"', repr(later)),
        ('out="c.mp4"', f"out={str(out)!r}"),
    ):
        assert old in code, f"the README example no longer contains {old}"
        code = code.replace(old, new)
    run = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"]
    assert frames == 6 * 25
