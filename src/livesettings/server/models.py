"""Pydantic models of the HTTP API, so ``/openapi.json`` describes every request and response."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChangeModel",
    "ChangesResponse",
    "ConflictModel",
    "Credentials",
    "ErrorBody",
    "ErrorResponse",
    "MaskedSecret",
    "MutationResponse",
    "PasswordChange",
    "RefreshRequest",
    "RevertRequest",
    "SecretResponse",
    "SettingsDocument",
    "SettingsPatch",
    "SettingsResponse",
    "TokenResponse",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Strict):
    username: str = Field(min_length=1, max_length=256, examples=["ada"])
    password: str = Field(min_length=1, max_length=1024, examples=["correct horse battery"])


class RefreshRequest(_Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordChange(_Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class RevertRequest(_Strict):
    revision: int = Field(ge=0, le=2**63 - 1)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    expires_at: int
    user_id: str
    refresh_token: str


class MaskedSecret(BaseModel):
    set: bool
    last4: str | None = None
    updated_at: str


class SettingsDocument(BaseModel):
    """The settings as a user sees them: ``api_keys`` masked."""

    model_config = ConfigDict(extra="forbid")
    theme: Literal["light", "dark", "system"] = "light"
    language: str = "en"
    preferences: dict[str, Any] = Field(default_factory=dict)
    ai_providers: dict[str, Any] = Field(default_factory=dict)
    api_keys: dict[str, MaskedSecret] = Field(default_factory=dict)


class SettingsPatch(BaseModel):
    """An RFC 7386 JSON Merge Patch; ``null`` deletes (on a top-level field: resets it)."""

    model_config = ConfigDict(extra="forbid")
    theme: Literal["light", "dark", "system"] | None = None
    language: str | None = Field(default=None, max_length=35)
    preferences: dict[str, Any] | None = None
    ai_providers: dict[str, Any] | None = None
    api_keys: dict[str, str | None] | None = None


class ConflictModel(BaseModel):
    path: str
    yours: Any = None
    theirs: Any = None
    kept: Literal["theirs", "yours", "partial"]
    lost_by: str | None = None


class SettingsResponse(BaseModel):
    revision: int
    settings: SettingsDocument
    updated_at: str | None = None


class MutationResponse(BaseModel):
    revision: int
    settings: SettingsDocument
    conflicts: list[ConflictModel] = Field(default_factory=list)


class ChangeModel(BaseModel):
    revision: int
    patch: dict[str, Any]
    mutation_id: str | None = None
    client_id: str | None = None
    committed_at: int
    conflicts: list[ConflictModel] = Field(default_factory=list)


class ChangesResponse(BaseModel):
    changes: list[ChangeModel]
    revision: int
    reset: bool


class SecretResponse(BaseModel):
    user_id: str
    name: str
    value: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
