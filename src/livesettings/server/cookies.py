"""The browser's refresh token as an HttpOnly cookie: the settings page's "cookie mode".

A page of this server's own origin asks for it with ``X-Refresh-Cookie: 1`` on sign-up,
sign-in, refresh and password change. The refresh token is then set as a cookie
(``HttpOnly; SameSite=Strict; Path=/v1/auth``, and ``Secure`` over https) and left out of the
JSON body, so no script of the page can read it; the access token stays in the page's memory.
``POST /v1/auth/refresh`` takes the cookie when the body carries no refresh token, and only with
that header: a cross-site form cannot send it, and a cross-origin ``fetch`` cannot without a
CORS preflight this server never grants for it. A request whose ``Origin`` is not the server's
own is refused cookie mode even when ``ALLOWED_ORIGINS`` lets it in: apps of other origins keep
the refresh token in the body, as every non-browser client does.

A refused refresh and every logout made in cookie mode clear the cookie
(:class:`RefreshCookieReset`).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config
from ..errors import Forbidden
from .security import origin_allowed

__all__ = [
    "COOKIE_PATH",
    "MODE_HEADER",
    "REFRESH_COOKIE",
    "RefreshCookieReset",
    "cookie_mode",
    "refresh_cookie",
    "token_response",
]

REFRESH_COOKIE = "livesettings_refresh"
COOKIE_PATH = "/v1/auth"
MODE_HEADER = "X-Refresh-Cookie"
_MAX_TOKEN = 512  # RefreshRequest's bound: a longer cookie is no token of ours
_CLEARED_ON = ("/v1/auth/refresh", "/v1/auth/logout")


def _config(request: Request) -> Config:
    config: Config = request.app.state.services.config
    return config


async def cookie_mode(
    request: Request,
    x_refresh_cookie: Annotated[
        str | None,
        Header(
            pattern="^1$",
            description="1: the refresh token travels as an HttpOnly cookie scoped to "
            "/v1/auth, not in the JSON body (pages of the server's own origin only).",
        ),
        WithJsonSchema({"type": "string", "enum": ["1"]}),  # a header is never null
    ] = None,
) -> bool:
    """Whether the caller asked for cookie mode; 403 from a foreign ``Origin``."""
    if x_refresh_cookie is None:
        return False
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is not None and not origin_allowed(origin, host, _config(request), own_only=True):
        raise Forbidden(
            "the refresh cookie is only for pages of this server's own origin; "
            "send the refresh token in the body instead",
            code="cookie_cross_origin",
        )
    return True


def refresh_cookie(request: Request) -> str | None:
    """The refresh token the cookie carries, if any (call only in cookie mode)."""
    value = request.cookies.get(REFRESH_COOKIE, "").strip()
    return value if 0 < len(value) <= _MAX_TOKEN else None


def _secure(scheme: str, config: Config) -> bool:
    return scheme == "https" or (config.public_url or "").lower().startswith("https:")


def token_response(request: Request, body: dict[str, Any], cookie: bool) -> JSONResponse:
    """A token answer; in cookie mode the refresh token moves from the body to the cookie."""
    headers = {"Cache-Control": "no-store"}  # RFC 6749 §5.1
    if not cookie:
        return JSONResponse(body, headers=headers)
    refresh = body.pop("refresh_token")
    config = _config(request)
    response = JSONResponse(body, headers=headers)
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=config.refresh_token_ttl,
        path=COOKIE_PATH,
        secure=_secure(request.url.scheme, config),
        httponly=True,
        samesite="strict",
    )
    return response


@functools.cache  # two possible values, built once
def _clearing_header(secure: bool) -> tuple[bytes, bytes]:
    response = Response()
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
    return next((k, v) for k, v in response.raw_headers if k == b"set-cookie")


class RefreshCookieReset:
    """Clears the refresh cookie on a refused cookie-mode refresh and on every logout made by
    a page holding it, whatever the route answered (an expired access token included)."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in _CLEARED_ON:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        has_cookie = f"{REFRESH_COOKIE}=" in headers.get("cookie", "")
        asked = headers.get(MODE_HEADER.lower()) == "1"
        logout = scope["path"] == "/v1/auth/logout"
        if not (has_cookie and (asked or logout)):
            await self.app(scope, receive, send)
            return
        clearing = _clearing_header(_secure(scope.get("scheme", "http"), self.config))

        async def send_clearing(message: Message) -> None:
            if message["type"] == "http.response.start" and (logout or message["status"] == 401):
                message = {**message, "headers": [*message.get("headers", []), clearing]}
            await send(message)

        await self.app(scope, receive, send_clearing)
