"""Team routes (DESIGN §11): teams, members, a team's settings, and effective settings.

A caller who is not a member gets 404 ``not_found`` on every team route, whether or not the
team exists. A team's document is read and written like the caller's own (``settings_routes``
answers, ``mutations`` builds every write) under its key ``team:<team_id>``, with the
member's role checked before a write is queued. Membership changes are audited and published
on the bus, so every node updates its sockets.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..audit import audit
from ..auth import Claims
from ..crypto import WrappedKey, open_secret, unwrap_data_key
from ..effective import effective, fields_set
from ..errors import Forbidden, NotFound, PreconditionRequired, ValidationError
from ..store.teams import TeamRow
from ..teams import is_team_key, new_team_id, parse_team_id, team_key, team_not_found
from .dependencies import ERRORS, ClaimsDep, ServicesDep, client_address, read_json
from .headers import int_header, parse_if_match
from .models import ChangesResponse, MutationResponse, RevertRequest, SettingsResponse
from .mutations import (
    Member,
    check_write_rate,
    commit,
    patch_mutation,
    put_mutation,
    revert_mutation,
)
from .services import Services
from .settings_routes import (
    PATCH_BODY,
    PUT_BODY,
    IdentityHeadersDep,
    PatchHeadersDep,
    changes_body,
    mutation_response,
    stream_limits,
)
from .sse import event_stream
from .team_models import (
    EffectiveResponse,
    MemberRequest,
    MembersResponse,
    TeamCreate,
    TeamModel,
    TeamSecretResponse,
    TeamsResponse,
)

__all__ = ["router"]

router = APIRouter()

_TAG = "teams"


async def _membership(services: Services, team_id: str, claims: Claims) -> TeamRow:
    """The caller's membership of the team; 404 when there is none (or no such team)."""
    team_id = parse_team_id(team_id)
    team = await services.store.teams.membership(team_id, claims.sub)
    if team is None or team.role is None:
        raise team_not_found()
    return team


def _member(team: TeamRow, claims: Claims) -> Member:
    assert team.role is not None
    return Member(claims.sub, team.role)


def _team_body(team: TeamRow) -> dict[str, Any]:
    return {
        "team_id": team.team_id,
        "name": team.name,
        "role": team.role,
        "created_at": team.created_at,
    }


# -- teams --------------------------------------------------------------------------------


@router.post("/v1/teams", status_code=201, response_model=TeamModel, responses=ERRORS, tags=[_TAG])
async def create_team(body: TeamCreate, claims: ClaimsDep, services: ServicesDep) -> Any:
    """Create a team; the caller is its owner."""
    config = services.config
    team = await services.store.teams.create_team(
        new_team_id(), body.name, claims.sub, max_teams=config.max_teams_per_user
    )
    audit("team_created", team_id=team.team_id, user_id=claims.sub)
    await services.memberships.publish(services.bus, team.team_id, [claims.sub])
    return JSONResponse(_team_body(team), status_code=201)


@router.get("/v1/teams", response_model=TeamsResponse, responses=ERRORS, tags=[_TAG])
async def list_teams(claims: ClaimsDep, services: ServicesDep) -> Any:
    """The caller's teams, with the caller's role in each."""
    return {"teams": [_team_body(t) for t in await services.store.teams.teams_of(claims.sub)]}


@router.delete("/v1/teams/{team_id}", status_code=204, responses=ERRORS, tags=[_TAG])
async def delete_team(team_id: str, claims: ClaimsDep, services: ServicesDep) -> Response:
    """Delete the team, its document and its data key (owners only)."""
    team = await _membership(services, team_id, claims)
    members = await services.store.teams.delete_team(team.team_id, claims.sub)
    audit("team_deleted", team_id=team.team_id, user_id=claims.sub, members=len(members))
    await services.memberships.publish(services.bus, team.team_id, members)
    return Response(status_code=204)


# -- members ------------------------------------------------------------------------------


@router.get(
    "/v1/teams/{team_id}/members", response_model=MembersResponse, responses=ERRORS, tags=[_TAG]
)
async def list_members(team_id: str, claims: ClaimsDep, services: ServicesDep) -> Any:
    """The team's members and their roles (any member may look)."""
    team = await _membership(services, team_id, claims)
    members = await services.store.teams.members(team.team_id, claims.sub)
    return {
        "members": [
            {"user_id": m.user_id, "role": m.role, "username": m.username, "added_at": m.added_at}
            for m in members
        ]
    }


async def _target_user(services: Services, path_user: str, body: MemberRequest) -> str:
    """The user a members PUT names: the path's id, or the built-in user ``username``."""
    if body.username is None:
        if not path_user or len(path_user) > 128 or is_team_key(path_user):
            raise ValidationError("a user id is 1 to 128 characters", path="/user_id")
        return path_user
    user = await services.store.get_user_by_username(body.username)
    if user is None:
        raise NotFound(f"no user is named {body.username!r}")
    if path_user not in (user.user_id, body.username):
        raise ValidationError(
            "the path names another user than the body's username", path="/username"
        )
    return user.user_id


@router.put(
    "/v1/teams/{team_id}/members/{user_id}",
    response_model=MembersResponse,
    responses=ERRORS,
    tags=[_TAG],
)
async def put_member(
    team_id: str, user_id: str, body: MemberRequest, claims: ClaimsDep, services: ServicesDep
) -> Any:
    """Add a member or change their role (admins: below owner; owners: anyone)."""
    team = await _membership(services, team_id, claims)
    target = await _target_user(services, user_id, body)
    config = services.config
    change = await services.store.teams.set_member(
        team.team_id,
        claims.sub,
        target,
        body.role,
        max_members=config.max_team_members,
        max_teams=config.max_teams_per_user,
    )
    if change.changed:
        event = "team_member_added" if change.before is None else "team_member_role_changed"
        audit(
            event,
            team_id=team.team_id,
            user_id=target,
            by=claims.sub,
            role=change.after,
            previous=change.before,
        )
        await services.memberships.publish(services.bus, team.team_id, [target])
    return await list_members(team.team_id, claims, services)


@router.delete(
    "/v1/teams/{team_id}/members/{user_id}", status_code=204, responses=ERRORS, tags=[_TAG]
)
async def remove_member(
    team_id: str, user_id: str, claims: ClaimsDep, services: ServicesDep
) -> Response:
    """Remove a member; anyone may remove themselves (leave), but not the last owner."""
    team = await _membership(services, team_id, claims)
    change = await services.store.teams.remove_member(team.team_id, claims.sub, user_id)
    audit(
        "team_member_removed",
        team_id=team.team_id,
        user_id=user_id,
        by=claims.sub,
        previous=change.before,
    )
    await services.memberships.publish(services.bus, team.team_id, [user_id])
    return Response(status_code=204)


# -- the team's document ------------------------------------------------------------------


async def _team_settings(services: Services, key: str, actor: str) -> JSONResponse:
    doc = await services.store.get_document(key, actor=actor)
    body = {
        "revision": doc.revision,
        "settings": services.view(doc.settings),
        "updated_at": doc.updated_at,
    }
    return JSONResponse(body, headers={"ETag": f'"{doc.revision}"'})


@router.get(
    "/v1/teams/{team_id}/settings", response_model=SettingsResponse, responses=ERRORS, tags=[_TAG]
)
async def get_team_settings(team_id: str, claims: ClaimsDep, services: ServicesDep) -> Any:
    """The team's settings, secrets masked for every role."""
    team = await _membership(services, team_id, claims)
    return await _team_settings(services, team_key(team.team_id), claims.sub)


@router.patch(
    "/v1/teams/{team_id}/settings",
    response_model=MutationResponse,
    responses=ERRORS,
    openapi_extra=PATCH_BODY,
    tags=[_TAG],
)
async def patch_team_settings(
    team_id: str,
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    headers: PatchHeadersDep,
) -> Any:
    """Merge a patch into the team's settings (members: not ``api_keys``; viewers: no)."""
    team = await _membership(services, team_id, claims)
    key, member = team_key(team.team_id), _member(team, claims)
    check_write_rate(services, key, member)
    edit = headers.edit()
    body = await read_json(request, services.config.max_patch_bytes)
    pending = patch_mutation(services, key, body, edit, member)
    return await mutation_response(services, await commit(services, pending))


@router.put(
    "/v1/teams/{team_id}/settings",
    response_model=MutationResponse,
    responses=ERRORS,
    openapi_extra=PUT_BODY,
    tags=[_TAG],
)
async def put_team_settings(
    team_id: str,
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    headers: IdentityHeadersDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Any:
    """Replace the team's whole document (admins and owners); needs ``If-Match``."""
    team = await _membership(services, team_id, claims)
    if not if_match:
        raise PreconditionRequired('PUT needs If-Match: "<revision>" (use PATCH to merge)')
    expected = parse_if_match(if_match)
    key, member = team_key(team.team_id), _member(team, claims)
    check_write_rate(services, key, member)
    body = await read_json(request, services.config.max_patch_bytes)
    edit = replace(headers.edit(), expected_revision=expected)
    pending = put_mutation(services, key, body, edit, member)
    return await mutation_response(services, await commit(services, pending))


@router.get(
    "/v1/teams/{team_id}/settings/changes",
    response_model=ChangesResponse,
    responses=ERRORS,
    tags=[_TAG],
)
async def team_changes(
    team_id: str,
    claims: ClaimsDep,
    services: ServicesDep,
    since: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The team's changes after ``since``, like ``GET /v1/settings/changes``."""
    team = await _membership(services, team_id, claims)
    page = await services.store.changes_since(
        team_key(team.team_id), since, limit, actor=claims.sub
    )
    return changes_body(page)


@router.post(
    "/v1/teams/{team_id}/settings/revert",
    response_model=MutationResponse,
    responses=ERRORS,
    tags=[_TAG],
)
async def revert_team(
    team_id: str,
    body: RevertRequest,
    claims: ClaimsDep,
    services: ServicesDep,
    headers: IdentityHeadersDep,
) -> Any:
    """Restore the team's non-secret fields as they were at ``revision`` (not viewers)."""
    team = await _membership(services, team_id, claims)
    key, member = team_key(team.team_id), _member(team, claims)
    pending = revert_mutation(services, key, body.revision, headers.edit(), member)
    return await mutation_response(services, await commit(services, pending))


@router.get(
    "/v1/teams/{team_id}/settings/events",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "The team document's frames, as Server-Sent Events; each frame "
            "carries doc. Ends when the caller is removed from the team.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    tags=[_TAG],
)
async def team_events(
    team_id: str,
    request: Request,
    claims: ClaimsDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> Response:
    """Server-Sent Events of the team's document; ``id:`` is the revision."""
    team = await _membership(services, team_id, claims)
    resume = int_header(last_event_id, "Last-Event-ID") if last_event_id else since
    stream_limits(request, services, claims)
    key = team_key(team.team_id)
    return await event_stream(request, services, claims, key, resume, doc=key)


# -- effective settings and team secrets --------------------------------------------------


@router.get(
    "/v1/settings/effective", response_model=EffectiveResponse, responses=ERRORS, tags=[_TAG]
)
async def effective_settings(
    claims: ClaimsDep,
    services: ServicesDep,
    team: Annotated[str, Query(min_length=1, max_length=64)],
) -> Any:
    """What the caller sees inside ``team``: their own value over the team's over the
    default; ``preferences`` and ``ai_providers`` merged leaf by leaf; keys by name."""
    membership = await _membership(services, team, claims)
    team_doc = await services.store.get_document(team_key(membership.team_id), actor=claims.sub)
    own = await services.store.get_document(claims.sub)
    settings = effective(
        team_doc.settings,
        own.settings,
        team_set=fields_set(team_doc.records),
        personal_set=fields_set(own.records),
    )
    return {
        "settings": services.view(settings),
        "team_id": membership.team_id,
        "team_revision": team_doc.revision,
        "revision": own.revision,
    }


@router.get(
    "/v1/teams/{team_id}/secrets/{name}",
    response_model=TeamSecretResponse,
    responses=ERRORS,
    tags=[_TAG],
)
async def team_secret(
    team_id: str, name: str, request: Request, claims: ClaimsDep, services: ServicesDep
) -> Any:
    """A team's decrypted secret, for an app's backend (service tokens only; audited). A
    user token never gets one: 404 for a non-member, 403 for a member."""
    if not claims.is_service:
        await _membership(services, team_id, claims)
        raise Forbidden("a team's secrets are readable by service tokens only")
    team_id = parse_team_id(team_id)
    key = team_key(team_id)
    envelope, wrapped = await _sealed(services, key, name)
    if isinstance(envelope, dict) and envelope.get("kid") != wrapped.id:
        # `keys rotate --data-keys` renewed the key between the two reads: read both again.
        envelope, wrapped = await _sealed(services, key, name)
    plaintext = open_secret(key, name, envelope, unwrap_data_key(services.keyring, key, wrapped))
    audit(
        "team_secret_read",
        service=claims.sub,
        team_id=team_id,
        name=name,
        address=client_address(request, services),
    )
    return {"team_id": team_id, "name": name, "value": plaintext}


async def _sealed(services: Services, key: str, name: str) -> tuple[Any, WrappedKey]:
    doc = await services.store.get_document(key)
    envelope = doc.settings.get("api_keys", {}).get(name)
    wrapped = await services.store.get_wrapped_key(key)
    if envelope is None or wrapped is None:
        raise NotFound(f"the team has no secret named {name!r}")
    return envelope, wrapped
