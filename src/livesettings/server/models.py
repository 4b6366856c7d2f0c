"""Pydantic models of the HTTP API, so ``/openapi.json`` describes every request and response."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ..document import _GRANDFATHERED, _LANGUAGE_RE  # the rule the document enforces

__all__ = [
    "EXTRA_SCHEMAS",
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
    "SettingsReplacement",
    "SettingsResponse",
    "SignupRequest",
    "TokenResponse",
    "link_schemas",
]


# What the document accepts, said in JSON Schema so that clients and fuzzers know it too
# (the server's own checks stay the authority, and keep their specific error codes).
_NO_NUL = "^[^\\u0000]*$"
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
# Pydantic resolves every "$ref" it meets, so models point at JsonValue with this marker;
# link_schemas() turns it into the "$ref" once the OpenAPI document is built.
_JSON_VALUE_REF: dict[str, Any] = {"x-livesettings-ref": "JsonValue"}
# Key rules as patternProperties (generators honour them better than propertyNames).
_KEY_PATTERN = "^[^\\u0000]{1,256}$"
_JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "patternProperties": {_KEY_PATTERN: _JSON_VALUE_REF},
    "additionalProperties": False,
}
EXTRA_SCHEMAS: dict[str, Any] = {
    "JsonValue": {
        "description": "Any JSON value whose object keys are 1 to 256 characters and whose "
        "strings hold no U+0000 (nested at most 32 levels from the document's root).",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", "pattern": _NO_NUL},
            {"type": "array", "items": _JSON_VALUE_REF},
            _JSON_OBJECT,
        ],
    }
}


def link_schemas(node: Any) -> Any:
    """``node`` (an OpenAPI document) with the JsonValue markers made ``$ref``s."""
    if isinstance(node, dict):
        if node.keys() == {"x-livesettings-ref"}:
            return {"$ref": f"#/components/schemas/{node['x-livesettings-ref']}"}
        return {key: link_schemas(value) for key, value in node.items()}
    if isinstance(node, list):
        return [link_schemas(item) for item in node]
    return node


_LANGUAGE_PATTERN = "^(?:" + "|".join([_LANGUAGE_RE.pattern, *sorted(_GRANDFATHERED)]) + ")$"
_LANGUAGE: dict[str, Any] = {"type": "string", "maxLength": 35, "pattern": _LANGUAGE_PATTERN}
_SECRET: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 4096,
    "pattern": _NO_CONTROL,
    "writeOnly": True,
}
_KEPT_SECRET: dict[str, Any] = {
    "type": "object",
    "description": "A secret as read ({set: true, …}): keep the stored one.",
    "required": ["set"],
    "properties": {
        "set": {"const": True},
        "last4": {"type": ["string", "null"]},
        "updated_at": {"type": "string"},
    },
    "additionalProperties": False,
}


def _nullable(schema: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [schema, {"type": "null"}]})


def _no_bool_or_text(value: Any) -> Any:
    # Pydantic would take true as 1 and "7" as 7; a JSON integer it must be (7.0 is one).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Strict):
    username: str = Field(min_length=1, max_length=256, examples=["ada"])
    password: str = Field(min_length=1, max_length=1024, examples=["correct horse battery"])


class SignupRequest(Credentials):
    """A new user's credentials (the rules are checked by the server, with their own codes)."""

    username: str = Field(
        min_length=1,
        max_length=256,
        examples=["ada"],
        json_schema_extra={"pattern": "^[-A-Za-z0-9_.@]{3,64}$", "maxLength": 64},
    )
    password: str = Field(
        min_length=1,
        max_length=1024,
        examples=["correct horse battery"],
        json_schema_extra={"minLength": 8},
    )


class RefreshRequest(_Strict):
    """The refresh token, or ``{}`` from the settings page: its cookie carries it."""

    refresh_token: str | None = Field(default=None, min_length=1, max_length=512)


class PasswordChange(_Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024, json_schema_extra={"minLength": 8})


class RevertRequest(_Strict):
    revision: Annotated[int, BeforeValidator(_no_bool_or_text)] = Field(ge=0, le=2**63 - 1)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    expires_at: int
    user_id: str
    refresh_token: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": "string",
                "description": "Left out in cookie mode (X-Refresh-Cookie: 1): the refresh "
                "token is then an HttpOnly cookie scoped to /v1/auth.",
            }
        ),
    ] = None


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


class _Writable(BaseModel):
    """The fields a write names (every one optional; ``null`` resets); ``api_keys`` differs."""

    model_config = ConfigDict(extra="forbid")
    theme: Literal["light", "dark", "system"] | None = None
    language: Annotated[str | None, _nullable(_LANGUAGE)] = None
    preferences: Annotated[dict[str, Any] | None, _nullable(_JSON_OBJECT)] = None
    ai_providers: Annotated[dict[str, Any] | None, _nullable(_JSON_OBJECT)] = None


class SettingsPatch(_Writable):
    """An RFC 7386 JSON Merge Patch; ``null`` deletes (on a top-level field: resets it)."""

    api_keys: Annotated[
        dict[str, str | None] | None,
        _nullable(
            {
                "type": "object",
                "patternProperties": {_KEY_PATTERN: {"anyOf": [_SECRET, {"type": "null"}]}},
                "additionalProperties": False,
            }
        ),
    ] = None


class SettingsReplacement(_Writable):
    """A whole document for PUT: absent or ``null`` fields reset, absent secrets are deleted."""

    api_keys: Annotated[
        dict[str, Any] | None,
        _nullable(
            {
                "type": "object",
                "patternProperties": {
                    _KEY_PATTERN: {"anyOf": [_SECRET, _KEPT_SECRET, {"type": "null"}]}
                },
                "additionalProperties": False,
            }
        ),
    ] = None


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
