"""``/auth/v1``: the GoTrue subset supabase-js signs in with, over the built-in users.

The email is the built-in username; sign-up, sign-in and refresh are the routes of
``auth_routes.py`` themselves (their validation, rate limits, lockouts and audit lines), and
here only translated: GoTrue's request and answer shapes, its error codes, and access tokens
that carry ``role: "authenticated"`` and ``aud: "authenticated"`` as Supabase's do (the
configured ``JWT_AUDIENCE`` instead, when there is one).

| route | answer |
|---|---|
| ``POST /auth/v1/signup`` ``{email, password}`` | a session (users are confirmed at once) |
| ``POST /auth/v1/token?grant_type=password`` ``{email, password}`` | a session |
| ``POST /auth/v1/token?grant_type=refresh_token`` ``{refresh_token}`` | a session |
| ``GET /auth/v1/user`` | the user |
| ``POST /auth/v1/logout`` | 204; every session of the user ends (any ``scope``) |

A session is ``{access_token, token_type, expires_in, expires_at, refresh_token, user}``.
Every request carries an ``apikey`` (:mod:`.keys`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import Response

from ...auth import Claims
from ...errors import LiveSettingsError, TokenExpired, Unauthorized
from ...store import UserRow
from .. import auth_routes
from ..dependencies import bearer_token, claims_of, read_json
from ..models import Credentials, RefreshRequest, SignupRequest
from ..services import Services
from .answers import GoTrueError, gotrue_response, json_answer, retry_after_of
from .keys import apikey_of, check_apikey

__all__ = ["AUTHENTICATED", "gotrue_user", "router"]

AUTHENTICATED: Final = "authenticated"
"""The ``role`` and ``aud`` of a signed-in user's token, as Supabase names them."""

_BODY_LIMIT: Final = 16 * 1024
_INVALID_LOGIN: Final = "Invalid login credentials"

router = APIRouter(prefix="/auth/v1", include_in_schema=False)

_Handler = Callable[[Request, Services], Awaitable[Response]]


def _gotrue(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """Check the ``apikey``, run ``handler``, and answer any refusal in GoTrue's shape."""

    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            await _check_apikey(request, services)
            return await handler(request, services)
        except GoTrueError as exc:
            return gotrue_response(request, exc)
        except LiveSettingsError as exc:
            services.metrics.errors.inc(code=exc.code)
            return gotrue_response(request, _translate(exc))

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def _check_apikey(request: Request, services: Services) -> None:
    """401 unless the request carries an ``apikey``: the anon key or a valid token."""
    apikey = apikey_of(request)
    if apikey is None:
        raise GoTrueError(401, "no_api_key", "No API key found in request")
    try:
        await check_apikey(services, apikey, address=request)
    except LiveSettingsError as exc:
        raise GoTrueError(401, "bad_jwt", f"Invalid API key: {exc.message}") from exc


def _translate(exc: LiveSettingsError) -> GoTrueError:
    """A livesettings refusal as the GoTrue error a client expects in its place."""
    wait = retry_after_of(exc)
    match exc.code:
        case "invalid_credentials":
            return GoTrueError(400, "invalid_credentials", _INVALID_LOGIN)
        case "username_taken":
            return GoTrueError(422, "user_already_exists", "User already registered")
        case "signup_disabled":
            return GoTrueError(422, "signup_disabled", "Signups not allowed for this instance")
        case "weak_password":
            return GoTrueError(422, "weak_password", exc.message)
        case "invalid_username":
            return GoTrueError(
                400, "validation_failed", f"Unable to validate email address: {exc.message}"
            )
        case "rate_limited":
            return GoTrueError(429, "over_request_rate_limit", exc.message, retry_after=wait)
        case "token_reused":
            return GoTrueError(
                400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
            )
        case "builtin_users_disabled":
            return GoTrueError(422, "email_provider_disabled", exc.message)
        case "malformed_json" | "invalid":
            return GoTrueError(400, "validation_failed", exc.message)
        case "too_large":
            return GoTrueError(413, "request_too_large", exc.message)
    if exc.status >= 500:
        return GoTrueError(exc.status, "unexpected_failure", exc.message, retry_after=wait)
    return GoTrueError(exc.status, exc.code, exc.message, retry_after=wait)


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, _BODY_LIMIT)
    if not isinstance(body, dict):
        raise GoTrueError(400, "validation_failed", "the request body must be a JSON object")
    return body


def _credentials(body: dict[str, Any], model: type[Credentials]) -> Credentials:
    """``{email, password}`` as the built-in routes' credentials (email = username)."""
    if "phone" in body and "email" not in body:
        raise GoTrueError(422, "phone_provider_disabled", "Phone logins are not supported")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not email:
        raise GoTrueError(400, "validation_failed", "missing email or phone")
    if not isinstance(password, str) or not password:
        raise GoTrueError(400, "validation_failed", "Signup requires a valid password")
    try:
        # GoTrue compares addresses without case: one account per address, however typed.
        return model(username=email.strip().lower(), password=password)
    except pydantic.ValidationError:
        raise GoTrueError(400, "validation_failed", "email or password is too long") from None


def gotrue_user(user: UserRow) -> dict[str, Any]:
    """A built-in user as GoTrue's ``User`` (confirmed, email provider, no metadata)."""
    return {
        "id": user.user_id,
        "aud": AUTHENTICATED,
        "role": AUTHENTICATED,
        "email": user.username,
        "email_confirmed_at": user.created_at,
        "phone": "",
        "confirmed_at": user.created_at,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "identities": [],
        "created_at": user.created_at,
        "updated_at": user.created_at,
        "is_anonymous": False,
    }


async def _session(services: Services, answer: Response, *, signed_in: bool) -> Response:
    """The built-in route's token answer as a GoTrue session, its access token re-issued
    with Supabase's ``role`` and ``aud`` (the refresh token is the one the route stored)."""
    body = json.loads(bytes(answer.body))
    user_id: str = body["user_id"]
    issuer = auth_routes._builtin(services)
    token, exp = issuer.issue(
        user_id, role=AUTHENTICATED, signed_in=signed_in, audience=AUTHENTICATED
    )
    user = await services.store.get_user(user_id)
    if user is None:  # removed in between
        raise GoTrueError(403, "user_not_found", "User from sub claim in JWT does not exist")
    session = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": issuer.ttl_seconds,
        "expires_at": exp,
        "refresh_token": body["refresh_token"],
        "user": gotrue_user(user),
    }
    return json_answer(session, headers={"Cache-Control": "no-store"})


async def _signup(request: Request, services: Services) -> Response:
    """Create a built-in user (email = username) and sign it in."""
    credentials = _credentials(await _body(request), SignupRequest)
    assert isinstance(credentials, SignupRequest)
    answer = await auth_routes.signup(credentials, request, services, False)
    return await _session(services, answer, signed_in=True)


async def _token(request: Request, services: Services) -> Response:
    """Sign in with a password, or trade a refresh token."""
    grant = request.query_params.get("grant_type")
    body = await _body(request)
    if grant == "password":
        credentials = _credentials(body, Credentials)
        answer = await auth_routes.token(credentials, request, services, False)
        return await _session(services, answer, signed_in=True)
    if grant == "refresh_token":
        presented = body.get("refresh_token")
        if not isinstance(presented, str) or not 0 < len(presented) <= 512:
            raise GoTrueError(400, "validation_failed", "refresh_token required")
        try:
            answer = await auth_routes.refresh(
                RefreshRequest(refresh_token=presented), request, services, False
            )
        except Unauthorized as exc:
            if exc.code != "invalid_token":
                raise
            raise GoTrueError(
                400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
            ) from exc
        return await _session(services, answer, signed_in=False)
    raise GoTrueError(400, "invalid_credentials", "unsupported_grant_type")


async def _bearer_user(request: Request, services: Services) -> Claims:
    """The claims of the request's bearer token (a user's), refused in GoTrue's words."""
    token = bearer_token(request.headers.get("authorization"))
    if not token:
        raise GoTrueError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    try:
        claims = await claims_of(request, services, token)
    except TokenExpired as exc:
        raise GoTrueError(
            403, "bad_jwt", "invalid JWT: unable to parse or verify signature, token is expired"
        ) from exc
    except Unauthorized as exc:
        raise GoTrueError(403, "bad_jwt", f"invalid JWT: {exc.message}") from exc
    if claims.is_service:
        raise GoTrueError(403, "bad_jwt", "invalid JWT: a service token names no user")
    return claims


async def _user(request: Request, services: Services) -> Response:
    """The signed-in user."""
    user = await services.store.get_user((await _bearer_user(request, services)).sub)
    if user is None:
        raise GoTrueError(403, "user_not_found", "User from sub claim in JWT does not exist")
    return json_answer(gotrue_user(user), headers={"Cache-Control": "no-store"})


async def _logout(request: Request, services: Services) -> Response:
    """Sign out: every session of the user ends (GoTrue's ``global`` scope, whatever the
    ``scope``: sessions are not told apart here)."""
    scope = request.query_params.get("scope", "global")
    if scope not in ("global", "local", "others"):
        raise GoTrueError(400, "validation_failed", f"Unsupported logout scope {scope[:40]!r}")
    await auth_routes.logout(await _bearer_user(request, services), services)
    return Response(status_code=204)


async def _unknown(request: Request, services: Services) -> Response:
    """Any other GoTrue route: not supported here."""
    raise GoTrueError(
        404, "not_found", f"{request.url.path} is not supported by livesettings' /auth/v1"
    )


router.add_api_route("/signup", _gotrue(_signup), methods=["POST"])
router.add_api_route("/token", _gotrue(_token), methods=["POST"])
router.add_api_route("/user", _gotrue(_user), methods=["GET"])
router.add_api_route("/logout", _gotrue(_logout), methods=["POST"])
router.add_api_route(
    "/{rest:path}", _gotrue(_unknown), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
)
