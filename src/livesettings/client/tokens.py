"""Built-in sign-up and sign-in, and a token provider that refreshes before expiry.

The clients take ``token=`` as a string or as a callable returning one (sync or async); they
call it for each connection and again shortly before the access token expires.
:class:`RefreshingToken` is such a callable for the server's built-in users::

    tokens = await sign_in("http://127.0.0.1:8000", "ada", "correct horse battery")
    async with AsyncClient("http://127.0.0.1:8000", RefreshingToken(url, tokens)) as client:
        ...
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from livesettings.errors import (
    ConnectionClosed,
    LiveSettingsError,
    Unauthorized,
    error_from_payload,
)

__all__ = [
    "RefreshingToken",
    "TokenSource",
    "Tokens",
    "get_json",
    "post_json",
    "read_response",
    "resolve_token",
    "sign_in",
    "sign_up",
]

TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]]
"""An access token, or a callable (sync or async) that returns a valid one."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """An access/refresh token pair; ``expires_at`` is the access token's expiry (Unix s)."""

    access_token: str
    refresh_token: str
    user_id: str
    expires_at: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Tokens:
        """Read the server's token response."""
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            user_id=str(body["user_id"]),
            expires_at=int(body["expires_at"]),
        )


async def post_json(
    url: str,
    path: str,
    body: dict[str, Any],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 10.0,
) -> dict[str, Any]:
    """POST ``body`` to ``url + path`` and return the JSON answer; errors from the tree."""
    try:
        async with httpx.AsyncClient(
            base_url=url, transport=transport, timeout=http_timeout
        ) as http:
            response = await http.post(path, json=body)
    except httpx.TransportError as exc:
        raise ConnectionClosed(f"cannot reach {url}: {exc}") from exc
    return read_response(response)


async def get_json(http: httpx.AsyncClient, token: TokenSource, path: str) -> dict[str, Any]:
    """GET ``path`` with a fresh token from ``token``; the JSON answer, errors from the tree."""
    bearer = await resolve_token(token)
    try:
        response = await http.get(path, headers={"Authorization": f"Bearer {bearer}"})
    except httpx.TransportError as exc:
        raise ConnectionClosed(f"cannot reach {http.base_url}: {exc}") from exc
    return read_response(response)


def read_response(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response; an error body becomes its exception."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        raise error_from_payload(data, response.status_code)
    if not isinstance(data, dict):
        raise LiveSettingsError(
            f"the server answered {response.status_code} without a JSON object",
            code="bad_response",
        )
    return data


async def sign_up(
    url: str, username: str, password: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> Tokens:
    """Create a built-in user (``POST /v1/auth/signup``) and return its tokens."""
    return await _password_grant(url, "/v1/auth/signup", username, password, transport)


async def sign_in(
    url: str, username: str, password: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> Tokens:
    """Sign in a built-in user (``POST /v1/auth/token``) and return its tokens."""
    return await _password_grant(url, "/v1/auth/token", username, password, transport)


async def _password_grant(
    url: str, path: str, username: str, password: str, transport: httpx.AsyncBaseTransport | None
) -> Tokens:
    body = {"username": username, "password": password}
    return Tokens.from_body(await post_json(url, path, body, transport=transport))


class RefreshingToken:
    """A token provider: the current access token, refreshed when within ``margin`` s of expiry.

    Refresh tokens rotate (each refresh returns a new pair, and reusing an old one revokes the
    family), so one instance must own a pair; concurrent calls share one refresh.
    """

    def __init__(
        self,
        url: str,
        tokens: Tokens,
        *,
        margin: float = 60.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.tokens = tokens
        self.margin = margin
        self.refreshes = 0
        self._clock = clock
        self._transport = transport
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        async with self._lock:
            if self._clock() < self.tokens.expires_at - self.margin:
                return self.tokens.access_token
            body = await post_json(
                self.url,
                "/v1/auth/refresh",
                {"refresh_token": self.tokens.refresh_token},
                transport=self._transport,
            )
            self.tokens = Tokens.from_body(body)
            self.refreshes += 1
            return self.tokens.access_token


async def resolve_token(source: TokenSource) -> str:
    """The access token a :data:`TokenSource` gives now; a failing provider is
    :class:`~livesettings.errors.Unauthorized` (its own errors of the tree pass through)."""
    if isinstance(source, str):
        return source
    try:
        token = source()
        if inspect.isawaitable(token):
            token = await token
    except LiveSettingsError:
        raise
    except Exception as exc:
        raise Unauthorized(f"the token provider failed: {exc}") from exc
    if not isinstance(token, str) or not token:
        raise Unauthorized("the token provider returned no token")
    return token
