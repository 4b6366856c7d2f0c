"""The HTTP API of DESIGN §4: auth, settings, changes, revert, service routes, operations."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from ..audit import audit
from ..auth import (
    Claims,
    TokenIssuer,
    hash_refresh_token,
    new_family_id,
    new_refresh_token,
    validate_password,
    validate_username,
)
from ..crypto import WrappedKey, open_secret, unwrap_data_key
from ..document import validate_document, validate_patch
from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LiveSettingsError,
    NotFound,
    PreconditionRequired,
    RateLimited,
    StorageError,
    TooLarge,
    Unauthorized,
    ValidationError,
)
from ..merge import Mutation, parse_if_match
from ..paths import to_pointer
from ..store.base import CommitOutcome, PendingMutation
from ..store.planning import body_hash
from .cookies import cookie_mode, refresh_cookie, token_response
from .models import (
    ChangesResponse,
    Credentials,
    ErrorResponse,
    MutationResponse,
    PasswordChange,
    RefreshRequest,
    RevertRequest,
    SecretResponse,
    SettingsPatch,
    SettingsReplacement,
    SettingsResponse,
    SignupRequest,
    TokenResponse,
)
from .ratelimit import RateLimiter
from .security import forwarded_address
from .services import Services
from .sse import event_stream
from .writer import rate_cost

__all__ = ["client_address", "router", "services_of", "settings_view"]

log = logging.getLogger("livesettings.http")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 403, 404, 409, 410, 412, 413, 422, 428, 429)
}
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SettingsPatch.model_json_schema()}},
    }
}
_PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SettingsReplacement.model_json_schema()}},
    }
}

router = APIRouter()


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
    if not token:
        raise Unauthorized("send the access token as 'Authorization: Bearer <token>'")
    return await services.authenticate(token, address=client_address(request, services), via="http")


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
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("the request body must be a JSON object", code="malformed_json")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            f"the request body is not valid JSON: {exc}", code="malformed_json"
        ) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_large(size: int, limit: int) -> LiveSettingsError:
    return TooLarge(
        f"the request body is {size} bytes; the limit is {limit}",
        details={"size": size, "limit": limit},
    )


def settings_view(services: Services, settings: dict[str, Any]) -> dict[str, Any]:
    """Stored settings as a user may see them: secrets masked, schema defaults filled."""
    return services.view(settings)


def _int_header(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(text)


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


def _client_id(value: str | None) -> str:
    if value is None or value == "":
        return "http"
    if len(value) > 128 or _has_control(value):
        raise BadRequest("X-Client-Id must be 1 to 128 characters without control characters")
    return value


def _mutation_id(value: str | None) -> str:
    if value is None or value == "":
        return "http-" + uuid.uuid4().hex
    if len(value) > 128 or _has_control(value):
        raise BadRequest("Idempotency-Key must be 1 to 128 characters without control characters")
    return value


def _refuse_if_limited(wait: float) -> None:
    if wait > 0:
        raise RateLimited(
            "too many writes; slow down", retry_after=wait, details={"retry_after": wait}
        )


async def _write(services: Services, pending: PendingMutation) -> CommitOutcome:
    _refuse_if_limited(
        services.write_limiter.take(pending.user_id, rate_cost(pending.mutation.patch))
    )
    outcome = await services.writer.submit(pending)
    if outcome.error is not None:
        raise outcome.error
    services.metrics.mutations.inc(outcome="repeated" if outcome.repeated else "committed")
    for conflict in outcome.conflict_payloads:
        services.metrics.conflicts.inc(kept=str(conflict.get("kept")))
    return outcome


async def _mutation_response(services: Services, outcome: CommitOutcome) -> JSONResponse:
    settings = outcome.settings
    if settings is None or outcome.repeated:
        settings = (await services.store.get_document(outcome.user_id)).settings
    body = {
        "revision": outcome.revision,
        "settings": settings_view(services, settings),
        "conflicts": list(outcome.conflict_payloads),
    }
    return JSONResponse(body, headers={"ETag": f'"{outcome.revision}"'})


async def _patch(
    request: Request,
    services: Services,
    user_id: str,
    *,
    idempotency_key: str | None,
    client_id: str | None,
    base_revision: str | None,
    edited_at: str | None,
    if_match: str | None,
) -> JSONResponse:
    # A user at the limit is refused before its body is read and checked.
    _refuse_if_limited(services.write_limiter.wait_for(user_id))
    body = await read_json(request, services.config.max_patch_bytes)
    patch = validate_patch(body, services.config.limits, services.schema)
    now_ms = int(time.time() * 1000)
    at = _int_header(edited_at, "X-Edited-At")
    mutation = Mutation(
        mutation_id=_mutation_id(idempotency_key),
        client_id=_client_id(client_id),
        base_revision=_int_header(base_revision, "X-Base-Revision"),
        patch=patch,
        edited_at=min(at, now_ms) if at is not None else now_ms,
    )
    pending = PendingMutation(
        user_id,
        mutation,
        body_hash("patch", patch),
        expected_revision=parse_if_match(if_match) if if_match else None,
    )
    return await _mutation_response(services, await _write(services, pending))


# -- auth ---------------------------------------------------------------------------------

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
    token, exp = _builtin(services).issue(user_id)
    refresh = new_refresh_token()
    expires = int(time.time()) + services.config.refresh_token_ttl
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


@router.post("/v1/auth/signup", response_model=TokenResponse, responses=_ERRORS, tags=["auth"])
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


@router.post("/v1/auth/token", response_model=TokenResponse, responses=_ERRORS, tags=["auth"])
async def token(
    credentials: Credentials, request: Request, services: ServicesDep, cookie: CookieModeDep
) -> Any:
    """Sign in with a username and password."""
    _builtin(services)
    address = client_address(request, services)
    group = services.address_key(address)
    name_key = credentials.username.lower()
    _check_failures(services, name_key, group, address=address)
    _take(services.auth_by_address, group, "too many sign-ins from this address", address=address)
    user = await services.store.get_user_by_username(credentials.username)
    if user is None:
        ok = await services.passwords.dummy_verify(credentials.password)
    else:
        ok = await services.passwords.verify(user.password_hash, credentials.password)
    if user is None or not ok:
        _count_failure(services, name_key, group)
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


def _check_failures(
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


def _count_failure(services: Services, name_key: str, group: str) -> None:
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


@router.post("/v1/auth/refresh", response_model=TokenResponse, responses=_ERRORS, tags=["auth"])
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
    now = int(time.time())
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


@router.post("/v1/auth/logout", status_code=204, responses=_ERRORS, tags=["auth"])
async def logout(claims: ClaimsDep, services: ServicesDep) -> Response:
    """Revoke the caller's refresh tokens and end its live sessions."""
    await services.revoke_user(claims.sub)
    audit("logout", user_id=claims.sub)
    return Response(status_code=204)


@router.post("/v1/auth/password", response_model=TokenResponse, responses=_ERRORS, tags=["auth"])
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
    _check_failures(services, name_key, group, address=address, user_id=user.user_id)
    if not await services.passwords.verify(user.password_hash, body.current_password):
        _count_failure(services, name_key, group)
        audit("password_change_failed", user_id=user.user_id, address=address)
        raise Unauthorized("the current password is wrong", code="invalid_credentials")
    password = validate_password(body.new_password)
    password_hash = await services.passwords.hash(password)
    await services.store.set_password(user.user_id, password_hash)
    await services.revoke_user(user.user_id)
    audit("password_changed", user_id=user.user_id)
    return token_response(request, await _issue_pair(services, user.user_id), cookie)


# -- settings -----------------------------------------------------------------------------


@router.get("/v1/settings", response_model=SettingsResponse, responses=_ERRORS, tags=["settings"])
async def get_settings(claims: ClaimsDep, services: ServicesDep) -> Any:
    """The caller's settings, secrets masked."""
    return await _read(services, claims.sub)


async def _read(services: Services, user_id: str) -> JSONResponse:
    doc = await services.store.get_document(user_id)
    body = {
        "revision": doc.revision,
        "settings": settings_view(services, doc.settings),
        "updated_at": doc.updated_at,
    }
    return JSONResponse(body, headers={"ETag": f'"{doc.revision}"'})


@router.patch(
    "/v1/settings",
    response_model=MutationResponse,
    responses=_ERRORS,
    openapi_extra=_PATCH_BODY,
    tags=["settings"],
)
async def patch_settings(
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
    x_base_revision: Annotated[str | None, Header()] = None,
    x_edited_at: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Any:
    """Merge a JSON Merge Patch into the caller's settings (DESIGN §3)."""
    return await _patch(
        request,
        services,
        claims.sub,
        idempotency_key=idempotency_key,
        client_id=x_client_id,
        base_revision=x_base_revision,
        edited_at=x_edited_at,
        if_match=if_match,
    )


@router.put(
    "/v1/settings",
    response_model=MutationResponse,
    responses=_ERRORS,
    openapi_extra=_PUT_BODY,
    tags=["settings"],
)
async def put_settings(
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    if_match: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> Any:
    """Replace the whole document; needs ``If-Match``. Masked secrets keep the stored ones."""
    if not if_match:
        raise PreconditionRequired('PUT needs If-Match: "<revision>" (use PATCH to merge)')
    expected = parse_if_match(if_match)
    body = await read_json(request, services.config.max_patch_bytes)
    if not isinstance(body, dict):
        raise ValidationError("the document must be a JSON object", path="")
    keys = body.get("api_keys")
    plain_keys: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    if isinstance(keys, dict):
        for name, value in keys.items():
            if isinstance(value, dict) and value.get("set") is True:
                _check_kept(name, value)
                kept[name] = value  # a masked secret: keep what is stored
            else:
                plain_keys[name] = value
    checked = validate_document(
        {**body, "api_keys": plain_keys} if isinstance(keys, dict) else body,
        services.config.limits,
        services.schema,
    )
    checked["api_keys"] = {**checked.get("api_keys", {}), **kept}
    now_ms = int(time.time() * 1000)
    mutation = Mutation(
        _mutation_id(idempotency_key), _client_id(x_client_id), None, checked, now_ms
    )
    pending = PendingMutation(
        claims.sub, mutation, body_hash("put", body), kind="put", expected_revision=expected
    )
    return await _mutation_response(services, await _write(services, pending))


def _check_kept(name: str, value: dict[str, Any]) -> None:
    """A secret sent back as read (``{"set": true, "last4", "updated_at"}``), nothing else."""
    if (
        value.keys() <= {"set", "last4", "updated_at"}
        and (value.get("last4") is None or isinstance(value["last4"], str))
        and isinstance(value.get("updated_at", ""), str)
    ):
        return
    pointer = to_pointer(("api_keys", name))
    raise ValidationError(
        f"{pointer}: a kept secret is the object read back ({{set, last4, updated_at}})",
        path=pointer,
        code="invalid_value",
    )


@router.get(
    "/v1/settings/changes", response_model=ChangesResponse, responses=_ERRORS, tags=["settings"]
)
async def list_changes(
    claims: ClaimsDep,
    services: ServicesDep,
    since: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Changes after ``since`` in revision order; ``reset`` when the log no longer has them."""
    page = await services.store.changes_since(claims.sub, since, limit)
    return {
        "changes": [
            {
                "revision": c.revision,
                "patch": c.patch,
                "mutation_id": c.mutation_id,
                "client_id": c.client_id,
                "committed_at": c.committed_at,
                "conflicts": list(c.conflicts),
            }
            for c in page.changes
        ],
        "revision": page.revision,
        "reset": page.reset,
    }


@router.post(
    "/v1/settings/revert", response_model=MutationResponse, responses=_ERRORS, tags=["settings"]
)
async def revert(
    body: RevertRequest,
    claims: ClaimsDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> Any:
    """Restore the non-secret fields as they were at ``revision``, as a new revision."""
    now_ms = int(time.time() * 1000)
    mutation = Mutation(_mutation_id(idempotency_key), _client_id(x_client_id), None, {}, now_ms)
    pending = PendingMutation(
        claims.sub,
        mutation,
        body_hash("revert", body.revision),
        kind="revert",
        revert_to=body.revision,
    )
    return await _mutation_response(services, await _write(services, pending))


@router.get(
    "/v1/settings/events",
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {
            "description": "An endless stream of events, one frame each (DESIGN §5).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    tags=["settings"],
)
async def settings_events(
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """Server-Sent Events: the WebSocket's frames; ``id:`` is the revision."""
    target = claims.sub
    if user_id is not None and user_id != claims.sub:
        if not claims.is_service:
            raise Forbidden("a user token can only follow its own settings")
        target = user_id
    resume = _int_header(last_event_id, "Last-Event-ID") if last_event_id else since
    # A stream holds a connection open like a socket: the same limits apply.
    address = services.address_key(client_address(request, services))
    wait = services.connect_limiter.take(address)
    if wait > 0:
        raise RateLimited("too many connection attempts", retry_after=wait)
    limit = services.config.max_connections_per_user
    if not claims.is_service and services.connections.count(claims.sub) >= limit:
        raise RateLimited(f"more than {limit} connections for this user", retry_after=1.0)
    return await event_stream(request, services, claims, target, resume)


@router.get("/v1/schema", tags=["settings"])
async def preferences_schema(services: ServicesDep) -> Any:
    """The operator's JSON Schema for ``preferences`` (``null`` when none is configured)."""
    return {"schema": services.schema.schema if services.schema else None}


# -- service routes -----------------------------------------------------------------------


@router.get(
    "/v1/users/{user_id}/settings",
    response_model=SettingsResponse,
    responses=_ERRORS,
    tags=["service"],
)
async def service_get(user_id: str, claims: ServiceDep, services: ServicesDep) -> Any:
    """Any user's settings (service tokens only)."""
    _check_user_id(user_id)
    return await _read(services, user_id)


@router.patch(
    "/v1/users/{user_id}/settings",
    response_model=MutationResponse,
    responses=_ERRORS,
    openapi_extra=_PATCH_BODY,
    tags=["service"],
)
async def service_patch(
    user_id: str,
    request: Request,
    claims: ServiceDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
    x_base_revision: Annotated[str | None, Header()] = None,
    x_edited_at: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Any:
    """Merge a patch into any user's settings (service tokens only)."""
    _check_user_id(user_id)
    return await _patch(
        request,
        services,
        user_id,
        idempotency_key=idempotency_key,
        client_id=x_client_id or f"service:{claims.sub}",
        base_revision=x_base_revision,
        edited_at=x_edited_at,
        if_match=if_match,
    )


@router.get(
    "/v1/users/{user_id}/secrets/{name}",
    response_model=SecretResponse,
    responses=_ERRORS,
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


# -- operations ---------------------------------------------------------------------------


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses={503: {"model": ErrorResponse}})
async def readyz(services: ServicesDep) -> Any:
    """Readiness: the database and the bus are reachable."""
    if services.draining:
        raise StorageError("the server is shutting down", code="draining")
    await services.store.ping()
    await services.bus.ping()
    return {"status": "ready"}


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics."""
    return PlainTextResponse(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
