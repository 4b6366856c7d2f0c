"""The request and response bodies of the team routes (DESIGN §11), for validation and the
OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import SettingsDocument

__all__ = [
    "EffectiveResponse",
    "MemberModel",
    "MemberRequest",
    "MembersResponse",
    "TeamCreate",
    "TeamModel",
    "TeamSecretResponse",
    "TeamsResponse",
]

RoleName = Literal["owner", "admin", "member", "viewer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeamCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)


class MemberRequest(_Strict):
    """``{role}``, or ``{username, role}`` for a built-in user."""

    role: RoleName
    username: str | None = Field(default=None, min_length=1, max_length=128)


class TeamModel(BaseModel):
    team_id: str
    name: str
    role: RoleName
    created_at: str | None = None


class TeamsResponse(BaseModel):
    teams: list[TeamModel]


class MemberModel(BaseModel):
    user_id: str
    role: RoleName
    username: str | None = None
    added_at: str | None = None


class MembersResponse(BaseModel):
    members: list[MemberModel]


class EffectiveResponse(BaseModel):
    """What the user sees inside the team: user over team over default (secrets masked)."""

    settings: SettingsDocument
    team_id: str
    team_revision: int
    revision: int


class TeamSecretResponse(BaseModel):
    team_id: str
    name: str
    value: str
