"""The HTTP perimeter: what a request must pass before any route sees it, in one middleware
(:class:`Edge`):

- :func:`host_refusal`: the ``Host`` must name this server (DNS rebinding) and a browser's
  ``Origin`` must be the server's own or a configured one — for requests and WebSocket
  handshakes alike (the rules are :func:`~.security.host_allowed` and
  :func:`~.security.origin_allowed`).
- a body that does not arrive within ``BODY_TIMEOUT`` gets 408; one over the limit, 413.
- :func:`ops_refusal`: ``/metrics`` and the API docs need ``OPS_TOKEN`` when it is set, and
  with ``OPS_ADDRESS`` they are served there only (and nothing else is, but health checks).

Slow headers are cut below ASGI, in the server's protocol (``http_protocol.py``).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config
from ..errors import BadRequest, Forbidden, LiveSettingsError, NotFound, Unauthorized
from .answers import BodyTooLarge, error_response
from .dependencies import too_large
from .security import host_allowed, origin_allowed, with_security_headers

__all__ = [
    "CORS_HEADERS",
    "OPS_PATHS",
    "Edge",
    "LeanHandler",
    "OpsListener",
    "RequestTimeout",
    "host_refusal",
    "ops_refusal",
    "refuse",
]

LeanHandler = Callable[[Scope, Receive, Send], Awaitable[None]]
"""A lean route's handler: a plain ASGI app."""

CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "X-Client-Id",
    "X-Base-Revision",
    "X-Edited-At",
    "Last-Event-ID",
    # What supabase-js sends to the Supabase-compatible endpoints (server/compat/).
    "apikey",
    "X-Client-Info",
    "Prefer",
    "Accept-Profile",
    "Content-Profile",
    "X-Supabase-Api-Version",
    "X-Retry-Count",
)

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


class Edge:
    """The one middleware every request and handshake passes, in this order:

    1. the security headers of every HTTP answer (:func:`~.security.security_headers`);
    2. ``Host`` and ``Origin`` (:func:`host_refusal`);
    3. CORS, when ``ALLOWED_ORIGINS`` is set (Starlette's, held here);
    4. the body's deadline (``BODY_TIMEOUT``: 408) and size (``limit``: 413, at once for a
       ``Content-Length`` over it, or as soon as a streamed body grows past it);
    5. the ops pages (:func:`ops_refusal`);
    6. the lean routes (``lean``: the hot routes, outside FastAPI's per-request machinery),
       else the app.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Config,
        *,
        limit: int,
        listener: OpsListener,
        lean: Callable[[Scope], LeanHandler | None] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.limit = limit
        self.timeout = config.body_timeout
        self.token = config.ops_token.encode() if config.ops_token else None
        self.listener = listener
        self.lean = lean
        self.inner: ASGIApp = self._inner
        if config.allowed_origins:
            self.inner = CORSMiddleware(
                self._inner,
                allow_origins=[o for o in config.allowed_origins if o != "*"] or ["*"],
                allow_methods=["GET", "HEAD", "PATCH", "PUT", "POST", "DELETE", "OPTIONS"],
                allow_headers=list(CORS_HEADERS),
                # Content-Range: PostgREST's row counts; the API version: auth-js reads
                # GoTrue's error shape by it.
                expose_headers=[
                    "ETag",
                    "Retry-After",
                    "Content-Range",
                    "X-Supabase-Api-Version",
                ],
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            send = with_security_headers(scope["path"], send)
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        refusal = host_refusal(scope, self.config)
        if refusal is None:
            await self.inner(scope, receive, send)
        else:
            await refuse(refusal, scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                    response = error_response(too_large(int(value), self.limit))
                    await response(scope, receive, send)
                    return
            receive = self._bounded(receive)
        refusal = ops_refusal(scope, self.token, self.listener)
        if refusal is not None:
            await refuse(refusal, scope, receive, send)
            return
        if self.lean is not None and scope["type"] == "http":
            handler = self.lean(scope)
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` failing a body that is late (408) or over the limit (413).

        The deadline runs only while the body is incomplete: later ``receive`` calls (a stream
        waiting for the client to leave) are not limited.
        """
        timeout = self.timeout
        limit = self.limit
        deadline = asyncio.get_running_loop().time() + timeout
        complete = False
        received = 0

        async def bounded() -> Message:
            nonlocal complete, received
            if complete:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise RequestTimeout(timeout) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    complete = True
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return bounded


def host_refusal(scope: Scope, config: Config) -> LiveSettingsError | None:
    """400 ``invalid_host`` for a ``Host`` that is not one of the server's names, then 403
    for a browser ``Origin`` that may not use the server (``forbidden`` on a request,
    ``forbidden_origin`` on a handshake, before the upgrade); ``None`` when it may pass."""
    host = origin = None
    hosts = 0
    for key, value in scope["headers"]:
        if key == b"host":
            host = value.decode("latin-1")
            hosts += 1
        elif key == b"origin":
            origin = value.decode("latin-1")
    if hosts > 1:  # RFC 9112 §3.2: which one would the routes believe?
        return BadRequest("the request has more than one Host", code="invalid_host")
    if not host_allowed(host, config):
        return BadRequest(
            f"the Host {(host or '')[:100]!r} is not a name of this server; its "
            "operator can add it to LIVESETTINGS_ALLOWED_HOSTS or LIVESETTINGS_PUBLIC_URL",
            code="invalid_host",
        )
    if not origin_allowed(origin, host, config, port=_server_port(scope)):
        if scope["type"] == "websocket":
            return Forbidden("this Origin may not open a socket", code="forbidden_origin")
        return Forbidden("requests from this Origin are not allowed")
    return None


def ops_refusal(
    scope: Scope, token: bytes | None, listener: OpsListener
) -> LiveSettingsError | None:
    """With ``OPS_TOKEN`` set, the operations pages (:data:`OPS_PATHS`) are 401 unless the
    request carries ``Authorization: Bearer <OPS_TOKEN>`` (compared in constant time).

    With a separate ops address, they are 404 on the main one, and that address serves only
    them and the health checks.
    """
    path: str = scope["path"]
    ops_page = scope["type"] == "http" and path in OPS_PATHS
    if listener.separate:
        port = listener.port
        on_ops_address = port is not None and _server_port(scope) == port
        if on_ops_address != ops_page and not (on_ops_address and path in _HEALTH_PATHS):
            return NotFound("not found on this address")
    if token is None or not ops_page:
        return None
    given = b""
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                given = credentials.strip()
    if hmac.compare_digest(given, token):
        return None
    return Unauthorized("this operations page needs the ops token (LIVESETTINGS_OPS_TOKEN)")


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
