"""The request and response bodies of the account routes (``DELETE /v1/account``,
``GET /v1/account/export`` and their service twins), for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import ChangeModel, SettingsDocument

__all__ = ["AccountDeletion", "AccountExport", "ExportedAccountUser", "ExportedMembership"]


class AccountDeletion(BaseModel):
    """``{"password": …}`` of a built-in user; without it (or for a user of an identity
    provider, who has none) the access token must come from a sign-in at most
    ``LIVESETTINGS_FRESH_TOKEN_MAX_AGE`` seconds ago."""

    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class ExportedAccountUser(BaseModel):
    user_id: str
    username: str | None = Field(
        default=None, description="A built-in user's; null for a user of an identity provider."
    )
    created_at: str | None = Field(
        default=None,
        description="When the account (a built-in user) or, else, its document was created.",
    )


class ExportedMembership(BaseModel):
    team_id: str
    name: str
    role: Literal["owner", "admin", "member", "viewer"]


class AccountExport(BaseModel):
    """Everything the account holds, as the user may see it: secrets masked as in
    ``GET /v1/settings`` and the change feed."""

    format: Literal["livesettings-account-export"] = "livesettings-account-export"
    version: Literal[1] = 1
    exported_at: str
    user: ExportedAccountUser
    revision: int
    settings: SettingsDocument
    updated_at: str | None = None
    changes: list[ChangeModel] = Field(
        description="Every retained change up to ``revision``, oldest first."
    )
    history_complete: bool = Field(
        description="False when older changes were pruned (``LIVESETTINGS_CHANGELOG_RETAIN``)."
    )
    teams: list[ExportedMembership]
