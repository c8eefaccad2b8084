"""API tokens over HTTP, for the admin role: list, create (the token shown once, in the
answer), revoke. An admin hands out no more than it holds: a token's groups must lie within
the admin's own (an admin scoped to ``*`` may give any), and every change is audited (the
token's id, name, role and groups; never the token)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound, UsageError
from vstore.base.timebase import NS_PER_S, parse_duration_ns
from vstore.service.access import ALL_CAMERAS, Principal
from vstore.service.http_common import (
    API,
    PRINCIPAL,
    ApiError,
    Param,
    Route,
    audit,
    json_body,
    json_response,
)
from vstore.service.tokens import TokenFile, TokenRecord, audit_detail
from vstore.store.store import Store


class TokensApi:
    def __init__(self, store: Store, tokens: TokenFile) -> None:
        self.store, self.tokens = store, tokens

    @staticmethod
    def _within(p: Principal, groups: tuple[str, ...] | list[str]) -> bool:
        return p.sees_all() or (ALL_CAMERAS not in groups and set(groups) <= set(p.groups))

    def _audit(self, request: web.Request, action: str, rec: TokenRecord) -> None:
        audit(self.store, request, action, audit_detail(rec))

    async def list_tokens(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        recs = [r.public() for r in self.tokens.records().values() if self._within(p, r.groups)]
        return json_response({"tokens": recs})

    async def create(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        doc = await json_body(request, "name", "role", "groups", "expires")
        groups = doc.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UsageError('give "groups": ["NAME", ...] (or ["*"])')
        if not self._within(p, groups):
            raise ApiError(403, "forbidden", "a token's groups must lie within your own")
        expires_s: float | None = None
        if doc.get("expires"):
            expires_s = parse_duration_ns(str(doc["expires"])) / NS_PER_S
            if expires_s <= 0:
                raise UsageError("expires must be more than 0")
        token, rec = self.tokens.create(
            str(doc.get("name", "")), str(doc.get("role", "")), groups, self.store.config,
            expires_s,
        )  # fmt: skip
        self._audit(request, "token_create", rec)
        return json_response({**rec.public(), "token": token}, 201)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        token_id = request.match_info["token"]
        rec = self.tokens.records().get(token_id)
        if rec is None or not self._within(p, rec.groups):
            raise NotFound(f"no token {token_id!r}")
        was_active = rec.revoked_ns is None
        rec = self.tokens.revoke(token_id)
        if was_active:  # (revoking it again changes nothing: nothing to record)
            self._audit(request, "token_revoke", rec)
        return json_response(rec.public())


def token_routes(api: TokensApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(TokensApi, name)

    return [
        Route("GET", f"{API}/tokens", h("list_tokens"), "API tokens within your groups", "admin"),
        Route("POST", f"{API}/tokens", h("create"),
              "Make a token: {name, role, groups, expires?}; the token is in the answer, once",
              "admin", body=True, ok=(201,)),
        Route("DELETE", f"{API}/tokens/{{token}}", h("revoke"), "Revoke a token at once", "admin",
              (Param("token", "path", "token id"),)),
    ]  # fmt: skip
