"""The HTTP perimeter: what a request must pass before any route sees it.

- :class:`HostGuard`: the ``Host`` must name this server (DNS rebinding) and a browser's
  ``Origin`` must be the server's own or a configured one — for requests and WebSocket
  handshakes alike (the rules are :func:`~.security.host_allowed` and
  :func:`~.security.origin_allowed`).
- :class:`BodyTimeout`: a body that does not arrive within ``BODY_TIMEOUT`` gets 408.
- :class:`OpsGuard`: ``/metrics`` and the API docs need ``OPS_TOKEN`` when it is set, and
  with ``OPS_ADDRESS`` they are served there only (and nothing else is, but health checks).

Slow headers are cut below ASGI, in the server's protocol (``http_protocol.py``).
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config
from ..errors import BadRequest, Forbidden, LiveSettingsError, NotFound, Unauthorized
from .security import host_allowed, origin_allowed

__all__ = [
    "OPS_PATHS",
    "BodyTimeout",
    "HostGuard",
    "HttpMiddleware",
    "OpsGuard",
    "OpsListener",
    "RequestTimeout",
]

OPS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass
class OpsListener:
    """The separate address of the ops pages: ``separate`` when ``OPS_ADDRESS`` is set, and
    the ``port`` it is bound to once the server listens there."""

    separate: bool = False
    port: int | None = None


class RequestTimeout(HTTPException):
    """Raised from ``receive`` when a body is late; the app's error handler answers 408."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {timeout:g} seconds",
            headers={"Connection": "close"},
        )


class HostGuard:
    """400 ``invalid_host`` for a ``Host`` that is not one of the server's names, then 403
    for a browser ``Origin`` that may not use the server (``forbidden`` on a request,
    ``forbidden_origin`` on a handshake, before the upgrade)."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = origin = None
        hosts = 0
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif key == b"origin":
                origin = value.decode("latin-1")
        refusal: LiveSettingsError | None = None
        if hosts > 1:  # RFC 9112 §3.2: which one would the routes believe?
            refusal = BadRequest("the request has more than one Host", code="invalid_host")
        elif not host_allowed(host, self.config):
            refusal = BadRequest(
                f"the Host {(host or '')[:100]!r} is not a name of this server; its "
                "operator can add it to LIVESETTINGS_ALLOWED_HOSTS or LIVESETTINGS_PUBLIC_URL",
                code="invalid_host",
            )
        elif not origin_allowed(origin, host, self.config, port=_server_port(scope)):
            if scope["type"] == "websocket":
                refusal = Forbidden("this Origin may not open a socket", code="forbidden_origin")
            else:
                refusal = Forbidden("requests from this Origin are not allowed")
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refuse(refusal, scope, receive, send)


class HttpMiddleware:
    """An ASGI middleware for plain HTTP requests (:meth:`handle`); WebSocket and lifespan
    scopes pass by untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyTimeout(HttpMiddleware):
    """Fails a request whose body is not complete ``timeout`` seconds after its headers.

    The deadline runs only while the body is incomplete: later ``receive`` calls (a stream
    waiting for the client to leave) are not limited.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        super().__init__(app)
        self.timeout = timeout

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(self.timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed, send)


class OpsGuard:
    """With ``OPS_TOKEN`` set, the operations pages (:data:`OPS_PATHS`) answer 401 unless
    the request carries ``Authorization: Bearer <OPS_TOKEN>`` (compared in constant time).

    With a separate ops address, they are 404 on the main one, and that address serves only
    them and the health checks.
    """

    def __init__(self, app: ASGIApp, token: str | None, listener: OpsListener) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        ops_page = scope["type"] == "http" and path in OPS_PATHS
        if self.listener.separate:
            port = self.listener.port
            on_ops_address = port is not None and _server_port(scope) == port
            if on_ops_address != ops_page and not (on_ops_address and path in _HEALTH_PATHS):
                await refuse(NotFound("not found on this address"), scope, receive, send)
                return
        if self.token is None or not ops_page:
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
        if hmac.compare_digest(given, self.token):
            await self.app(scope, receive, send)
            return
        await refuse(
            Unauthorized("this operations page needs the ops token (LIVESETTINGS_OPS_TOKEN)"),
            scope,
            receive,
            send,
        )


async def refuse(exc: LiveSettingsError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``exc`` as the JSON error body, before any route ran; a handshake gets it as
    its HTTP response (or a policy close where the server cannot send one)."""
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="livesettings"'
    response = JSONResponse({"error": exc.to_payload()}, status_code=exc.status, headers=headers)
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008})
        return
    await response(scope, receive, send)


def _server_port(scope: Scope) -> int | None:
    server: Any = scope.get("server")
    if isinstance(server, list | tuple) and len(server) == 2 and isinstance(server[1], int):
        return server[1]
    return None
