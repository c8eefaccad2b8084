"""The browser page and its session: the page's files, and signing in with a token (kept in
an HttpOnly, SameSite=Strict cookie that the API accepts beside bearer tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from vstore.base.errors import NotFound
from vstore.service.access import ACTIONS, Principal
from vstore.service.http_common import (
    API,
    PRINCIPAL,
    ApiError,
    Param,
    Route,
    json_body,
    json_response,
)
from vstore.service.request_bodies import SESSION
from vstore.service.tokens import TokenFile

SESSION_COOKIE = "vstore_token"
PAGE_DIR = Path(__file__).with_name("page")
PAGE_FILES = {
    "index.html": "text/html",
    "page.js": "text/javascript",
    "page.css": "text/css",
    "hls.light.min.js": "text/javascript",  # hls.js, vendored (tools/vendor_hlsjs.sh)
    "hls.js-LICENSE.txt": "text/plain",
}


class PageApi:
    def __init__(self, tokens: TokenFile) -> None:
        self.tokens = tokens

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._static("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._static(request.match_info["name"])

    @staticmethod
    def _static(name: str) -> web.StreamResponse:
        kind = PAGE_FILES.get(name)
        if kind is None:
            raise NotFound(f"no file {name!r}")
        body = (PAGE_DIR / name).read_bytes()
        headers = {
            "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
            "img-src 'self' data:; "
            "worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }
        return web.Response(body=body, content_type=kind, headers=headers)

    async def login(self, request: web.Request) -> web.StreamResponse:
        """The browser page's sign-in: a token in, an HttpOnly cookie holding it out."""
        doc = await json_body(request, SESSION)
        token = doc["token"].strip()
        p = self.tokens.authenticate(token) if token else None
        if p is None:
            raise ApiError(401, "unauthorized", "that token is not valid (or was revoked)")
        resp = json_response(self._whoami(p))
        resp.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        resp = json_response({"signed_out": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    @staticmethod
    def _whoami(p: Principal) -> dict[str, Any]:
        # (what it may do: the page offers only that, a viewer no download)
        return {"name": p.name, "role": p.role, "groups": list(p.groups),
                "may": [a for a in ACTIONS if p.may(a)]}  # fmt: skip

    async def session(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._whoami(request[PRINCIPAL]))


def page_routes(api: PageApi | None) -> list[Route]:
    def h(name: str) -> Any:
        return getattr(api, name) if api is not None else getattr(PageApi, name)

    return [
        Route("GET", "/", h("page"), "The browser page", None, produces="text/html"),
        Route("GET", "/static/{name}", h("static"), "The page's scripts and styles", None,
              (Param("name", "path", "file name"),), produces="text/plain"),
        Route("POST", f"{API}/session", h("login"),
              "Sign in with a token: {token}; sets an HttpOnly cookie", None, body=SESSION),
        Route("GET", f"{API}/session", h("session"), "Who the request is signed in as", "view"),
        Route("DELETE", f"{API}/session", h("logout"), "Sign out (the cookie is cleared)", None),
    ]  # fmt: skip
