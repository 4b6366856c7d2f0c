"""What ``serve`` checks of the PostgreSQL database it connects to, and what it reports."""

from __future__ import annotations

from typing import Any

import asyncpg

from ..errors import ConfigError
from .migrations import check_servable
from .pg_errors import DRIVER_ERRORS, lacks_rights, location_of, translate
from .postgres_schema import (
    DEFINER_FUNCTIONS,
    TABLES,
    Columns,
    inspect_columns,
    quote_ident,
    read_schema_version,
    risky_memberships,
)

__all__ = ["check_app_role", "database_facts"]


async def check_app_role(conn: Any, url: str, command_timeout: float) -> Columns:
    """What ``serve`` refuses to run with: a role that row-level security does not confine
    (superuser, BYPASSRLS, the tables' owner, a member of any of those), a missing or other
    schema version (:func:`~livesettings.store.migrations.check_servable`: this release's or
    the next one's), or RLS off. The columns of ``user_preferences`` otherwise."""
    where = location_of(url)
    try:
        role = await conn.fetchrow(
            "SELECT current_user AS name, r.rolsuper, r.rolbypassrls "
            "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
        )
        name = role["name"]
        fix = (
            "set LIVESETTINGS_DATABASE_URL to the app role that `livesettings setup` "
            "creates (LIVESETTINGS_ADMIN_DATABASE_URL is for setup only)"
        )
        if role["rolsuper"]:
            raise ConfigError(
                f"refusing to connect as {name!r}: it is a superuser, which row-level "
                f"security does not confine; {fix}"
            )
        if role["rolbypassrls"]:
            raise ConfigError(
                f"refusing to connect as {name!r}: it has BYPASSRLS, so row-level security "
                f"does not confine it; {fix}"
            )
        risky = await risky_memberships(conn, name)
        if risky:
            raise ConfigError(
                f"refusing to connect as {name!r}: it is {'; '.join(risky)}, so with SET "
                "ROLE it could step out of row-level security; revoke that membership "
                f"(REVOKE <role> FROM {quote_ident(name)}), or {fix}"
            )
        owned = await conn.fetchrow(
            "SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner) AS owner "
            "FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relname = ANY($1::text[]) "
            "AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER') LIMIT 1",
            list(TABLES),
        )
        if owned is not None:
            raise ConfigError(
                f"refusing to connect as {name!r}: it owns the livesettings tables (table "
                f"{owned['relname']} belongs to {owned['owner']!r}), and the owner can "
                f"switch row-level security off; {fix}"
            )
        check_servable(await read_schema_version(conn), f"database {where}")
        unprotected = await conn.fetchval(
            "SELECT pg_catalog.string_agg(c.relname, ', ' ORDER BY c.relname) "
            "FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relname = ANY($1::text[]) "
            "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
            list(TABLES),
        )
        if unprotected:
            raise ConfigError(
                f"row-level security is not enabled and forced on {unprotected}; "
                "run `livesettings setup`"
            )
        columns = await inspect_columns(conn)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise lacks_rights(exc) from exc
    except DRIVER_ERRORS as exc:
        raise translate(exc, command_timeout) from exc
    if columns is None:
        raise ConfigError(
            f"the database {where} has no user_preferences table; run `livesettings setup`"
        )
    return columns


async def database_facts(conn: Any, user_id_type: str) -> dict[str, Any]:
    """The database as ``verify`` / ``check-db`` / ``/metrics`` report it."""
    facts = await conn.fetchrow(
        "SELECT pg_catalog.current_setting('server_version') AS server_version, "
        "current_database() AS database, current_user AS role, r.rolsuper, "
        "r.rolbypassrls, pg_catalog.current_setting('synchronous_commit') AS sync "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
    )
    rls = await conn.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity "
        "FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        "AND c.relname = ANY($1::text[]) ORDER BY c.relname",
        list(TABLES),
    )
    owns = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[]) "
        "AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER'))",
        list(TABLES),
    )
    functions = await conn.fetch(
        "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY($1::text[]) "
        "ORDER BY p.proname",
        [signature.partition("(")[0] for signature in DEFINER_FUNCTIONS],
    )
    version = await read_schema_version(conn)
    return {
        "backend": "postgresql",
        "server_version": facts["server_version"],
        "database": facts["database"],
        "schema_version": version,
        "role": facts["role"],
        "role_superuser": facts["rolsuper"],
        "role_bypassrls": facts["rolbypassrls"],
        "role_owns_tables": owns,
        "synchronous_commit": facts["sync"],
        "user_id_type": user_id_type,
        "rls": {
            row["relname"]: {
                "enabled": row["relrowsecurity"],
                "forced": row["relforcerowsecurity"],
            }
            for row in rls
        },
        "definer_functions": {
            row["proname"]: {
                "security_definer": row["prosecdef"],
                "config": list(row["proconfig"] or ()),
            }
            for row in functions
        },
    }
