"""API tokens: made once, shown once, stored only as a hash in ``auth/tokens.json``.

A token is ``vst_ID_SECRET``: ``ID`` names it in listings and the audit log, ``SECRET`` is 32
random bytes. The file keeps the SHA-256 of the whole token: a secret that random cannot be
guessed from its hash, so a slow password hash would only slow every request. The file is
written whole and durably (mode 0600, in a 0700 folder), under a lock so that two commands
cannot lose each other's change; the service reads it again when it changes, so a token made
or revoked while it runs counts at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vstore.base.errors import ConfigError, NotFound, UsageError
from vstore.base.fsutil import Fs, translate_oserror, write_durably
from vstore.base.layout import StoreLayout, staging_path
from vstore.base.timebase import NS_PER_S, parse_duration_ns
from vstore.service.access import Principal, check_groups, check_role
from vstore.store.config import StoreConfig

PREFIX = "vst_"


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    groups: tuple[str, ...]
    sha256: str
    created_ns: int
    expires_ns: int | None = None
    revoked_ns: int | None = None

    def public(self) -> dict[str, Any]:
        """The record without its hash (for listings)."""
        d = asdict(self)
        del d["sha256"]
        d["groups"] = list(self.groups)
        d["state"] = self.state()
        return d

    def state(self) -> str:
        if self.revoked_ns is not None:
            return "revoked"
        if self.expires_ns is not None and time.time_ns() >= self.expires_ns:
            return "expired"
        return "active"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The store's token file: create, list, revoke, and authenticate a presented token."""

    def __init__(self, layout: StoreLayout, fs: Fs | None = None) -> None:
        self.path = layout.tokens_path
        self._lock_path = layout.auth_dir / "tokens.lock"
        self._fs = fs or Fs()
        self._cache: tuple[tuple[int, int, int], dict[str, TokenRecord]] | None = None

    def _read(self) -> dict[str, TokenRecord]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            return {
                r["id"]: TokenRecord(**{**r, "groups": tuple(r["groups"])}) for r in doc["tokens"]
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: not a token file vstore wrote ({exc})") from exc

    def records(self) -> dict[str, TokenRecord]:
        """The tokens, read again only when the file changed."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, self._read())
        return self._cache[1]

    @contextmanager
    def _locked(self) -> Iterator[dict[str, TokenRecord]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        finally:
            os.close(fd)

    def _write(self, recs: dict[str, TokenRecord]) -> None:
        doc = {"tokens": [asdict(r) for r in recs.values()]}
        data = json.dumps(doc, indent=1).encode() + b"\n"
        try:
            write_durably(self._fs, self.path, staging_path(self.path), data, mode=0o600)
        except OSError as exc:  # (a full disk is StorageFull: 507, exit 7)
            raise translate_oserror(exc, f"writing {self.path}") from exc

    def create(
        self,
        name: str,
        role: str,
        groups: list[str],
        config: StoreConfig,
        expires_s: float | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token and its record; the token itself is never stored."""
        if not name.strip():
            raise UsageError("give the token a name (who or what uses it)")
        check_role(role)
        scoped = check_groups(groups, config)
        token_id = secrets.token_hex(4)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = time.time_ns()
        expires = None if expires_s is None else now + int(expires_s * NS_PER_S)
        rec = TokenRecord(token_id, name, role, scoped, _digest(token), now, expires)
        with self._locked() as recs:
            recs[token_id] = rec
            self._write(recs)
        return token, rec

    def revoke(self, token_id: str) -> TokenRecord:
        with self._locked() as recs:
            rec = recs.get(token_id)
            if rec is None:
                raise NotFound(f"no token {token_id!r} (see `vstore token list`)")
            if rec.revoked_ns is None:
                rec = recs[token_id] = TokenRecord(**{**asdict(rec), "revoked_ns": time.time_ns()})
                self._write(recs)
            return rec

    def authenticate(self, token: str) -> Principal | None:
        """The principal a presented token stands for; None for anything else (unknown,
        malformed, revoked, expired)."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        token_id = token[len(PREFIX) :].split("_", 1)[0]
        rec = self.records().get(token_id)
        if rec is None or not hmac.compare_digest(rec.sha256, _digest(token)):
            return None
        if rec.revoked_ns is not None:
            return None
        if rec.expires_ns is not None and time.time_ns() >= rec.expires_ns:
            return None
        return Principal(rec.name, rec.role, rec.groups, f"token:{rec.id}")


def audit_detail(rec: TokenRecord) -> dict[str, Any]:
    """What a token_create or token_revoke audit record says of the token (never its secret)."""
    return {"token": rec.id, "name": rec.name, "role": rec.role, "groups": list(rec.groups)}


def expires_s_of(text: str | None, what: str) -> float | None:
    """A token's lifetime from a duration ("30d", "12h"); None: until revoked."""
    if not text:
        return None
    expires_s = parse_duration_ns(str(text)) / NS_PER_S
    if expires_s <= 0:
        raise UsageError(f"{what} must be more than 0")
    return expires_s


def create_audited(
    store: Any, tokens: TokenFile, name: str, role: str, groups: list[str],
    expires_s: float | None, by: str,
) -> tuple[str, TokenRecord]:  # fmt: skip
    """Make a token on a store this process holds, and record it in the audit log (as
    ``by``; a request's own actor when called inside ``as_requester``)."""
    token, rec = tokens.create(name, role, groups, store.config, expires_s)
    store.index.audit("token_create", by, audit_detail(rec), time.time_ns())
    return token, rec


def revoke_audited(store: Any, tokens: TokenFile, token_id: str, by: str) -> TokenRecord:
    """Revoke a token on a store this process holds; recorded unless it was revoked already."""
    before = tokens.records().get(token_id)
    rec = tokens.revoke(token_id)
    if before is not None and before.revoked_ns is None:
        store.index.audit("token_revoke", by, audit_detail(rec), time.time_ns())
    return rec


def token_file(root: Path) -> TokenFile:
    return TokenFile(StoreLayout(root))
