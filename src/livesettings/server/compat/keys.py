"""The Supabase ``apikey``: the anon key, and the rule that every compat request carries one.

Supabase clients send the project's *anon key* on every request (``apikey`` header, and as
the bearer token until a user signs in). Here the anon key is a JWT signed with the server's
HS256 secret, ``{"role": "anon", "iat", "exp", "jti"}`` and no ``sub``: it identifies an app,
never a user. ``livesettings token issue --anon`` prints one; ``token revoke --jti`` ends it.

The server's ordinary verification (:meth:`Services.authenticate`, so ``/v1/*`` and the
``/v1/realtime`` socket) refuses an anon key as a user token with a 401; only the code here
asks the verifier for one explicitly (``anon=True``).

An ``apikey`` may also be a valid user or service token (as Supabase accepts a service-role
key there): :func:`check_apikey` answers which it was.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt
from starlette.requests import HTTPConnection

from ...auth import ANON_ROLE, MAX_SERVICE_TOKEN_TTL, Claims
from ...clock import SYSTEM_CLOCK, Clock
from ...errors import Unauthorized
from ..dependencies import client_address
from ..services import Services

__all__ = [
    "ANON_KEY_TTL",
    "ANON_ROLE",
    "ApiKey",
    "anon_claims",
    "apikey_of",
    "check_apikey",
    "is_anon",
    "issue_anon_key",
]

ANON_KEY_TTL: Final = MAX_SERVICE_TOKEN_TTL
"""An anon key's default and longest lifetime (90 days): as long as a revoked ``jti`` is
remembered, so ``token revoke --jti`` outlives every key it names."""


@dataclass(frozen=True)
class ApiKey:
    """What an ``apikey`` turned out to be: the anon key (``claims`` None) or a token's claims.

    ``claims`` of a user token act as that user; of a service token, as any user.
    """

    anon: bool
    claims: Claims | None = None
    jti: str | None = None

    @property
    def user_id(self) -> str | None:
        """The user an ``apikey`` that is a user token names (None: anon or service)."""
        if self.claims is None or self.claims.is_service:
            return None
        return self.claims.sub


def is_anon(token: str | None) -> bool:
    """True when ``token`` *claims* to be an anon key (``role: "anon"``), without verifying it.

    For routing only (a realtime join that arrives before the user's token, say); what it
    grants is decided by :func:`anon_claims` / :func:`check_apikey`, which verify.
    """
    if not token:
        return False
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(payload, dict) and payload.get("role") == ANON_ROLE


async def anon_claims(services: Services, token: str) -> Claims:
    """The verified claims of the anon key ``token``; ``Unauthorized`` when it is not one.

    Signed by a configured key, unexpired, not revoked by ``jti``, and living at most
    :data:`ANON_KEY_TTL` (a longer one would outlive its revocation). Its ``sub`` is empty.
    """
    claims = await services.verifier.verify_async(token, anon=True)
    if claims.role != ANON_ROLE:
        raise Unauthorized("this token is not an anon key", code="invalid_token")
    if claims.jti is not None and claims.jti in services.revoked_tokens:
        raise Unauthorized("this token was revoked", code="token_revoked")
    issued = claims.iat if claims.iat is not None else services.clock.time()
    if claims.exp - issued > ANON_KEY_TTL + services.config.jwt_leeway:
        raise Unauthorized(
            f"this anon key lives longer than {ANON_KEY_TTL // 86400} days; "
            "print a new one with `livesettings token issue --anon`",
            code="invalid_token",
        )
    return claims


async def check_apikey(
    services: Services, apikey: str | None, *, address: str | HTTPConnection, via: str = "http"
) -> ApiKey:
    """The ``apikey`` of a compat request: the anon key, or a valid user or service token.

    401 ``Unauthorized`` when it is missing, malformed, expired or revoked. ``address`` is the
    caller's (or the connection to read it from) for the audit line of a refused token.
    """
    if not apikey:
        raise Unauthorized(
            "no apikey: send the anon key (`livesettings token issue --anon`) as the 'apikey' "
            "header",
            code="invalid_token",
        )
    if is_anon(apikey):
        claims = await anon_claims(services, apikey)
        return ApiKey(anon=True, jti=claims.jti)
    where: str | Callable[[], str] = (
        address
        if isinstance(address, str)
        else functools.partial(client_address, address, services)
    )
    claims = await services.authenticate(apikey, address=where, via=via)
    return ApiKey(anon=False, claims=claims, jti=claims.jti)


def apikey_of(connection: HTTPConnection) -> str | None:
    """The ``apikey`` header, else the ``apikey`` query parameter (as some clients send it)."""
    value = connection.headers.get("apikey") or connection.query_params.get("apikey")
    return value.strip() or None if value else None


def issue_anon_key(
    secret: bytes,
    *,
    ttl_seconds: int = ANON_KEY_TTL,
    issuer: str | None = None,
    audience: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[str, int]:
    """A signed anon key and its expiry (Unix seconds): ``role: "anon"``, no ``sub``, a ``jti``.

    ``issuer`` / ``audience`` are the configured ``JWT_ISSUER`` / ``JWT_AUDIENCE``, which the
    verifier then requires.
    """
    if not 0 < ttl_seconds <= ANON_KEY_TTL:
        raise ValueError(f"an anon key lives 1 to {ANON_KEY_TTL} seconds")
    iat = math.floor(clock.time())
    claims: dict[str, Any] = {
        "role": ANON_ROLE,
        "iat": iat,
        "exp": iat + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256"), iat + ttl_seconds
