"""The caller's own settings over HTTP (DESIGN §4): read, PATCH, PUT, changes, revert, events
and the preferences schema. Writes go through ``mutations.py``; here they are only parsed
and answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.types import DecoratedCallable
from starlette.datastructures import Headers

from .. import strict_json
from ..auth import Claims
from ..errors import Forbidden, PreconditionRequired, RateLimited
from ..store.base import ChangesPage, CommitOutcome
from .dependencies import ERRORS, ClaimsDep, ServicesDep, client_address, read_json
from .headers import client_id_header, int_header, mutation_id_header, parse_if_match
from .models import (
    ChangesResponse,
    MutationResponse,
    RevertRequest,
    SettingsPatch,
    SettingsReplacement,
    SettingsResponse,
)
from .mutations import (
    Edit,
    check_write_rate,
    commit,
    patch_mutation,
    put_mutation,
    revert_mutation,
)
from .services import Services
from .sse import event_stream

__all__ = [
    "PATCH_BODY",
    "PUT_BODY",
    "IdentityHeadersDep",
    "JsonAnswer",
    "PatchHeadersDep",
    "WriteHeaders",
    "changes_body",
    "mutation_response",
    "patch_headers",
    "router",
    "settings_response",
    "stream_limits",
    "write_patch",
    "write_route",
]

PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SettingsPatch.model_json_schema()}},
    }
}
PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SettingsReplacement.model_json_schema()}},
    }
}

router = APIRouter()


def write_route(
    on: APIRouter, method: str, path: str, tag: str, body: dict[str, Any] | None = None
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The decorator of a route that answers a write with a :class:`MutationResponse`."""
    return on.api_route(
        path,
        methods=[method],
        response_model=MutationResponse,
        responses=ERRORS,
        openapi_extra=body,
        tags=[tag],
    )


@dataclass(frozen=True, slots=True)
class WriteHeaders:
    """The headers of a write, as sent (parsed by :meth:`edit`); a PUT or a revert has only
    ``Idempotency-Key`` and ``X-Client-Id``."""

    idempotency_key: str | None
    client_id: str | None
    base_revision: str | None
    edited_at: str | None
    if_match: str | None

    def edit(self, client_id: str | None = None) -> Edit:
        """The write's identity and base; ``client_id`` stands in for a missing header."""
        return Edit(
            mutation_id_header(self.idempotency_key),
            client_id_header(self.client_id or client_id),
            base_revision=int_header(self.base_revision, "X-Base-Revision"),
            edited_at=int_header(self.edited_at, "X-Edited-At"),
            expected_revision=parse_if_match(self.if_match) if self.if_match else None,
        )


async def _patch_headers(
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
    x_base_revision: Annotated[str | None, Header()] = None,
    x_edited_at: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> WriteHeaders:
    return WriteHeaders(idempotency_key, x_client_id, x_base_revision, x_edited_at, if_match)


PatchHeadersDep = Annotated[WriteHeaders, Depends(_patch_headers)]


def patch_headers(headers: Headers) -> WriteHeaders:
    """The headers of a PATCH, read as :data:`PatchHeadersDep` reads them (the lean route)."""
    get = headers.get
    return WriteHeaders(
        get("idempotency-key"),
        get("x-client-id"),
        get("x-base-revision"),
        get("x-edited-at"),
        get("if-match"),
    )


async def _identity_headers(
    idempotency_key: Annotated[str | None, Header()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> WriteHeaders:
    return WriteHeaders(idempotency_key, x_client_id, None, None, None)


IdentityHeadersDep = Annotated[WriteHeaders, Depends(_identity_headers)]
"""The headers of a PUT or a revert: ``Idempotency-Key`` and ``X-Client-Id`` only."""


class JsonAnswer(JSONResponse):
    """A ``JSONResponse`` encoded by :func:`~livesettings.strict_json.dumps` (orjson)."""

    def render(self, content: Any) -> bytes:
        return strict_json.dumps(content)


async def settings_response(services: Services, user_id: str) -> JSONResponse:
    """A user's settings as read: masked, with the revision as ``ETag``."""
    doc = await services.store.get_document(user_id)
    body = {
        "revision": doc.revision,
        "settings": services.view(doc.settings),
        "updated_at": doc.updated_at,
    }
    return JsonAnswer(body, headers={"ETag": f'"{doc.revision}"'})


async def mutation_response(services: Services, outcome: CommitOutcome) -> JSONResponse:
    """The answer to a committed write: revision, settings as they now are, conflicts."""
    settings = outcome.settings
    if settings is None or outcome.repeated:
        settings = (await services.store.get_document(outcome.user_id)).settings
    body = {
        "revision": outcome.revision,
        "settings": services.view(settings),
        "conflicts": list(outcome.conflict_payloads),
    }
    return JsonAnswer(body, headers={"ETag": f'"{outcome.revision}"'})


async def write_patch(
    request: Request,
    services: Services,
    user_id: str,
    headers: WriteHeaders,
    client_id: str | None = None,
) -> JSONResponse:
    """A PATCH of ``user_id``'s settings, from the rate check to the answer."""
    check_write_rate(services, user_id)
    edit = headers.edit(client_id)
    body = await read_json(request, services.config.max_patch_bytes)
    pending = patch_mutation(services, user_id, body, edit)
    return await mutation_response(services, await commit(services, pending))


@router.get("/v1/settings", response_model=SettingsResponse, responses=ERRORS, tags=["settings"])
async def get_settings(claims: ClaimsDep, services: ServicesDep) -> Any:
    """The caller's settings, secrets masked."""
    return await settings_response(services, claims.sub)


@write_route(router, "PATCH", "/v1/settings", "settings", PATCH_BODY)
async def patch_settings(
    request: Request, claims: ClaimsDep, services: ServicesDep, headers: PatchHeadersDep
) -> Any:
    """Merge a JSON Merge Patch into the caller's settings (DESIGN §3)."""
    return await write_patch(request, services, claims.sub, headers)


@write_route(router, "PUT", "/v1/settings", "settings", PUT_BODY)
async def put_settings(
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    headers: IdentityHeadersDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Any:
    """Replace the whole document; needs ``If-Match``. Masked secrets keep the stored ones."""
    if not if_match:
        raise PreconditionRequired('PUT needs If-Match: "<revision>" (use PATCH to merge)')
    expected = parse_if_match(if_match)
    body = await read_json(request, services.config.max_patch_bytes)
    edit = replace(headers.edit(), expected_revision=expected)
    pending = put_mutation(services, claims.sub, body, edit)
    return await mutation_response(services, await commit(services, pending))


@router.get(
    "/v1/settings/changes", response_model=ChangesResponse, responses=ERRORS, tags=["settings"]
)
async def list_changes(
    claims: ClaimsDep,
    services: ServicesDep,
    since: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Changes after ``since`` in revision order; ``reset`` when the log no longer has them."""
    return changes_body(await services.store.changes_since(claims.sub, since, limit))


def changes_body(page: ChangesPage) -> dict[str, Any]:
    """The body of a ``…/changes`` answer."""
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


@write_route(router, "POST", "/v1/settings/revert", "settings")
async def revert(
    body: RevertRequest, claims: ClaimsDep, services: ServicesDep, headers: IdentityHeadersDep
) -> Any:
    """Restore the non-secret fields as they were at ``revision``, as a new revision."""
    pending = revert_mutation(services, claims.sub, body.revision, headers.edit())
    return await mutation_response(services, await commit(services, pending))


@router.get(
    "/v1/settings/events",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
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
    resume = int_header(last_event_id, "Last-Event-ID") if last_event_id else since
    stream_limits(request, services, claims)
    return await event_stream(request, services, claims, target, resume)


def stream_limits(request: Request, services: Services, claims: Claims) -> None:
    """A stream holds a connection open like a socket: the same limits apply (429)."""
    address = services.address_key(client_address(request, services))
    wait = services.connect_limiter.take(address)
    if wait > 0:
        raise RateLimited("too many connection attempts", retry_after=wait)
    limit = services.config.max_connections_per_user
    if not claims.is_service and services.connections.count(claims.sub) >= limit:
        raise RateLimited(f"more than {limit} connections for this user", retry_after=1.0)


@router.get("/v1/schema", tags=["settings"])
async def preferences_schema(services: ServicesDep) -> Any:
    """The operator's JSON Schema for ``preferences`` (``null`` when none is configured)."""
    return {"schema": services.schema.schema if services.schema else None}
