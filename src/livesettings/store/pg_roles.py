"""The app role ``serve`` connects as, and the memberships that would let it escape RLS.

The app role owns nothing, is NOSUPERUSER NOBYPASSRLS, and is a member of no role that is
either or owns the tables (:func:`risky_memberships`: SET ROLE would step out of row-level
security). :func:`ensure_app_role` creates it when missing and refuses one that is not
confinable; what it may do is granted by :func:`~livesettings.store.pg_policies.grant_app_role`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..errors import ConfigError
from .pg_tables import TABLES, quote_ident

if TYPE_CHECKING:
    import asyncpg

__all__ = ["ensure_app_role", "risky_memberships"]

_MEMBER_OF: Final = """
    WITH RECURSIVE member_of (oid) AS (
        SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1
        UNION
        SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN member_of o ON m.member = o.oid
    )
    SELECT r.rolname, r.rolsuper, r.rolbypassrls, EXISTS (
        SELECT 1 FROM pg_catalog.pg_class c WHERE c.relowner = r.oid
        AND c.relnamespace = 'public'::regnamespace AND c.relname = ANY($2::text[])) AS owns
    FROM member_of o JOIN pg_catalog.pg_roles r ON r.oid = o.oid
    WHERE r.rolname <> $1 ORDER BY r.rolname COLLATE "C"
"""


async def risky_memberships(conn: asyncpg.Connection, role: str) -> list[str]:
    """The roles ``role`` is a member of, directly or through others, that row-level security
    cannot confine: superusers, BYPASSRLS roles, the tables' owner — one phrase each.

    Read from ``pg_auth_members`` whatever the INHERIT flags (``SET ROLE`` reaches such a role
    either way), not with ``pg_has_role``, which is true of every role for a superuser caller.
    """
    phrases: list[str] = []
    for row in await conn.fetch(_MEMBER_OF, role, list(TABLES)):
        name = row["rolname"]
        if row["rolsuper"]:
            phrases.append(f"a member of the superuser role {name!r}")
        elif row["rolbypassrls"]:
            phrases.append(f"a member of the role {name!r}, which has BYPASSRLS")
        elif row["owns"]:
            phrases.append(f"a member of the role {name!r}, which owns the livesettings tables")
    return phrases


async def ensure_app_role(conn: asyncpg.Connection, role: str, password: str | None) -> list[str]:
    """The login role ``serve`` connects as: created if missing; ``ConfigError`` when RLS
    could not confine it."""
    lines: list[str] = []
    row = await conn.fetchrow(
        "SELECT r.rolsuper, r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        role,
    )
    if row is None:
        statement = await conn.fetchval(
            "SELECT pg_catalog.format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
            "NOCREATEROLE NOREPLICATION' || CASE WHEN $2::text IS NULL THEN '' "
            "ELSE ' PASSWORD %L' END, $1::text, $2::text)",
            role,
            password,
        )
        await conn.execute(statement)
        lines.append(f"created role {role} (LOGIN, NOBYPASSRLS, owning nothing)")
    elif row["rolsuper"] or row["rolbypassrls"]:
        what = "a superuser" if row["rolsuper"] else "BYPASSRLS"
        raise ConfigError(
            f"the app role {role!r} (LIVESETTINGS_DATABASE_URL) is {what}, so row-level "
            "security cannot confine it; use a plain login role (setup creates one if missing)"
        )
    elif risky := await risky_memberships(conn, role):
        # Only this direction matters: the owner holding the app role's rights is harmless,
        # and a superuser owner is a member of every role by definition.
        raise ConfigError(
            f"the app role {role!r} (LIVESETTINGS_DATABASE_URL) is {'; '.join(risky)}: with "
            "SET ROLE it could step out of row-level security; revoke that membership "
            f"(REVOKE <role> FROM {quote_ident(role)}) and run setup again"
        )
    return lines
