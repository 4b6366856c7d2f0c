"""The admin routes under ``/v1/admin`` (the ``/admin`` dashboard's data, besides
``/v1/admin/stats``): users and teams searched by name or id, a user's sessions ended, a user
removed, and this node's last audit lines. Admins only (:data:`~.admin_access.AdminDep`); each
action is audited with ``by: "admin:<sub>"``. Every answer is bounded: at most
:data:`~livesettings.store.base.SEARCH_LIMIT_MAX` rows, read with LIMIT in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..audit import audit, rfc3339_ms
from ..errors import Conflict, NotFound
from ..store.base import SEARCH_LIMIT_MAX, UserSummary
from .account_routes import delete_user
from .admin_access import AdminDep
from .admin_models import AdminAuditResponse, AdminTeamsResponse, AdminUsersResponse
from .dependencies import ERRORS, ServicesDep, client_address
from .service_routes import check_user_id
from .services import Services

__all__ = ["router"]

router = APIRouter()

_TAGS: list[str | Any] = ["admin"]

SearchText = Annotated[
    str,
    Query(
        max_length=128,
        description="Part of a username or name (any case), or the start of an id; "
        "empty: the first ones.",
    ),
]
SearchLimit = Annotated[
    int, Query(ge=1, le=SEARCH_LIMIT_MAX, description="How many to return at most.")
]


@router.get("/v1/admin/users", response_model=AdminUsersResponse, responses=ERRORS, tags=_TAGS)
async def admin_users(
    claims: AdminDep, services: ServicesDep, q: SearchText = "", limit: SearchLimit = 50
) -> Any:
    """Users whose username contains ``q`` or whose id starts with it, with their counts,
    revision and last sighting (admins only). Never a secret."""
    found = await services.store.search_users(q.strip(), limit)
    return {"users": [_user(services, user) for user in found]}


@router.get("/v1/admin/teams", response_model=AdminTeamsResponse, responses=ERRORS, tags=_TAGS)
async def admin_teams(
    claims: AdminDep, services: ServicesDep, q: SearchText = "", limit: SearchLimit = 50
) -> Any:
    """Teams whose name contains ``q`` or whose id starts with it (admins only)."""
    found = await services.store.search_teams(q.strip(), limit)
    return {
        "teams": [
            {
                "team_id": team.team_id,
                "name": team.name,
                "members": team.members,
                "revision": team.revision,
                "created_at": team.created_at,
            }
            for team in found
        ]
    }


@router.post("/v1/admin/users/{user_id}/revoke", status_code=204, responses=ERRORS, tags=_TAGS)
async def admin_revoke(
    user_id: str, request: Request, claims: AdminDep, services: ServicesDep
) -> Response:
    """End every session of a user, as ``POST /v1/auth/logout`` does for oneself: refresh
    tokens revoked, access tokens issued so far refused, sockets closed with 4001 on every
    node (admins only; audited). 404 when nothing of that user is known."""
    check_user_id(user_id)
    if not await _known(services, user_id):
        raise NotFound(f"no user {user_id!r}")
    await services.revoke_user(user_id)
    audit(
        "sessions_revoked",
        user_id=user_id,
        by=f"admin:{claims.sub}",
        address=client_address(request, services),
    )
    return Response(status_code=204)


@router.delete("/v1/admin/users/{user_id}", status_code=204, responses=ERRORS, tags=_TAGS)
async def admin_delete_user(
    user_id: str, request: Request, claims: AdminDep, services: ServicesDep
) -> Response:
    """Remove a user's account with everything stored of it, as ``DELETE /v1/users/{user_id}``
    does (admins only; audited). 404 when nothing of that user is stored; 409 ``last_owner``
    when the user alone owns a team (nothing is removed); 409 ``conflict`` for one's own
    account (``DELETE /v1/account`` asks for the password)."""
    check_user_id(user_id)
    if user_id == claims.sub:
        raise Conflict(
            "an admin cannot remove their own account here; use DELETE /v1/account, or ask "
            "another admin"
        )
    known = await services.store.get_user(user_id) is not None  # a built-in user
    address = client_address(request, services)
    await delete_user(services, user_id, by=f"admin:{claims.sub}", known=known, address=address)
    services.admins.forget(user_id)
    return Response(status_code=204)


@router.get("/v1/admin/audit", response_model=AdminAuditResponse, responses=ERRORS, tags=_TAGS)
async def admin_audit(claims: AdminDep, services: ServicesDep) -> Any:
    """This node's last 100 audit lines, newest last (admins only)."""
    return {"lines": services.audit_ring.recent()}


def _user(services: Services, user: UserSummary) -> dict[str, Any]:
    seen = [
        t for t in (_seconds(user.updated_at), services.connections.last_seen(user.user_id)) if t
    ]
    return {
        "user_id": user.user_id,
        "username": user.username,
        "created_at": user.created_at,
        "admin": user.admin,
        "revision": user.revision,
        "updated_at": user.updated_at,
        "teams": user.teams,
        "connections": services.connections.count(user.user_id),
        "last_seen": rfc3339_ms(max(seen)) if seen else None,
    }


def _seconds(text: str | None) -> float | None:
    """An RFC 3339 time as Unix seconds (None when absent or unreadable)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _known(services: Services, user_id: str) -> bool:
    """Whether anything of ``user_id`` is here: an account, a document, or a connection."""
    return (
        services.connections.count(user_id) > 0
        or await services.store.get_user(user_id) is not None
        or await services.store.row_id(user_id) is not None
    )
