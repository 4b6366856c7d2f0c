"""Service routes (DESIGN §4): any user's settings and decrypted secrets, and an account's
export and removal, for service tokens (``role: "service"``) only. A secret read, an export
and a removal are audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..audit import audit
from ..crypto import WrappedKey, open_secret, unwrap_data_key
from ..errors import NotFound, ValidationError
from ..teams import is_team_key
from .account_models import AccountExport
from .account_routes import delete_user, export_response
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

__all__ = ["check_user_id", "router"]

router = APIRouter()


@router.get(
    "/v1/users/{user_id}/settings",
    response_model=SettingsResponse,
    responses=ERRORS,
    tags=["service"],
)
async def service_get(user_id: str, claims: ServiceDep, services: ServicesDep) -> Any:
    """Any user's settings (service tokens only)."""
    check_user_id(user_id)
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
    check_user_id(user_id)
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
    check_user_id(user_id)
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


@router.delete("/v1/users/{user_id}", status_code=204, responses=ERRORS, tags=["service"])
async def service_delete_user(
    user_id: str, request: Request, claims: ServiceDep, services: ServicesDep
) -> Response:
    """Delete a user's account as ``DELETE /v1/account`` does, without its password
    (service tokens only; audited). 404 when nothing of that user is stored; 409
    ``last_owner`` when the user alone owns a team (nothing is deleted)."""
    check_user_id(user_id)
    known = await services.store.get_user(user_id) is not None  # a built-in user
    address = client_address(request, services)
    await delete_user(services, user_id, by=f"service:{claims.sub}", known=known, address=address)
    return Response(status_code=204)


@router.get(
    "/v1/users/{user_id}/export",
    response_model=AccountExport,
    responses=ERRORS,
    tags=["service"],
)
async def service_export_user(
    user_id: str, request: Request, claims: ServiceDep, services: ServicesDep
) -> Any:
    """A user's export, as ``GET /v1/account/export`` gives it (service tokens only;
    audited)."""
    check_user_id(user_id)
    address = client_address(request, services)
    return await export_response(services, user_id, by=f"service:{claims.sub}", address=address)


async def _sealed_secret(services: Services, user_id: str, name: str) -> tuple[Any, WrappedKey]:
    doc = await services.store.get_document(user_id)
    envelope = doc.settings.get("api_keys", {}).get(name)
    if envelope is None:
        raise NotFound(f"user has no secret named {name!r}")
    wrapped = await services.store.get_wrapped_key(user_id)
    if wrapped is None:
        raise NotFound("user has no data key")
    return envelope, wrapped


def check_user_id(user_id: str) -> None:
    """422 unless ``user_id`` can name a user (1 to 128 characters, not a team document)."""
    if not user_id or len(user_id) > 128:
        raise ValidationError("user id must be 1 to 128 characters", path="/user_id")
    if is_team_key(user_id):
        raise ValidationError(
            "a team's document is not a user's: use /v1/teams/{team_id}/…",
            path="/user_id",
            code="invalid_user_id",
        )
