"""How rows are spelled in a database, shared by every backend.

A document is stored in the seed's ``user_preferences`` columns (``theme`` and ``language`` as
text, the three object fields as compact JSON) plus ``revision`` and ``leaf_meta``, the leaf
records as ``{json-pointer: [rev, at, by, deleted]}``. Change rows, remembered mutations and
wrapped data keys have their own column sets; :func:`exported_to_json` is the line format of
``livesettings export``/``import`` (:func:`team_to_json` that of a team's line). Values read
back are checked, so a corrupt row surfaces as ``StorageError`` and never as a ``KeyError``
deep inside the merge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

from ..crypto import WrappedKey
from ..document import FIELDS, default_document, default_for, is_sealed
from ..errors import BadRequest, StorageError
from ..merge import Record
from ..paths import Path, from_pointer, to_pointer
from ..teams import ROLES
from .base import (
    AppliedMutation,
    ChangeRow,
    ExportedTeam,
    ExportedUser,
    StoredDocument,
    UserRow,
)
from .teams import MemberRow

__all__ = [
    "CHANGE_COLUMNS",
    "DOCUMENT_COLUMNS",
    "JSON_FIELDS",
    "RowLike",
    "applied_from_row",
    "change_from_row",
    "change_to_columns",
    "document_from_row",
    "document_to_columns",
    "dumps",
    "exported_from_json",
    "exported_to_json",
    "loads",
    "records_from_json",
    "records_to_json",
    "team_from_json",
    "team_to_json",
    "user_from_row",
    "wrapped_key_from_row",
    "wrapped_key_to_columns",
]

JSON_FIELDS: tuple[str, ...] = ("preferences", "ai_providers", "api_keys")
"""The document fields stored as JSON text; ``theme`` and ``language`` are plain text."""

DOCUMENT_COLUMNS: tuple[str, ...] = (
    *FIELDS,
    "revision",
    "leaf_meta",
    "created_at",
    "updated_at",
)
"""The ``user_preferences`` columns :func:`document_to_columns` fills (besides ``user_id``)."""


class RowLike(Protocol):
    """A database row read by column name (``sqlite3.Row``, ``asyncpg.Record``, a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


def dumps(value: Any) -> str:
    """Compact JSON text, the form every JSON column holds."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(raw: Any, what: str) -> Any:
    """Decode a JSON column; ``None`` stays ``None`` and already decoded values pass through."""
    if raw is None or isinstance(raw, dict | list):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"the stored {what} is not valid JSON") from exc


# --- documents ----------------------------------------------------------------------------


def records_to_json(records: Mapping[Path, Record]) -> dict[str, list[Any]]:
    """Leaf records as ``{json-pointer: [rev, at, by, deleted]}``."""
    return {to_pointer(path): record.to_json() for path, record in records.items()}


def records_from_json(raw: Any) -> dict[Path, Record]:
    """The inverse of :func:`records_to_json`; ``None`` (a row never merged) is no records."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StorageError("the stored leaf records are not an object")
    try:
        return {from_pointer(pointer): Record.from_json(value) for pointer, value in raw.items()}
    except (TypeError, ValueError, IndexError) as exc:
        raise StorageError("the stored leaf records are malformed") from exc


def document_to_columns(doc: StoredDocument) -> dict[str, Any]:
    """The column values of a document, keyed by :data:`DOCUMENT_COLUMNS`.

    Refuses (``StorageError``) an ``api_keys`` value that is not a sealed envelope: this is
    the last point before the disk, and a plaintext secret must never get past it.
    """
    keys = doc.settings.get("api_keys") or {}
    if not all(is_sealed(value) for value in keys.values()):
        raise StorageError("refusing to store a secret that is not sealed")
    columns: dict[str, Any] = {
        name: dumps(doc.settings.get(name, default_for(name))) for name in JSON_FIELDS
    }
    columns["theme"] = doc.settings.get("theme", default_for("theme"))
    columns["language"] = doc.settings.get("language", default_for("language"))
    columns["revision"] = doc.revision
    columns["leaf_meta"] = dumps(records_to_json(doc.records))
    columns["created_at"] = doc.created_at
    columns["updated_at"] = doc.updated_at
    return columns


def document_from_row(user_id: str, row: RowLike | None) -> StoredDocument:
    """A stored document from its row; no row is the default document at revision 0.

    ``NULL`` columns (a seed row, before ``setup`` adopted it) read as the field's default.
    """
    if row is None:
        return StoredDocument(user_id, 0, default_document(), {})
    settings: dict[str, Any] = {}
    for name in FIELDS:
        value = loads(row[name], name) if name in JSON_FIELDS else row[name]
        settings[name] = default_for(name) if value is None else value
    return StoredDocument(
        user_id,
        int(row["revision"] or 0),
        settings,
        records_from_json(loads(row["leaf_meta"], "leaf records")),
        updated_at=_text_or_none(row["updated_at"]),
        created_at=_text_or_none(row["created_at"]),
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# --- the change log and remembered mutations ------------------------------------------------


CHANGE_COLUMNS: Final = (  # settings_changes, in order
    "user_id",
    "revision",
    "patch",
    "mutation_id",
    "client_id",
    "committed_at",
    "conflicts",
    "inverse",
)


def change_to_columns(change: ChangeRow) -> dict[str, Any]:
    """The ``settings_changes`` columns of one change row."""
    return {
        "user_id": change.user_id,
        "revision": change.revision,
        "patch": dumps(change.patch),
        "mutation_id": change.mutation_id,
        "client_id": change.client_id,
        "committed_at": change.committed_at,
        "conflicts": dumps(list(change.conflicts)),
        "inverse": dumps(change.inverse),
    }


def change_from_row(row: RowLike) -> ChangeRow:
    return ChangeRow(
        row["user_id"],
        int(row["revision"]),
        loads(row["patch"], "change patch") or {},
        row["mutation_id"],
        row["client_id"],
        int(row["committed_at"]),
        tuple(loads(row["conflicts"], "change conflicts") or ()),
        loads(row["inverse"], "inverse patch") or {},
    )


def applied_from_row(row: RowLike) -> AppliedMutation:
    return AppliedMutation(
        row["mutation_id"],
        row["body_hash"],
        int(row["revision"]),
        tuple(loads(row["conflicts"], "remembered conflicts") or ()),
    )


# --- users and data keys --------------------------------------------------------------------


def user_from_row(row: RowLike) -> UserRow:
    return UserRow(row["user_id"], row["username"], row["password_hash"], row["created_at"])


def wrapped_key_to_columns(key: WrappedKey) -> dict[str, Any]:
    """The ``data_keys`` columns of a wrapped key (besides ``user_id`` and ``created_at``)."""
    return {"key_id": key.id, "master_key_id": key.master_key_id, "blob": key.blob}


def wrapped_key_from_row(row: RowLike) -> WrappedKey:
    return WrappedKey(row["key_id"], row["master_key_id"], row["blob"])


# --- export lines ---------------------------------------------------------------------------


def exported_to_json(user: ExportedUser) -> dict[str, Any]:
    """One line of ``livesettings export`` (secrets stay sealed, the data key stays wrapped)."""
    doc = user.document
    key = user.wrapped_key
    return {
        "user_id": user.user_id,
        "username": user.username,
        "password_hash": user.password_hash,
        "document": {
            "revision": doc.revision,
            "settings": doc.settings,
            "records": records_to_json(doc.records),
            "created_at": doc.created_at,
            "updated_at": doc.updated_at,
        },
        "wrapped_key": None if key is None else wrapped_key_to_columns(key),
    }


def exported_from_json(line: Mapping[str, Any]) -> ExportedUser:
    """Read a line written by :func:`exported_to_json`; ``BadRequest`` when it is malformed."""
    try:
        user_id = line["user_id"]
        raw_doc = line["document"]
        if not isinstance(user_id, str) or not isinstance(raw_doc, dict):
            raise TypeError("user_id or document")
        settings = raw_doc["settings"]
        if not isinstance(settings, dict):
            raise TypeError("settings")
        records = records_from_json(raw_doc.get("records"))
        doc = StoredDocument(
            user_id,
            int(raw_doc["revision"]),
            settings,
            records,
            updated_at=_text_or_none(raw_doc.get("updated_at")),
            created_at=_text_or_none(raw_doc.get("created_at")),
        )
        raw_key = line.get("wrapped_key")
        wrapped = None if raw_key is None else wrapped_key_from_row(raw_key)
        username = line.get("username")
        password_hash = line.get("password_hash")
    except (KeyError, TypeError, ValueError, StorageError) as exc:
        raise BadRequest(f"an export line is malformed: {exc}", code="malformed_export") from exc
    return ExportedUser(user_id, username, password_hash, doc, wrapped)


TEAM_KIND: Final = "team"
"""The ``kind`` of a team's line. A line without ``kind`` is a user's (exports made before
teams have only those); a line of any other kind is refused as malformed."""


def team_to_json(team: ExportedTeam) -> dict[str, Any]:
    """A team's line of ``livesettings export``: its row and its members with their roles."""
    return {
        "kind": TEAM_KIND,
        "team_id": team.team_id,
        "name": team.name,
        "created_by": team.created_by,
        "created_at": team.created_at,
        "members": [
            {"user_id": m.user_id, "role": m.role, "added_at": m.added_at} for m in team.members
        ],
    }


def team_from_json(line: Mapping[str, Any]) -> ExportedTeam:
    """Read a line written by :func:`team_to_json`; ``BadRequest`` when it is malformed (a
    bad role, a member listed twice, or no owner)."""
    try:
        team_id, name, created_by, created_at = (
            _text(line, "team_id"),
            _text(line, "name"),
            _text(line, "created_by"),
            _text(line, "created_at"),
        )
        raw_members = line["members"]
        if not isinstance(raw_members, list):
            raise TypeError("members is not a list")
        members = tuple(
            MemberRow(_text(m, "user_id"), _text(m, "role"), _text(m, "added_at"))
            for m in raw_members
        )
        if any(member.role not in ROLES for member in members):
            raise ValueError(f"a role is not one of {', '.join(ROLES)}")
        if len({member.user_id for member in members}) != len(members):
            raise ValueError("a member is listed twice")
        if not any(member.role == "owner" for member in members):
            raise ValueError("the team has no owner")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"a team line is malformed: {exc}", code="malformed_export") from exc
    return ExportedTeam(team_id, name, created_by, created_at, members)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, Mapping):
        raise TypeError("a member is not an object")
    text = value[name]
    if not isinstance(text, str) or not text:
        raise TypeError(f"{name} is not a non-empty string")
    return text
