"""PostgreSQL setup: the migration files applied, then RLS, functions, the app role, adoption.

:func:`setup_schema` runs as the owner (``LIVESETTINGS_ADMIN_DATABASE_URL``) inside one
transaction, is idempotent, and returns what it did line by line. Its parts, by concern:

    migrations/postgres/   the tables, the columns a seed table may lack, the indexes
    pg_tables              the names every part shares; column types; the recorded version
    pg_policies            row-level security, its policies, the app role's grants
    pg_functions           the narrow SECURITY DEFINER functions and the lock helper
    pg_roles               the app role, and the memberships that would let it escape RLS
    pg_triggers            the triggers that queue writes made in SQL for the server
    pg_adoption            the data migration: a seed-style ``user_preferences`` adopted

This module keeps the names the store and the tests have always imported from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..crypto import Keyring
from ..errors import ConfigError
from .base import SCHEMA_VERSION
from .migrations import refuse_newer, schema
from .pg_adoption import adopt_seed_rows
from .pg_functions import DEFINER_FUNCTIONS, PRUNE_FLOOR_MS, ensure_functions
from .pg_policies import (
    APP_PRIVILEGES,
    ensure_owner_policies,
    ensure_rls,
    grant_app_role,
    grant_sql_writer,
    user_matches,
)
from .pg_roles import ensure_app_role, risky_memberships
from .pg_tables import (
    LOCK_CLASS,
    SCHEMA,
    SCOPE_SETTING,
    TABLES,
    USER_SETTING,
    Columns,
    inspect_columns,
    is_canonical_uuid,
    quote_ident,
    read_schema_version,
)
from .pg_triggers import ensure_triggers

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "APP_PRIVILEGES",
    "DEFINER_FUNCTIONS",
    "LOCK_CLASS",
    "PRUNE_FLOOR_MS",
    "SCHEMA",
    "SCOPE_SETTING",
    "TABLES",
    "USER_SETTING",
    "Columns",
    "SetupResult",
    "adopt_seed_rows",
    "inspect_columns",
    "is_canonical_uuid",
    "quote_ident",
    "read_schema_version",
    "risky_memberships",
    "setup_schema",
    "user_matches",
]

_SETUP_LOCK: Final = 0
_UNIQUE_USER_INDEX: Final = "user_preferences_user_id_key"


@dataclass(frozen=True, slots=True)
class SetupResult:
    """What :func:`setup_schema` did, and whether rows were rewritten (so old versions of
    them — possibly plaintext secrets — linger as dead tuples until a rewrite)."""

    lines: list[str]
    rewrote_rows: bool


async def setup_schema(
    conn: asyncpg.Connection,
    *,
    app_role: str,
    app_password: str | None,
    keyring: Keyring | None,
    now_ms: int,
    sql_writer: str | None = None,
) -> SetupResult:
    """Create or upgrade everything, as the owner, in the caller's transaction.

    ``sql_writer`` names a role to let write ``user_preferences`` in SQL (``--sql-writer``).
    """
    lines: list[str] = []
    await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock($1, $2)", LOCK_CLASS, _SETUP_LOCK)
    await conn.execute(f"SET LOCAL {SCOPE_SETTING} = 'all'")
    me = await conn.fetchrow(
        "SELECT current_user AS name, r.rolsuper FROM pg_catalog.pg_roles r "
        "WHERE r.rolname = current_user"
    )
    owner: str = me["name"]
    version = await read_schema_version(conn)
    refuse_newer(version, "database")
    existing = await _existing_tables(conn, owner, superuser=bool(me["rolsuper"]))
    for name, ddl in TABLES.items():
        if name not in existing:
            await conn.execute(ddl)
            lines.append(f"created table {name}")
    columns = await _ensure_columns(conn, lines)
    lines.extend(await ensure_rls(conn))
    # The owner's policies come before the adoption: with RLS forced, the owner reads nothing
    # without them (a seed may have forced RLS already).
    lines.extend(await ensure_owner_policies(conn, owner))
    if version is None and "user_preferences" in existing:
        lines.extend(await _foreign_objects(conn))
    touched, adoption_lines = await adopt_seed_rows(conn, columns, keyring, now_ms)
    lines.extend(adoption_lines)
    lines.extend(await _ensure_indexes(conn))
    lines.extend(await ensure_functions(conn, columns))
    lines.extend(await ensure_triggers(conn, columns))
    if app_role == owner:
        lines.append(
            f"no app role set up: LIVESETTINGS_DATABASE_URL names the owner {owner!r}, which "
            "serve refuses; name another role there and run setup again"
        )
    else:
        lines.extend(await ensure_app_role(conn, app_role, app_password))
        lines.extend(await grant_app_role(conn, app_role, columns))
    if sql_writer is not None:
        lines.extend(
            await grant_sql_writer(conn, sql_writer, columns, owner=owner, app_role=app_role)
        )
    if version != SCHEMA_VERSION:
        await conn.execute(
            "INSERT INTO public.livesettings_meta (key, value) VALUES ('schema_version', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            str(SCHEMA_VERSION),
        )
        lines.append(f"recorded schema version {SCHEMA_VERSION}")
    return SetupResult(lines, touched > 0)


async def _existing_tables(conn: asyncpg.Connection, me: str, *, superuser: bool) -> set[str]:
    """Our tables that exist; ``ConfigError`` when one belongs to a role we cannot act as."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner) AS owner, "
        "pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') AS mine "
        "FROM pg_catalog.pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
        "AND c.relname = ANY($1::text[])",
        list(TABLES),
    )
    for row in rows:
        if not row["mine"] and not superuser:
            raise ConfigError(
                f"setup must run as the owner of the tables: table {row['relname']} belongs "
                f"to role {row['owner']!r}, not {me!r} (LIVESETTINGS_ADMIN_DATABASE_URL)"
            )
    return {row["relname"] for row in rows}


async def _ensure_columns(conn: asyncpg.Connection, lines: list[str]) -> Columns:
    """Add the columns a seed-style ``user_preferences`` lacks; its column types after."""
    columns = await inspect_columns(conn)
    assert columns is not None  # created before
    if "user_id" not in columns.types:
        raise ConfigError("the existing user_preferences table has no user_id column")
    missing = [name for name in schema("postgres").columns if name not in columns.types]
    for name in missing:
        await conn.execute(schema("postgres").columns[name])
        lines.append(f"added column user_preferences.{name}")
    if missing:
        columns = await inspect_columns(conn)
        assert columns is not None
    return columns


async def _foreign_objects(conn: asyncpg.Connection) -> list[str]:
    """Triggers and policies a seed left on ``user_preferences``: kept, but worth a look
    (a per-row NOTIFY trigger, say, costs a lock per row and duplicates livesettings' own)."""
    lines: list[str] = []
    for row in await conn.fetch(
        "SELECT t.tgname FROM pg_catalog.pg_trigger t "
        "WHERE t.tgrelid = 'public.user_preferences'::regclass AND NOT t.tgisinternal "
        "AND t.tgname NOT LIKE 'livesettings%' ORDER BY t.tgname"
    ):
        lines.append(f"kept existing trigger {row['tgname']} on user_preferences: review it")
    for row in await conn.fetch(
        "SELECT p.polname FROM pg_catalog.pg_policy p "
        "WHERE p.polrelid = 'public.user_preferences'::regclass "
        "AND p.polname NOT LIKE 'livesettings%' ORDER BY p.polname"
    ):
        lines.append(
            f"kept existing policy {row['polname']} on user_preferences "
            "(livesettings' restrictive policy still confines the app role to its user)"
        )
    return lines


async def _ensure_indexes(conn: asyncpg.Connection) -> list[str]:
    lines: list[str] = []
    indexes = dict(schema("postgres").indexes)
    unique = indexes.pop(_UNIQUE_USER_INDEX)
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = 'public.user_preferences'::regclass AND i.indisunique "
        "AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'user_id')"
    ):
        await conn.execute(unique)  # duplicates were merged by the adoption just before
        lines.append(f"created unique index {_UNIQUE_USER_INDEX}")
    present = {
        row["relname"]
        for row in await conn.fetch(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'i' "
            "AND c.relname = ANY($1::text[])",
            list(indexes),
        )
    }
    for name, ddl in indexes.items():
        if name not in present:
            await conn.execute(ddl)
            lines.append(f"created index {name}")
    return lines
