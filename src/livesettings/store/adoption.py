"""Adopting a seed-style ``user_preferences`` table in place — decided without I/O.

``setup`` brings the rows livesettings never wrote (``leaf_meta`` NULL) into the document
shape, with one rule for every backend:

- a user's rows are merged into the most recently updated one: per field the latest non-null
  value wins, objects are merged key by key (the later row winning), and the other rows are
  deleted; the merged row keeps the earliest ``created_at`` and its own ``updated_at``;
- a value the document does not accept falls back to its field's default, and is reported;
- plaintext API keys are sealed under the user's data key (which needs the master keys);
- a row without a user is nobody's settings: only its ``api_keys`` are cleared.

A backend reads one user's rows newest first (``updated_at``, then ``created_at``, NULLs last,
then the later row), calls :func:`adopt_rows`, seals with :meth:`Adoption.sealed` when
:attr:`Adoption.plaintext` says so, writes :meth:`Adoption.columns` into the first row and
deletes the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..crypto import Keyring
from ..document import FIELDS, default_for, is_sealed, validate_document
from ..errors import ConfigError, LiveSettingsError, StorageError
from .codec import JSON_FIELDS, RowLike, dumps, loads
from .planning import Sealer

__all__ = [
    "ADOPTED_COLUMNS",
    "Adoption",
    "adopt_rows",
    "adopted_line",
    "cleared_line",
    "keyring_for_sealing",
]

ADOPTED_COLUMNS: tuple[str, ...] = ("theme", "language", *JSON_FIELDS, "created_at", "updated_at")
"""The columns :meth:`Adoption.columns` fills, in this order (``leaf_meta`` becomes ``{}``)."""


@dataclass(frozen=True, slots=True)
class Adoption:
    """One user's document made from its seed rows."""

    user_id: str
    settings: dict[str, Any]
    created_at: Any
    updated_at: Any
    lines: tuple[str, ...]

    @property
    def plaintext(self) -> int:
        """How many API keys are still in clear."""
        return sum(isinstance(value, str) for value in self.settings["api_keys"].values())

    def sealed(self, seal: Sealer) -> Adoption:
        """The same document with every plaintext API key sealed by ``seal``."""
        count = self.plaintext
        if not count:
            return self
        keys = {
            name: seal(name, value) if isinstance(value, str) else value
            for name, value in self.settings["api_keys"].items()
        }
        return replace(
            self,
            settings={**self.settings, "api_keys": keys},
            lines=(*self.lines, f"user {self.user_id}: sealed {count} API key(s)"),
        )

    def columns(self) -> tuple[Any, ...]:
        """The values of :data:`ADOPTED_COLUMNS`; ``StorageError`` while a key is in clear."""
        if not all(is_sealed(value) for value in self.settings["api_keys"].values()):
            raise StorageError("refusing to store a secret that is not sealed")
        return (
            self.settings["theme"],
            self.settings["language"],
            *(dumps(self.settings[name]) for name in JSON_FIELDS),
            self.created_at,
            self.updated_at,
        )


def adopt_rows(user_id: str, rows: Sequence[RowLike]) -> Adoption:
    """One user's document from its rows (newest first): merged and checked, not yet sealed.

    Each row is read by the names in :data:`~livesettings.document.FIELDS`, ``created_at``
    and ``updated_at``.
    """
    if not rows:
        raise ValueError("adopting a user needs at least one row")
    lines: list[str] = []
    if len(rows) > 1:
        lines.append(
            f"user {user_id}: merged {len(rows)} duplicate rows (the latest updated_at wins)"
        )
    settings: dict[str, Any] = {}
    for name in FIELDS:
        raw: Any = None
        for row in reversed(rows):  # oldest first, so later rows win
            value = _field_value(name, row[name])
            if value is not None:
                raw = _deep_merge(raw, value)
        try:
            settings[name] = validate_document({name: raw}, check_size=False)[name]
        except LiveSettingsError:
            settings[name] = default_for(name)
            lines.append(f"user {user_id}: reset invalid {name} to its default")
    created = [row["created_at"] for row in rows if row["created_at"] is not None]
    return Adoption(
        user_id, settings, min(created, default=None), rows[0]["updated_at"], tuple(lines)
    )


def keyring_for_sealing(keyring: Keyring | None) -> Keyring:
    """The keyring that seals adopted API keys; ``ConfigError`` naming the fix without one."""
    if keyring is None:
        raise ConfigError(
            "the existing user_preferences rows hold plaintext API keys, and sealing them needs "
            "the master keys: set LIVESETTINGS_MASTER_KEYS and run setup again"
        )
    return keyring


def adopted_line(users: int) -> str:
    return f"adopted {users} existing user_preferences row(s)"


def cleared_line(rows: int) -> str:
    return f"cleared the api_keys of {rows} user_preferences row(s) without a user_id"


class _Unreadable(str):
    """A JSON column that does not parse: kept as text, so validation resets and reports it."""


def _field_value(name: str, raw: Any) -> Any:
    if raw is None or name not in JSON_FIELDS:
        return raw
    try:
        return loads(raw, name)
    except LiveSettingsError:
        return _Unreadable(raw)


def _deep_merge(older: Any, newer: Any) -> Any:
    """``newer`` over ``older``: objects key by key (recursively), anything else replaced."""
    if isinstance(older, dict) and isinstance(newer, dict):
        merged = dict(older)
        for key, value in newer.items():
            merged[key] = _deep_merge(older.get(key), value) if key in older else value
        return merged
    return newer
