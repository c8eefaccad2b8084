"""API tokens over HTTP, for the admin role: list, create (the token shown once, in the
answer), revoke. An admin hands out no more than it holds: a token's groups must lie within
the admin's own (an admin scoped to ``*`` may give any), and every change is audited (the
token's id, name, role and groups; never the token)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound
from vstore.service.access import ALL_CAMERAS, Principal
from vstore.service.http_common import (
    API,
    PRINCIPAL,
    ApiError,
    Param,
    Route,
    as_requester,
    json_body,
    json_response,
)
from vstore.service.request_bodies import TOKEN
from vstore.service.tokens import TokenFile, create_audited, expires_s_of, revoke_audited
from vstore.store.store import Store


class TokensApi:
    def __init__(self, store: Store, tokens: TokenFile) -> None:
        self.store, self.tokens = store, tokens

    @staticmethod
    def _within(p: Principal, groups: tuple[str, ...] | list[str]) -> bool:
        return p.sees_all() or (ALL_CAMERAS not in groups and set(groups) <= set(p.groups))

    async def list_tokens(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        recs = [r.public() for r in self.tokens.records().values() if self._within(p, r.groups)]
        return json_response({"tokens": recs})

    async def create(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        doc = await json_body(request, TOKEN)
        groups = doc["groups"]
        if not self._within(p, groups):
            raise ApiError(403, "forbidden", "a token's groups must lie within your own")
        expires_s = expires_s_of(doc.get("expires"), "expires")
        with as_requester(request):
            token, rec = create_audited(
                self.store, self.tokens, doc["name"], doc["role"],
                groups, expires_s, p.name,
            )  # fmt: skip
        return json_response({**rec.public(), "token": token}, 201)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        p: Principal = request[PRINCIPAL]
        token_id = request.match_info["token"]
        rec = self.tokens.records().get(token_id)
        if rec is None or not self._within(p, rec.groups):
            raise NotFound(f"no token {token_id!r}")
        with as_requester(request):  # (revoking it again changes nothing: nothing recorded)
            rec = revoke_audited(self.store, self.tokens, token_id, p.name)
        return json_response(rec.public())


def token_routes(api: TokensApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(TokensApi, name)

    return [
        Route("GET", f"{API}/tokens", h("list_tokens"), "API tokens within your groups", "admin"),
        Route("POST", f"{API}/tokens", h("create"),
              "Make a token: {name, role, groups, expires?}; the token is in the answer, once",
              "admin", body=TOKEN, ok=(201,)),
        Route("DELETE", f"{API}/tokens/{{token}}", h("revoke"), "Revoke a token at once", "admin",
              (Param("token", "path", "token id"),)),
    ]  # fmt: skip
