"""The auth routes of DESIGN §4: sign-up, sign-in, refresh, logout and password change.

Sign-ins and refreshes draw from rate limits per user and per address, failed sign-ins are
counted per username and address (docs/decisions.md), and the settings page keeps its refresh
token in an HttpOnly cookie (``cookies.py``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..audit import audit
from ..auth import (
    TokenIssuer,
    hash_refresh_token,
    new_family_id,
    new_refresh_token,
    validate_password,
    validate_username,
)
from ..errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized
from .cookies import cookie_mode, refresh_cookie, token_response
from .dependencies import ERRORS, ClaimsDep, ServicesDep, client_address
from .models import Credentials, PasswordChange, RefreshRequest, SignupRequest, TokenResponse
from .ratelimit import RateLimiter
from .services import Services

__all__ = ["router"]

router = APIRouter()

# The settings page keeps its refresh token in an HttpOnly cookie (server/cookies.py).
CookieModeDep = Annotated[bool, Depends(cookie_mode)]


def _presented_refresh_token(body: RefreshRequest, request: Request, cookie: bool) -> str:
    presented = body.refresh_token or (refresh_cookie(request) if cookie else None)
    if not presented:
        raise Unauthorized(
            "no refresh token: send it in the body (the settings page sends its cookie with "
            "X-Refresh-Cookie: 1)",
            code="invalid_token",
        )
    return presented


def _builtin(services: Services) -> TokenIssuer:
    """The token issuer of built-in users, or 403 when there is none (no HS256 secret)."""
    if services.issuer is None:
        raise Forbidden(
            "built-in users are disabled: this server accepts tokens from its identity "
            "provider only (set LIVESETTINGS_JWT_SECRET to enable sign-up and sign-in)",
            code="builtin_users_disabled",
        )
    return services.issuer


async def _issue_pair(
    services: Services, user_id: str, family_id: str | None = None
) -> dict[str, Any]:
    token, exp = _builtin(services).issue(user_id, signed_in=True)
    refresh = new_refresh_token()
    expires = int(services.clock.time()) + services.config.refresh_token_ttl
    await services.store.add_refresh_token(
        hash_refresh_token(refresh),
        user_id,
        family_id or new_family_id(),
        expires,
        max_families=services.config.max_refresh_families,
    )
    return _token_body(services, user_id, token, exp, refresh)


def _token_body(
    services: Services, user_id: str, token: str, exp: int, refresh: str
) -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": services.config.access_token_ttl,
        "expires_at": exp,
        "user_id": user_id,
        "refresh_token": refresh,
    }


@router.post("/v1/auth/signup", response_model=TokenResponse, responses=ERRORS, tags=["auth"])
async def signup(
    credentials: SignupRequest, request: Request, services: ServicesDep, cookie: CookieModeDep
) -> Any:
    """Create a built-in user (when sign-up is allowed) and sign it in."""
    _builtin(services)
    if not services.config.signup_allowed:
        raise Forbidden("sign-up is disabled on this server", code="signup_disabled")
    address = client_address(request, services)
    group = services.address_key(address)
    wait = services.signup_by_address.blocked_for(group)
    if wait > 0:
        audit("signup_blocked", address=address)
        raise RateLimited("too many sign-ups from this address", retry_after=wait)
    username = validate_username(credentials.username)
    password = validate_password(credentials.password)
    # Counted before the lookup, so "taken" answers cannot be used to list usernames fast.
    services.signup_by_address.add(group)
    if await services.store.get_user_by_username(username) is not None:
        raise Conflict(f"the username {username!r} is taken", code="username_taken")
    user_id = str(uuid.uuid4())
    password_hash = await services.passwords.hash(password)
    await services.store.create_user(user_id, username, password_hash)
    audit("signup", user_id=user_id, address=address)
    return token_response(request, await _issue_pair(services, user_id), cookie)


@router.post("/v1/auth/token", response_model=TokenResponse, responses=ERRORS, tags=["auth"])
async def token(
    credentials: Credentials, request: Request, services: ServicesDep, cookie: CookieModeDep
) -> Any:
    """Sign in with a username and password."""
    _builtin(services)
    address = client_address(request, services)
    group = services.address_key(address)
    name_key = credentials.username.lower()
    check_failures(services, name_key, group, address=address)
    _take(services.auth_by_address, group, "too many sign-ins from this address", address=address)
    user = await services.store.get_user_by_username(credentials.username)
    if user is None:
        ok = await services.passwords.dummy_verify(credentials.password)
    else:
        ok = await services.passwords.verify(user.password_hash, credentials.password)
    if user is None or not ok:
        count_failure(services, name_key, group)
        services.signin_by_address.add(group)
        # The user id only, never what was typed: a password typed into the username box
        # must not reach a log.
        audit(
            "signin_failed",
            user_id=user.user_id if user else None,
            reason="wrong_password" if user else "unknown_username",
            address=address,
        )
        raise Unauthorized("wrong username or password", code="invalid_credentials")
    # Successful sign-ins count too: each one issues tokens and stores a refresh token.
    limited = "too many sign-ins for this user"
    _take(services.auth_by_user, user.user_id, limited, address=address, user_id=user.user_id)
    services.signin_by_user.reset(_failure_key(name_key, group))
    audit("signin", user_id=user.user_id, address=address)
    return token_response(request, await _issue_pair(services, user.user_id), cookie)


def _failure_key(name_key: str, group: str) -> str:
    return f"{name_key} {group}"


def check_failures(
    services: Services, name_key: str, group: str, *, address: str, user_id: str | None = None
) -> None:
    """429 while the username has too many recent failures from this address, or from
    everywhere (the much higher ceiling), or the address has (for any username)."""
    for by, counter, key in (
        ("username_and_address", services.signin_by_user, _failure_key(name_key, group)),
        ("username", services.signin_by_username, name_key),
        ("address", services.signin_by_address, group),
    ):
        wait = counter.blocked_for(key)
        if wait > 0:
            audit("signin_blocked", user_id=user_id, address=address, by=by)
            raise RateLimited(
                "too many failed sign-ins; try again later",
                retry_after=wait,
                details={"retry_after": wait},
            )


def count_failure(services: Services, name_key: str, group: str) -> None:
    services.signin_by_user.add(_failure_key(name_key, group))
    services.signin_by_username.add(name_key)


def _take(
    limiter: RateLimiter, key: str, message: str, *, address: str, user_id: str | None = None
) -> None:
    """One sign-in or refresh from ``limiter``'s budget for ``key``, or 429."""
    wait = limiter.take(key)
    if wait > 0:
        audit("auth_rate_limited", reason=message, user_id=user_id, address=address)
        raise RateLimited(message, retry_after=wait, details={"retry_after": wait})


@router.post("/v1/auth/refresh", response_model=TokenResponse, responses=ERRORS, tags=["auth"])
async def refresh(
    body: RefreshRequest, request: Request, services: ServicesDep, cookie: CookieModeDep
) -> Any:
    """Trade a refresh token for a new pair. A reused refresh token signals theft: every
    session of its user ends (refresh tokens, access tokens issued so far, live sockets)."""
    issuer = _builtin(services)
    address = client_address(request, services)
    limited = "too many refreshes from this address"
    _take(services.auth_by_address, services.address_key(address), limited, address=address)
    presented = hash_refresh_token(_presented_refresh_token(body, request, cookie))
    owner = await services.store.refresh_token_owner(presented)
    if owner is not None:  # checked before rotating, so a refused refresh keeps its token
        limited = "too many refreshes for this user"
        _take(services.auth_by_user, owner, limited, user_id=owner, address=address)
    new = new_refresh_token()
    now = int(services.clock.time())
    result = await services.store.use_refresh_token(
        presented,
        hash_refresh_token(new),
        now + services.config.refresh_token_ttl,
        now,
    )
    if result.status == "reused" and result.user_id is not None:
        await services.revoke_user(result.user_id)
        audit("refresh_reuse", user_id=result.user_id, address=address)
        raise Unauthorized(
            "this refresh token was already used; sign in again", code="token_reused"
        )
    if result.status != "ok" or result.user_id is None:
        raise Unauthorized("the refresh token is not valid", code="invalid_token")
    token_, exp = issuer.issue(result.user_id)
    return token_response(request, _token_body(services, result.user_id, token_, exp, new), cookie)


@router.post("/v1/auth/logout", status_code=204, responses=ERRORS, tags=["auth"])
async def logout(claims: ClaimsDep, services: ServicesDep) -> Response:
    """Revoke the caller's refresh tokens and end its live sessions."""
    await services.revoke_user(claims.sub)
    audit("logout", user_id=claims.sub)
    return Response(status_code=204)


@router.post("/v1/auth/password", response_model=TokenResponse, responses=ERRORS, tags=["auth"])
async def change_password(
    body: PasswordChange,
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    cookie: CookieModeDep,
) -> Any:
    """Change the password; every other session of the user ends."""
    _builtin(services)
    user = await services.store.get_user(claims.sub)
    if user is None:
        raise NotFound("no built-in user for this token")
    # A stolen access token must not become a way to guess the password: the username's
    # sign-in limits count these failures too.
    address = client_address(request, services)
    group = services.address_key(address)
    name_key = user.username.lower()
    check_failures(services, name_key, group, address=address, user_id=user.user_id)
    if not await services.passwords.verify(user.password_hash, body.current_password):
        count_failure(services, name_key, group)
        audit("password_change_failed", user_id=user.user_id, address=address)
        raise Unauthorized("the current password is wrong", code="invalid_credentials")
    password = validate_password(body.new_password)
    password_hash = await services.passwords.hash(password)
    await services.store.set_password(user.user_id, password_hash)
    await services.revoke_user(user.user_id)
    audit("password_changed", user_id=user.user_id)
    return token_response(request, await _issue_pair(services, user.user_id), cookie)
