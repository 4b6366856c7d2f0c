"""The response bodies of the ``/v1/admin`` routes, for the OpenAPI document. None of them
carries a secret, a password hash or a key — not even the last characters of one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminAuditResponse",
    "AdminTeamModel",
    "AdminTeamsResponse",
    "AdminUserModel",
    "AdminUsersResponse",
    "AuditLineModel",
]


class AdminUserModel(BaseModel):
    user_id: str
    username: str | None = Field(description="None for a user of an identity provider.")
    created_at: str | None
    admin: bool = Field(description="Whether the built-in user has the admin flag.")
    revision: int = Field(description="The revision of the user's document (0: none yet).")
    updated_at: str | None = Field(description="When the last change was committed.")
    teams: int = Field(description="How many teams the user belongs to.")
    connections: int = Field(description="The user's WebSockets and event streams on this node.")
    last_seen: str | None = Field(
        description="RFC 3339: the later of the last change committed and the last connection "
        "seen on this node; None when neither is known."
    )


class AdminUsersResponse(BaseModel):
    users: list[AdminUserModel]


class AdminTeamModel(BaseModel):
    team_id: str
    name: str
    members: int
    revision: int = Field(description="The revision of the team's document (0: none yet).")
    created_at: str


class AdminTeamsResponse(BaseModel):
    teams: list[AdminTeamModel]


class AuditLineModel(BaseModel):
    """One audit event: its time, its name and its fields (ids, addresses, reasons)."""

    model_config = ConfigDict(extra="allow")

    ts: str
    event: str


class AdminAuditResponse(BaseModel):
    lines: list[AuditLineModel] = Field(
        description="The last 100 audit lines of this node, newest last."
    )
