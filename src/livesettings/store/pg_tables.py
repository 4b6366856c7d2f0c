"""The PostgreSQL tables and the names every other PostgreSQL module refers to.

The tables, their columns and indexes are the migration files'
(:mod:`livesettings.store.migrations`); this module names them, reads the column types of
``user_preferences`` (a seed table keeps its own) and the recorded schema version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .migrations import parse_version, schema

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "LOCK_CLASS",
    "SCHEMA",
    "SCOPE_SETTING",
    "TABLES",
    "USER_SETTING",
    "Columns",
    "inspect_columns",
    "is_canonical_uuid",
    "quote_ident",
    "read_schema_version",
]

SCHEMA: Final = "public"
"""The schema holding the tables (where the seed's ``user_preferences`` lives)."""

USER_SETTING: Final = "livesettings.user_id"
"""The transaction-local setting the policies compare ``user_id`` with."""

SCOPE_SETTING: Final = "livesettings.scope"
"""``'all'`` lets the owner see every row (setup and the SECURITY DEFINER functions only)."""

LOCK_CLASS: Final = 0x4C53
"""First key of livesettings' advisory locks ('LS'); the second is a user's hash (0: setup)."""

TABLES: Final[dict[str, str]] = schema("postgres").tables
"""Every table livesettings uses, in creation order (``refresh_tokens`` refers to ``users``)."""


def quote_ident(name: str) -> str:
    """An SQL identifier, double-quoted (role names come from URLs)."""
    return '"' + name.replace('"', '""') + '"'


def is_canonical_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID as PostgreSQL prints one (lowercase, hyphenated)."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Columns:
    """The SQL types of ``user_preferences`` columns (a seed table keeps its own)."""

    types: dict[str, str]

    def type_of(self, name: str) -> str:
        return self.types.get(name, "text")

    @property
    def user_id_type(self) -> str:
        return self.type_of("user_id")

    @property
    def user_id_is_uuid(self) -> bool:
        return self.user_id_type == "uuid"

    def user_id_text(self, alias: str = "") -> str:
        """``user_id`` as text, for comparisons with the other tables' text ids."""
        column = f"{alias}.user_id" if alias else "user_id"
        return column if self.user_id_type == "text" else f"{column}::text"


async def inspect_columns(conn: asyncpg.Connection) -> Columns | None:
    """The column types of ``user_preferences``; None when the table does not exist."""
    rows = await conn.fetch(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type "
        "FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = pg_catalog.to_regclass('public.user_preferences') "
        "AND a.attnum > 0 AND NOT a.attisdropped"
    )
    if not rows:
        return None
    return Columns({row["attname"]: row["type"] for row in rows})


async def read_schema_version(conn: asyncpg.Connection) -> int | None:
    """The recorded schema version; None without a meta table or a recorded version."""
    if await conn.fetchval("SELECT pg_catalog.to_regclass('public.livesettings_meta')") is None:
        return None
    return parse_version(
        await conn.fetchval(
            "SELECT value FROM public.livesettings_meta WHERE key = 'schema_version'"
        )
    )
