"""The admin gate of the ``/v1/admin`` routes: :data:`AdminDep`.

401 without a token or with a bad one (as every route), 403 ``forbidden`` for anyone who is
not an admin (a service token never is), and an ``admin_access`` audit line for an admin —
at most one per admin and path per minute (see :mod:`.admins`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..auth import Claims
from ..errors import Forbidden
from .dependencies import ClaimsDep, ServicesDep

__all__ = ["AdminDep", "admin_claims"]


async def admin_claims(request: Request, claims: ClaimsDep, services: ServicesDep) -> Claims:
    """The caller's claims when the caller is an admin; 403 ``forbidden`` otherwise."""
    if claims.is_service:
        raise Forbidden("a service token is not an admin; sign in as an admin user")
    if not await services.admins.is_admin(claims):
        raise Forbidden("this needs an admin (livesettings user admin NAME --on)")
    services.admins.note_access(claims.sub, request.url.path)
    return claims


AdminDep = Annotated[Claims, Depends(admin_claims)]
"""The claims of an admin caller (401 / 403 otherwise); audited."""
