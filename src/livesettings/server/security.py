"""DESIGN §6 at the edge: the Origin rule, the client address behind trusted proxies, and the
security headers of the page."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

from starlette.types import Message, Send

from ..config import Config, origin_of, proxy_networks
from ..errors import ConfigError

__all__ = [
    "CSP",
    "LOCAL_NAMES",
    "address_key",
    "forwarded_address",
    "host_allowed",
    "origin_allowed",
    "with_security_headers",
]

CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"

_Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_allowed(host: str | None, config: Config) -> bool:
    """Whether a request's ``Host`` names this server: the defence against DNS rebinding.

    A rebinding page at ``http://evil.example:PORT`` reaches the server under its own name,
    so a name must be one the server knows: ``localhost``, ``HOST`` when it is a name,
    ``PUBLIC_URL``'s host and ``ALLOWED_HOSTS`` (``*`` there turns the check off). An IP
    address is accepted as it is: no DNS answer can make a browser send one. No ``Host`` at
    all (HTTP/1.0) is not a browser.
    """
    if host is None or "*" in config.allowed_hosts:
        return True
    return _known(host, _own_names(config))


@functools.lru_cache(maxsize=256)  # every request asks, mostly with the same few Hosts
def _known(host: str, names: frozenset[str]) -> bool:
    name = _host_and_port(host)[0]
    if not name:
        return False
    if name in names:
        return True
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(
    origin: str | None,
    host: str | None,
    config: Config,
    *,
    port: int | None = None,
    own_only: bool = False,
) -> bool:
    """No Origin (non-browser clients), the server's own origin, or a configured one.

    Origins compare as (scheme, host, port), RFC 6454. With ``PUBLIC_URL`` the server's own
    origin is that URL's alone (behind a reverse proxy the ``Host`` the node sees is not what
    browsers use). Without it, it is the ``Host`` the request was sent to when
    :func:`host_allowed` accepts it, or a local name (``localhost``, ``127.0.0.1``, ``[::1]``,
    ``HOST``) on ``port``, the port the connection arrived on (the ``Host``'s when unknown).
    ``own_only`` ignores ``ALLOWED_ORIGINS``: only the server's own origin passes.
    """
    if origin is None:
        return True
    if not own_only and "*" in config.allowed_origins:
        return True
    theirs = _parsed_origin(origin)
    if theirs is None:
        return False  # "null", garbage
    if not own_only and theirs in _configured(config.allowed_origins):
        return True
    if config.public_url:
        return theirs == _own(config.public_url)
    if not host or not host_allowed(host, config):
        return False
    name, host_port = _host_and_port(host)
    if host_port is None:
        host_port = _DEFAULT_PORTS.get(theirs[0], 0)  # a Host without a port: the scheme's
    if (theirs[1], theirs[2]) == (name, host_port):
        return True
    server_port = host_port if port is None else port
    return theirs[1] in _local_names(config.host) and theirs[2] == server_port


@functools.lru_cache(maxsize=256)  # parsing is the slow part; browsers send few values
def _parsed_origin(origin: str) -> _Origin | None:
    try:
        return origin_of(origin, "Origin")
    except ConfigError:
        return None


@functools.lru_cache(maxsize=256)
def _host_and_port(host: str) -> tuple[str, int | None]:
    """``Host`` as (lower-case name without brackets or final dot, port); ("", None) if
    malformed."""
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
        name = (parts.hostname or "").rstrip(".")
    except ValueError:
        return "", None
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return "", None
    return name, port


@functools.lru_cache(maxsize=8)
def _local_names(bound: str) -> frozenset[str]:
    bound = bound.strip("[]").lower().rstrip(".")
    return LOCAL_NAMES | ({bound} if bound not in ("", "0.0.0.0", "::") else set())


def _own_names(config: Config) -> frozenset[str]:
    return _names(config.host, config.public_url, config.allowed_hosts)


@functools.lru_cache(maxsize=8)
def _names(bound: str, public_url: str | None, extra: tuple[str, ...]) -> frozenset[str]:
    names = set(_local_names(bound))
    names.update(e.strip("[]").lower().rstrip(".") for e in extra if e != "*")
    if public_url:
        names.add(_own(public_url)[1])
    return frozenset(names)


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


def address_key(address: str, config: Config) -> str:
    """The key per-address limits count ``address`` under: its network.

    IPv6 addresses group by ``ADDRESS_PREFIX_IPV6`` (a /64 by default: one subscriber's LAN
    gets at least that much, so single addresses cost an attacker nothing), IPv4 addresses by
    ``ADDRESS_PREFIX_IPV4`` (a /32, the address itself, by default). An IPv4-mapped IPv6
    address counts as its IPv4 address. Anything that is not an IP address is its own key.
    """
    ip = _ip(address)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip is None:
        return address
    if isinstance(ip, IPv4Address):
        bits = config.address_prefix_ipv4
        if bits >= 32:
            return str(ip)
        return str(IPv4Network((ip, bits), strict=False))
    bits = config.address_prefix_ipv6
    if bits >= 128:
        return str(ip)
    return str(IPv6Network((ip, bits), strict=False))


def _shown(hop: str) -> str:
    ip = _ip(hop)
    return str(ip) if ip is not None else hop[:64]


_API_HEADERS: Mapping[bytes, bytes] = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}
_PAGE_HEADERS: Mapping[bytes, bytes] = {
    **_API_HEADERS,
    b"content-security-policy": CSP.encode(),
    b"x-frame-options": b"DENY",
}


_API_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics")


def with_security_headers(path: str, send: Send) -> Send:
    """``send`` adding ``nosniff`` to every answer, and the CSP (and no framing) to every
    page and static file; a header the answer sets itself is kept."""
    extra = _API_HEADERS if path.startswith(_API_PREFIXES) else _PAGE_HEADERS

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {k.lower() for k, _ in headers}
            for key, value in extra.items():
                if key not in names:
                    headers.append((key, value))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_headers
