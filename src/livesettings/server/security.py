"""The Origin rule and the security headers of DESIGN §6."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config

__all__ = ["CSP", "SecurityHeaders", "origin_allowed"]

CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"


def _netloc(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    return host if port is None or port == default else f"{host}:{port}"


def origin_allowed(origin: str | None, host: str | None, config: Config) -> bool:
    """No Origin (non-browser clients), the server's own origin, or a configured one."""
    if origin is None:
        return True
    origin = origin.strip()
    if origin in config.allowed_origins or "*" in config.allowed_origins:
        return True
    if origin == "null":
        return False
    if config.public_url:
        return _netloc(origin) == _netloc(config.public_url)
    if host:
        return _netloc(origin) == host.lower().removesuffix(":80")
    return False


class SecurityHeaders:
    """Adds ``nosniff`` everywhere and the CSP (and no framing) to every page and static file."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        page = not path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra: Mapping[bytes, bytes] = {
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                }
                if page:
                    extra = {
                        **extra,
                        b"content-security-policy": CSP.encode(),
                        b"x-frame-options": b"DENY",
                    }
                for key, value in extra.items():
                    if key not in names:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
