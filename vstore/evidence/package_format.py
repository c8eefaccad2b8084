"""The names and encodings an evidence package's writer and its verifier share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

FORMAT = "vstore-evidence/1"  # the manifest's "format"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"  # raw Ed25519 signature of MANIFEST's bytes
SIGNER = "signer.pem"  # the export key's public half
README = "README.txt"
CLIPS_DIR = "clips"
HASH_BLOCK = 1 << 20


def manifest_bytes(doc: dict[str, Any]) -> bytes:
    """The manifest as signed: indented JSON in the writer's key order, one final newline.
    A verifier checks the bytes as they are, never a re-encoding of them."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def sha256_stream(f: IO[bytes]) -> tuple[Any, int]:
    """The SHA-256 state of everything ``f`` has left to read, and how many bytes that was."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        h.update(view[:n])
        size += n
    return h, size


def sha256_file(path: Path) -> str:
    with open(path, "rb", buffering=0) as f:
        return sha256_stream(f)[0].hexdigest()
