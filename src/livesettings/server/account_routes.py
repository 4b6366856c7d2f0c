"""The account lifecycle of the signed-in user: ``DELETE /v1/account`` and
``GET /v1/account/export`` (data portability). The service routes
``DELETE /v1/users/{user_id}`` and ``GET /v1/users/{user_id}/export`` use
:func:`delete_user` and :func:`export_response` from here.

Deleting needs a proof that the user is present, beyond an access token that may have been
left in a browser: the password of a built-in user, or a token from a sign-in at most
``LIVESETTINGS_FRESH_TOKEN_MAX_AGE`` seconds ago (users of an identity provider have no
password here). What is removed, and the team rule, are :mod:`livesettings.accounts`'.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ..accounts import Removal, remove_account
from ..audit import audit
from ..auth import Claims
from ..errors import Forbidden
from .account_export import EXPORT_FILENAME, account_export
from .account_models import AccountDeletion, AccountExport
from .auth_routes import check_failures, count_failure  # the sign-in limits, shared
from .dependencies import ERRORS, ClaimsDep, ServicesDep, client_address
from .services import Services
from .settings_routes import JsonAnswer

__all__ = ["delete_user", "export_response", "router"]

router = APIRouter()


@router.delete("/v1/account", status_code=204, responses=ERRORS, tags=["account"])
async def delete_account(
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    body: Annotated[AccountDeletion | None, Body()] = None,
) -> Response:
    """Delete the caller's account: settings, secrets (the data key is destroyed), change
    log, sessions. Needs ``{"password": …}`` (built-in users), or a token from a sign-in at
    most ``LIVESETTINGS_FRESH_TOKEN_MAX_AGE`` seconds ago. The caller leaves every team
    first; a team's last owner is refused (409 ``last_owner``) and nothing is deleted."""
    _own_account(claims)
    address = client_address(request, services)
    await _check_presence(services, claims, body.password if body else None, address)
    await delete_user(services, claims.sub, by="self", known=True, address=address)
    return Response(status_code=204)


@router.get(
    "/v1/account/export",
    response_model=AccountExport,
    responses=ERRORS,
    tags=["account"],
)
async def export_account(request: Request, claims: ClaimsDep, services: ServicesDep) -> Any:
    """Everything the caller's account holds, as a JSON download: the account, the settings
    and the retained change history (secrets masked), and the team memberships."""
    _own_account(claims)
    return await export_response(
        services, claims.sub, by="self", address=client_address(request, services)
    )


async def delete_user(
    services: Services, user_id: str, *, by: str, known: bool, address: str
) -> Removal:
    """Remove ``user_id``'s account (:func:`~livesettings.accounts.remove_account`), ending
    its sessions on every node: this node's sockets close with 4001 at once, the others'
    when they read the revocation (within a second or two)."""
    removal = await remove_account(
        services.store, user_id, services.revoke_user, known=known, by=by, address=address
    )
    for team_id in removal.teams_left:  # other nodes drop the user's team subscriptions
        await services.memberships.publish(services.bus, team_id, [user_id])
    return removal


async def export_response(services: Services, user_id: str, *, by: str, address: str) -> Any:
    """The export of ``user_id`` as a download (never cached: it is personal data)."""
    body = await account_export(services, user_id)
    audit("account_exported", user_id=user_id, by=by, address=address)
    return JsonAnswer(
        body,
        headers={
            "Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )


def _own_account(claims: Claims) -> None:
    if claims.is_service:
        raise Forbidden(
            "a service token has no account of its own: use /v1/users/{user_id}/export or "
            "DELETE /v1/users/{user_id}"
        )


async def _check_presence(
    services: Services, claims: Claims, password: str | None, address: str
) -> None:
    """Refuse (403) unless the password is right or the token is fresh; a wrong password
    counts against the user's sign-in limits, like a failed sign-in."""
    user = await services.store.get_user(claims.sub)
    if password is not None and user is not None:
        group = services.address_key(address)
        name_key = user.username.lower()
        check_failures(services, name_key, group, address=address, user_id=user.user_id)
        if await services.passwords.verify(user.password_hash, password):
            return
        count_failure(services, name_key, group)
        audit(
            "account_delete_refused", user_id=claims.sub, reason="wrong_password", address=address
        )
        raise Forbidden("the password is wrong", code="wrong_password")
    # No password (or an account without one: a user of an identity provider).
    max_age = services.config.fresh_token_max_age
    signed_in = _signed_in_at(claims)
    if signed_in is not None and services.clock.time() - signed_in <= max_age:
        return
    audit("account_delete_refused", user_id=claims.sub, reason="stale_token", address=address)
    how = "send the password, or sign in again" if user is not None else "sign in again"
    raise Forbidden(
        f"deleting the account needs a recent sign-in: {how} and delete within {max_age} s",
        code="reauthentication_required",
        details={"max_age": max_age},
    )


def _signed_in_at(claims: Claims) -> float | None:
    """When the token's user last proved who they are: its ``auth_time`` (OpenID Connect;
    providers keep it across refreshes, and the built-in issuer sets it only on a sign-in
    with the password); else, for a provider's token, its ``iat``. A built-in token without
    ``auth_time`` was traded for a refresh token, which proves nothing recent."""
    auth_time = claims.raw.get("auth_time")
    if auth_time is not None:
        valid = isinstance(auth_time, int | float) and not isinstance(auth_time, bool)
        return float(auth_time) if valid else None
    return None if claims.builtin else claims.iat
