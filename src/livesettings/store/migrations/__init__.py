"""The schema as versioned, forward-only SQL files, one folder per backend.

    migrations/sqlite/001_initial.sql
    migrations/postgres/001_initial.sql

A file holds ``CREATE TABLE``, ``ALTER TABLE … ADD COLUMN`` and ``CREATE [UNIQUE] INDEX``
statements, each ending with a semicolon at the end of a line. :func:`schema` reads every file
of a backend in version order into one :class:`Schema` — what a database at
:data:`~livesettings.store.base.SCHEMA_VERSION` holds — and each backend's setup creates what
is missing from it, so setup stays idempotent. A later version adds a file (``002_….sql``) and
raises ``SCHEMA_VERSION``; files are never edited once released.

The reading and checks of a recorded version (:func:`parse_version`, :func:`refuse_newer`,
:func:`require_current`) live here too, so both backends word them alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Final, Literal

from ...errors import ConfigError
from ..base import SCHEMA_VERSION

__all__ = ["Backend", "Schema", "parse_version", "refuse_newer", "require_current", "schema"]

Backend = Literal["sqlite", "postgres"]

_FILE: Final = re.compile(r"(\d{3})_\w+\.sql")
_TABLE: Final = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?(\w+)")
_COLUMN: Final = re.compile(r"ALTER TABLE \S+ ADD COLUMN (?:IF NOT EXISTS )?(\w+)")
_INDEX: Final = re.compile(r"CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\w+)")


@dataclass(frozen=True, slots=True)
class Schema:
    """One backend's schema: statements by the name of what they create, in file order."""

    version: int = 0
    tables: dict[str, str] = field(default_factory=dict)
    """table name → ``CREATE TABLE``, in creation order."""
    columns: dict[str, str] = field(default_factory=dict)
    """``user_preferences`` column a seed-style table may lack → ``ALTER TABLE … ADD COLUMN``."""
    indexes: dict[str, str] = field(default_factory=dict)
    """index name → ``CREATE INDEX``."""


@cache
def schema(backend: Backend) -> Schema:
    """Every migration file of ``backend``, applied in version order."""
    folder = resources.files(__name__).joinpath(backend)
    files = sorted(
        (int(match[1]), entry.name)
        for entry in folder.iterdir()
        if (match := _FILE.fullmatch(entry.name))
    )
    versions = [version for version, _ in files]
    if versions != list(range(1, SCHEMA_VERSION + 1)):
        raise RuntimeError(
            f"the {backend} migrations are versions {versions}, not 1 to {SCHEMA_VERSION}"
        )
    result = Schema(SCHEMA_VERSION)
    for _, name in files:
        for statement in _statements(folder.joinpath(name).read_text(encoding="utf-8")):
            if match := _TABLE.match(statement):
                result.tables[match[1]] = statement
            elif match := _COLUMN.match(statement):
                result.columns[match[1]] = statement
            elif match := _INDEX.match(statement):
                result.indexes[match[1]] = statement
            else:
                raise RuntimeError(f"{backend}/{name}: unexpected statement {statement[:60]!r}")
    return result


def _statements(text: str) -> list[str]:
    """The statements of a file: comment lines dropped, split at a line-ending semicolon."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().removesuffix(";"))
            current = []
    if "".join(current).strip():
        raise RuntimeError(f"a migration ends without a semicolon: {' '.join(current)[:60]!r}")
    return statements


def parse_version(value: str | None) -> int | None:
    """The schema version as ``livesettings_meta`` records it (None: none recorded)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the stored schema version {value!r} is not a number") from None


def refuse_newer(version: int | None, what: str) -> None:
    """``ConfigError`` when ``what`` (``"database"``, ``"SQLite database <path>"``) records a
    schema version this livesettings does not know."""
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigError(
            f"the {what} has schema version {version}, newer than this livesettings "
            f"understands ({SCHEMA_VERSION}); upgrade livesettings"
        )


def require_current(version: int | None, what: str) -> None:
    """``ConfigError`` naming the fix unless ``what`` is at :data:`SCHEMA_VERSION`."""
    if version is None:
        raise ConfigError(f"the {what} has no livesettings schema; run `livesettings setup` first")
    refuse_newer(version, what)
    if version < SCHEMA_VERSION:
        raise ConfigError(
            f"the {what} has schema version {version}; "
            f"run `livesettings setup` to upgrade it to {SCHEMA_VERSION}"
        )
