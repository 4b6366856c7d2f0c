"""DESIGN §6 at the edge: the Origin rule, the client address behind trusted proxies, and the
security headers of the page."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config, origin_of, proxy_networks
from ..errors import ConfigError

__all__ = ["CSP", "SecurityHeaders", "forwarded_address", "origin_allowed"]

CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"

_Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_allowed(origin: str | None, host: str | None, config: Config) -> bool:
    """No Origin (non-browser clients), the server's own origin, or a configured one.

    Origins compare as (scheme, host, port), RFC 6454. The server's own origin is
    ``PUBLIC_URL``'s when it is set (behind a reverse proxy the ``Host`` the server sees is
    not what browsers use, and trusting ``Host`` would let a DNS-rebinding page in); without
    it, the ``Host`` the request was sent to.
    """
    if origin is None:
        return True
    if "*" in config.allowed_origins:
        return True
    try:
        theirs = origin_of(origin, "Origin")
    except ConfigError:
        return False  # "null", garbage
    if theirs in _configured(config.allowed_origins):
        return True
    if config.public_url:
        return theirs == _own(config.public_url)
    if not host:
        return False
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return False
    if port is None:
        port = _DEFAULT_PORTS.get(theirs[0], 0)  # a Host without a port: the scheme's
    return (theirs[1], theirs[2]) == ((parts.hostname or "").lower(), port)


@functools.lru_cache(maxsize=64)
def _configured(entries: tuple[str, ...]) -> frozenset[_Origin]:
    return frozenset(origin_of(e, "LIVESETTINGS_ALLOWED_ORIGINS") for e in entries if e != "*")


@functools.lru_cache(maxsize=8)
def _own(public_url: str) -> _Origin:
    return origin_of(public_url, "LIVESETTINGS_PUBLIC_URL")


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...] | None:
    return proxy_networks(entries)


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def forwarded_address(peer: str | None, forwarded_for: str | None, config: Config) -> str:
    """The client's address: the peer, or — when the peer is a trusted proxy — the
    right-most ``X-Forwarded-For`` hop that is not a trusted proxy itself.

    Hops left of that one were written by the client and prove nothing, so a client cannot
    pick its own address (and dodge per-address limits) by sending the header itself.
    """
    address = peer or "unknown"
    trusted = config.trusted_proxies
    if not forwarded_for or not trusted:
        return address
    networks = _networks(trusted)

    def is_proxy(text: str) -> bool:
        if networks is None:  # "*": every peer is a proxy (only behind a private network)
            return True
        ip = _ip(text)
        return ip is not None and any(ip in net for net in networks)

    if not is_proxy(address):
        return address
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_proxy(hop):
            return _shown(hop)
    return _shown(hops[0]) if hops else address


def _shown(hop: str) -> str:
    ip = _ip(hop)
    return str(ip) if ip is not None else hop[:64]


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
