"""What the HTTP routes (and the WebSocket endpoint) share: the services, the caller's address,
its token's claims, the JSON body, the error responses of the OpenAPI document, and the
``draining`` refusal.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from .. import strict_json
from ..auth import Claims
from ..errors import BadRequest, Forbidden, LiveSettingsError, StorageError, TooLarge, Unauthorized
from .models import ErrorResponse
from .security import forwarded_address
from .services import Services

__all__ = [
    "ERRORS",
    "ClaimsDep",
    "ServiceDep",
    "ServicesDep",
    "bearer_claims",
    "bearer_token",
    "claims_of",
    "client_address",
    "draining",
    "read_json",
    "service_claims",
    "services_of",
    "too_large",
]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 403, 404, 409, 410, 412, 413, 422, 428, 429)
}
"""The error responses every route of the OpenAPI document lists."""


def draining() -> LiveSettingsError:
    """The refusal of a node that is shutting down: 503 ``draining`` (HTTP, a WebSocket
    handshake); sockets already open are closed with 1001 instead."""
    return StorageError("the server is shutting down", code="draining")


async def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services_of)]


def client_address(connection: HTTPConnection, services: Services) -> str:
    """The caller's address; ``X-Forwarded-For`` counts only from a trusted proxy."""
    peer = connection.client.host if connection.client else None
    forwarded = connection.headers.get("x-forwarded-for")
    return forwarded_address(peer, forwarded, services.config)


_bearer = HTTPBearer(
    auto_error=False,
    description="An access token: a built-in user's (POST /v1/auth/token), a service token, "
    "or one from the configured identity provider.",
)


async def bearer_claims(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    token = credentials.credentials.strip() if credentials is not None else ""
    return await claims_of(request, services, token)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, as :data:`_bearer` and
    :func:`bearer_claims` read it; ``""`` when there is none."""
    if not authorization:
        return ""
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if not (scheme and credentials) or scheme.lower() != "bearer":
        return ""
    return credentials.strip()


async def claims_of(connection: HTTPConnection, services: Services, token: str) -> Claims:
    """The claims of the bearer ``token`` (401 when empty, invalid or revoked)."""
    if not token:
        raise Unauthorized("send the access token as 'Authorization: Bearer <token>'")
    address = functools.partial(client_address, connection, services)  # only a refusal needs it
    return await services.authenticate(token, address=address, via="http")


ClaimsDep = Annotated[Claims, Depends(bearer_claims)]


async def service_claims(claims: ClaimsDep) -> Claims:
    if not claims.is_service:
        raise Forbidden("this route needs a service token (role: service)")
    return claims


ServiceDep = Annotated[Claims, Depends(service_claims)]


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, with 413 over ``limit`` bytes and 400 when malformed."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("the request body must be a JSON object", code="malformed_json")
    try:
        return strict_json.loads_bytes(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            f"the request body is not valid JSON: {exc}", code="malformed_json"
        ) from exc


def too_large(size: int, limit: int) -> LiveSettingsError:
    """413 for a body of ``size`` bytes over ``limit``."""
    return TooLarge(
        f"the request body is {size} bytes; the limit is {limit}",
        details={"size": size, "limit": limit},
    )
