"""The schema as versioned, forward-only SQL files, one folder per backend.

    migrations/sqlite/001_initial.sql
    migrations/postgres/001_initial.sql

A file holds ``CREATE TABLE``, ``ALTER TABLE … ADD COLUMN`` and ``CREATE [UNIQUE] INDEX``
statements, each ending with a semicolon at the end of a line. :func:`schema` reads every file
of a backend in version order into one :class:`Schema` — what a database at
:data:`~livesettings.store.base.SCHEMA_VERSION` holds — and each backend's setup creates what
is missing from it, so setup stays idempotent. A later version adds a file (``002_….sql``) and
raises ``SCHEMA_VERSION``; files are never edited once released.

Every migration is *expand-only* (new tables, new nullable or defaulted columns, new indexes),
so a node of the previous release keeps working on a database one version ahead of it: that is
what makes a rolling upgrade possible. The compatibility rule, worded here for both backends:

* ``serve`` (and every command that opens the store) accepts :data:`SCHEMA_VERSION` and
  ``SCHEMA_VERSION + 1`` (logging a warning naming both), and refuses an older database (run
  ``livesettings migrate``), a newer one (upgrade livesettings) or none (run setup) —
  :func:`check_servable`;
* ``setup`` and ``migrate`` refuse any database newer than :data:`SCHEMA_VERSION`
  (:func:`refuse_newer`): they would record an older version over a newer schema.

Setup also re-makes the functions, policies and grants of the current release on every run, so
a release keeps every function signature and privilege the previous one uses.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Final, Literal

from ...errors import ConfigError
from ..base import SCHEMA_VERSION

__all__ = [
    "SERVES_NEWER",
    "Backend",
    "Schema",
    "check_servable",
    "migration_files",
    "parse_version",
    "pending_migrations",
    "refuse_newer",
    "schema",
    "statements",
]

logger = logging.getLogger("livesettings.store")

Backend = Literal["sqlite", "postgres"]

SERVES_NEWER: Final = 1
"""How many schema versions past its own a node serves: the one a newer release migrated the
database to during a rolling upgrade (its migrations are expand-only)."""

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
def migration_files(backend: Backend) -> tuple[tuple[int, str], ...]:
    """``(version, file name)`` of every migration of ``backend``, in version order;
    ``RuntimeError`` unless they are exactly versions 1 to :data:`SCHEMA_VERSION`."""
    folder = resources.files(__name__).joinpath(backend)
    files = tuple(
        sorted(
            (int(match[1]), entry.name)
            for entry in folder.iterdir()
            if (match := _FILE.fullmatch(entry.name))
        )
    )
    versions = [version for version, _ in files]
    if versions != list(range(1, SCHEMA_VERSION + 1)):
        raise RuntimeError(
            f"the {backend} migrations are versions {versions}, not 1 to {SCHEMA_VERSION}"
        )
    return files


def statements(backend: Backend, name: str) -> list[str]:
    """The statements of one migration file, without comments or final semicolons."""
    folder = resources.files(__name__).joinpath(backend)
    return _statements(folder.joinpath(name).read_text(encoding="utf-8"))


@cache
def schema(backend: Backend) -> Schema:
    """Every migration file of ``backend``, applied in version order."""
    result = Schema(SCHEMA_VERSION)
    for _, name in migration_files(backend):
        for statement in statements(backend, name):
            if match := _TABLE.match(statement):
                result.tables[match[1]] = statement
            elif match := _COLUMN.match(statement):
                result.columns[match[1]] = statement
            elif match := _INDEX.match(statement):
                result.indexes[match[1]] = statement
            else:
                raise RuntimeError(f"{backend}/{name}: unexpected statement {statement[:60]!r}")
    return result


def pending_migrations(backend: Backend, version: int | None) -> list[str]:
    """The migrations a database at ``version`` lacks, by file stem (``"003_sql_writes"``);
    all of them without a schema, none for a database at or past :data:`SCHEMA_VERSION`."""
    done = 0 if version is None else version
    return [name.removesuffix(".sql") for number, name in migration_files(backend) if number > done]


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


def _serves() -> str:
    return (
        f"this livesettings (schema {SCHEMA_VERSION}) serves {SCHEMA_VERSION} "
        f"and {SCHEMA_VERSION + SERVES_NEWER} only"
    )


def refuse_newer(version: int | None, what: str) -> None:
    """``ConfigError`` when ``what`` (``"database"``, ``"SQLite database <path>"``) records a
    schema version newer than this livesettings: ``setup``/``migrate`` would record their
    older version over it."""
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigError(
            f"the {what} has schema version {version}, newer than this livesettings "
            f"(schema {SCHEMA_VERSION}) can set up or migrate; upgrade livesettings"
        )


def check_servable(version: int | None, what: str) -> str | None:
    """Whether a node may serve ``what`` at schema ``version``: ``ConfigError`` naming the fix
    when not; the warning (also logged) when it is one version newer — a rolling upgrade in
    progress; None when it is current."""
    if version is None:
        raise ConfigError(f"the {what} has no livesettings schema; run `livesettings setup` first")
    if version < SCHEMA_VERSION:
        raise ConfigError(
            f"the {what} has schema version {version}, older than this livesettings "
            f"(schema {SCHEMA_VERSION}); run `livesettings migrate` (or `livesettings setup`) "
            f"to upgrade it to {SCHEMA_VERSION}"
        )
    if version > SCHEMA_VERSION + SERVES_NEWER:
        raise ConfigError(
            f"the {what} has schema version {version}, newer than this livesettings supports: "
            f"{_serves()}; upgrade livesettings"
        )
    if version == SCHEMA_VERSION:
        return None
    warning = (
        f"the {what} has schema version {version}, newer than this livesettings "
        f"(schema {SCHEMA_VERSION}): serving it, as during a rolling upgrade; "
        f"upgrade this node to the release of schema {version}"
    )
    logger.warning(warning)
    return warning
