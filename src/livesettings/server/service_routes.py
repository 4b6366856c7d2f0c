"""Service routes (DESIGN §4): any user's settings and decrypted secrets, for service tokens
(``role: "service"``) only. A secret read is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..audit import audit
from ..crypto import WrappedKey, open_secret, unwrap_data_key
from ..errors import NotFound, ValidationError
from ..teams import is_team_key
from .dependencies import ERRORS, ServiceDep, ServicesDep, client_address
from .models import SecretResponse, SettingsResponse
from .services import Services
from .settings_routes import (
    PATCH_BODY,
    PatchHeadersDep,
    settings_response,
    write_patch,
    write_route,
)

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/v1/users/{user_id}/settings",
    response_model=SettingsResponse,
    responses=ERRORS,
    tags=["service"],
)
async def service_get(user_id: str, claims: ServiceDep, services: ServicesDep) -> Any:
    """Any user's settings (service tokens only)."""
    _check_user_id(user_id)
    return await settings_response(services, user_id)


@write_route(router, "PATCH", "/v1/users/{user_id}/settings", "service", PATCH_BODY)
async def service_patch(
    user_id: str,
    request: Request,
    claims: ServiceDep,
    services: ServicesDep,
    headers: PatchHeadersDep,
) -> Any:
    """Merge a patch into any user's settings (service tokens only)."""
    _check_user_id(user_id)
    return await write_patch(request, services, user_id, headers, f"service:{claims.sub}")


@router.get(
    "/v1/users/{user_id}/secrets/{name}",
    response_model=SecretResponse,
    responses=ERRORS,
    tags=["service"],
)
async def service_secret(
    user_id: str, name: str, request: Request, claims: ServiceDep, services: ServicesDep
) -> Any:
    """The decrypted secret, for an app's backend (service tokens only; audited)."""
    _check_user_id(user_id)
    envelope, wrapped = await _sealed_secret(services, user_id, name)
    if isinstance(envelope, dict) and envelope.get("kid") != wrapped.id:
        # `keys rotate --data-keys` renewed the key between the two reads: read both again.
        envelope, wrapped = await _sealed_secret(services, user_id, name)
    plaintext = open_secret(
        user_id, name, envelope, unwrap_data_key(services.keyring, user_id, wrapped)
    )
    audit(
        "secret_read",
        service=claims.sub,
        user_id=user_id,
        name=name,
        address=client_address(request, services),
    )
    return {"user_id": user_id, "name": name, "value": plaintext}


async def _sealed_secret(services: Services, user_id: str, name: str) -> tuple[Any, WrappedKey]:
    doc = await services.store.get_document(user_id)
    envelope = doc.settings.get("api_keys", {}).get(name)
    if envelope is None:
        raise NotFound(f"user has no secret named {name!r}")
    wrapped = await services.store.get_wrapped_key(user_id)
    if wrapped is None:
        raise NotFound("user has no data key")
    return envelope, wrapped


def _check_user_id(user_id: str) -> None:
    if not user_id or len(user_id) > 128:
        raise ValidationError("user id must be 1 to 128 characters", path="/user_id")
    if is_team_key(user_id):
        raise ValidationError(
            "a team's document is not a user's: use /v1/teams/{team_id}/…",
            path="/user_id",
            code="invalid_user_id",
        )
