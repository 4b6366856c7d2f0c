"""Row-level security on every table, its policies, and what the app role is granted.

Who sees what (DESIGN §6), with row-level security enabled *and forced* on every table:

    owner (setup)     owns every table and function. FORCE makes RLS apply to it too: it sees
                      rows only while ``livesettings.scope`` is ``'all'``, which setup sets,
                      and each SECURITY DEFINER function for its own duration.
    app role (serve)  sees and writes only the rows of the user named by
                      ``livesettings.user_id``, which the store sets with ``set_config(…,
                      true)`` in each transaction — nothing when it is unset; it holds
                      exactly :data:`APP_PRIVILEGES`, and EXECUTE on the functions.
                      Team documents (DESIGN §11, key ``team:<id>``): a document's rows are
                      also visible when the current user is a member of its team
                      (``livesettings_member_of``), and so are the team's row and its
                      memberships. The document's own key as the current user (the server's
                      fan-out, an operator) sees that document, as for a personal one.
    SQL writer        (``setup --sql-writer ROLE``, optional) joins the app role's policies on
                      ``user_preferences`` only, with :data:`SQL_WRITER_PRIVILEGES` there and
                      nothing elsewhere; its writes are queued by the triggers
                      (:mod:`.pg_triggers`) and applied by the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..errors import ConfigError
from .pg_functions import DEFINER_FUNCTIONS, LOCK_SIGNATURE
from .pg_roles import risky_memberships
from .pg_tables import SCOPE_SETTING, TABLES, USER_SETTING, Columns, quote_ident

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "APP_PRIVILEGES",
    "DOCUMENT_TABLES",
    "SQL_WRITER_PRIVILEGES",
    "doc_matches",
    "ensure_owner_policies",
    "ensure_rls",
    "grant_app_role",
    "grant_sql_writer",
    "user_matches",
]

APP_PRIVILEGES: Final[dict[str, str]] = {
    "livesettings_meta": "SELECT",
    "user_preferences": "SELECT, INSERT, UPDATE, DELETE",
    "settings_changes": "SELECT, INSERT, DELETE",
    "applied_mutations": "SELECT, INSERT, DELETE",
    "users": "SELECT, INSERT, UPDATE, DELETE",
    "refresh_tokens": "SELECT, INSERT, UPDATE, DELETE",
    "session_revocations": "SELECT, INSERT, DELETE",
    "data_keys": "SELECT, INSERT, UPDATE, DELETE",
    "teams": "SELECT, INSERT, UPDATE, DELETE",
    "team_members": "SELECT, INSERT, UPDATE, DELETE",
    # Its own row only (is_admin, account removal); granted by livesettings_set_admin alone.
    "admins": "SELECT, DELETE",
}
"""What the app role may do to each table — and nothing else (no TRUNCATE, no DDL)."""

SQL_WRITER_PRIVILEGES: Final = (
    "SELECT, DELETE",
    "INSERT (user_id, theme, language, preferences, ai_providers, api_keys)",
    # user_id too: an upsert (PostgREST's) sets every column it names, the conflict key
    # included; the trigger refuses a user_id that changes.
    "UPDATE (user_id, theme, language, preferences, ai_providers, api_keys, updated_at)",
)
"""What a ``--sql-writer`` role may do to ``user_preferences`` — never revision or leaf_meta."""

_OWNER_SCOPE: Final = f"pg_catalog.current_setting('{SCOPE_SETTING}', true) = 'all'"
_CURRENT: Final = f"NULLIF(pg_catalog.current_setting('{USER_SETTING}', true), '')"

DOCUMENT_TABLES: Final = ("user_preferences", "settings_changes", "applied_mutations", "data_keys")
"""The tables keyed by a document key (a user id, or ``team:<team_id>``)."""

_TEAM_ROW: Final = (
    f"('team:' || team_id = {_CURRENT} OR public.livesettings_member_of('team:' || team_id))"
)
_MEMBER_ROW: Final = f"(user_id = {_CURRENT} OR {_TEAM_ROW})"


def user_matches(column_type: str = "text") -> str:
    """The policy expression: the row's user is the one this transaction set.

    ``NULLIF(…, '')``: a transaction-local setting reads as ``''`` once it is over, never as
    NULL, and ``''`` must match nothing.
    """
    column = "user_id" if column_type == "text" else "user_id::text"
    return f"{column} = NULLIF(pg_catalog.current_setting('{USER_SETTING}', true), '')"


def doc_matches(column_type: str = "text") -> str:
    """The document tables' policy: the row's key is the current user's, or that of a team
    the current user belongs to (a seed's uuid column holds no team document)."""
    if column_type != "text":
        return user_matches(column_type)
    return f"({user_matches()} OR public.livesettings_member_of(user_id))"


async def ensure_rls(conn: asyncpg.Connection) -> list[str]:
    lines: list[str] = []
    rows = await conn.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_catalog.pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[]) "
        "ORDER BY c.relname",
        list(TABLES),
    )
    for row in rows:
        if not row["relrowsecurity"] or not row["relforcerowsecurity"]:
            await conn.execute(f"ALTER TABLE public.{row['relname']} ENABLE ROW LEVEL SECURITY")
            await conn.execute(f"ALTER TABLE public.{row['relname']} FORCE ROW LEVEL SECURITY")
            lines.append(f"enabled and forced row-level security on {row['relname']}")
    return lines


async def ensure_owner_policies(conn: asyncpg.Connection, owner: str) -> list[str]:
    """The owner's view of every table: all rows while ``livesettings.scope`` is ``'all'``."""
    lines: list[str] = []
    for table in TABLES:
        lines += await _ensure_policy(conn, table, "livesettings_owner_scope", owner, _OWNER_SCOPE)
    # livesettings_member_of runs as the owner: it sees the current user's memberships.
    lines += await _ensure_policy(
        conn,
        "team_members",
        "livesettings_owner_member_of",
        owner,
        f"user_id = {_CURRENT}",
        command="SELECT",
        check=False,
    )
    return lines


async def grant_app_role(conn: asyncpg.Connection, role: str, columns: Columns) -> list[str]:
    """Grant the app role exactly what it needs, and its policies; warn of what it has more."""
    lines: list[str] = []
    ident = quote_ident(role)
    if not await conn.fetchval(
        "SELECT pg_catalog.has_database_privilege($1, current_database(), 'CONNECT')", role
    ):
        await conn.execute(
            await conn.fetchval(
                "SELECT pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', "
                "current_database(), $1::text)",
                role,
            )
        )
    if not await conn.fetchval(
        "SELECT pg_catalog.has_schema_privilege($1, 'public', 'USAGE')", role
    ):
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
    if await conn.fetchval("SELECT pg_catalog.has_schema_privilege($1, 'public', 'CREATE')", role):
        lines.append(
            f"warning: role {role} may create objects in schema public (granted to it or to "
            "PUBLIC); revoke that: REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        )
    for table, privileges in APP_PRIVILEGES.items():
        # Revoke first, so the role holds exactly these privileges and nothing granted earlier.
        await conn.execute(f"REVOKE ALL ON public.{table} FROM {ident}")
        await conn.execute(f"GRANT {privileges} ON public.{table} TO {ident}")
    for sequence in await conn.fetch(
        "SELECT pg_catalog.pg_get_serial_sequence('public.' || c.relname, a.attname) AS seq "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[]) "
        "AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_catalog.pg_get_serial_sequence('public.' || c.relname, a.attname) IS NOT NULL",
        list(APP_PRIVILEGES),
    ):
        await conn.execute(f"GRANT USAGE ON SEQUENCE {sequence['seq']} TO {ident}")
    for signature in [*DEFINER_FUNCTIONS, LOCK_SIGNATURE]:
        await conn.execute(f"GRANT EXECUTE ON FUNCTION public.{signature} TO {ident}")
    for table in TABLES:
        lines.extend(await _app_policies(conn, table, role, columns))
    return lines


async def grant_sql_writer(
    conn: asyncpg.Connection, role: str, columns: Columns, *, owner: str, app_role: str
) -> list[str]:
    """Let ``role`` write ``user_preferences`` in SQL, confined like the app role by row-level
    security; ``ConfigError`` for a role that is missing or that RLS would not confine."""
    row = await conn.fetchrow(
        "SELECT r.rolsuper, r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        role,
    )
    if row is None:
        raise ConfigError(
            f"the SQL writer role {role!r} (--sql-writer) does not exist; create it first "
            f"(CREATE ROLE {quote_ident(role)} LOGIN PASSWORD '…') and run setup again"
        )
    if role in (owner, app_role):
        which = "owns the livesettings tables" if role == owner else "is the app role"
        raise ConfigError(
            f"the SQL writer role {role!r} (--sql-writer) {which}; name a role of its own"
        )
    if row["rolsuper"] or row["rolbypassrls"]:
        what = "a superuser" if row["rolsuper"] else "BYPASSRLS"
        raise ConfigError(
            f"the SQL writer role {role!r} (--sql-writer) is {what}, so row-level security "
            "cannot confine it (and its writes would not be told apart); use a plain role"
        )
    if risky := await risky_memberships(conn, role):
        raise ConfigError(
            f"the SQL writer role {role!r} (--sql-writer) is {'; '.join(risky)}: with SET "
            "ROLE it could step out of row-level security; revoke that membership "
            f"(REVOKE <role> FROM {quote_ident(role)}) and run setup again"
        )
    if await conn.fetchval(
        "SELECT pg_catalog.pg_has_role($1, r.oid, 'MEMBER') FROM pg_catalog.pg_roles r "
        "WHERE r.rolname = $2",
        role,
        app_role,
    ):
        # The app role's rights would let it write the table past the queue.
        raise ConfigError(
            f"the SQL writer role {role!r} (--sql-writer) is a member of the app role "
            f"{app_role!r}; revoke that membership (REVOKE {quote_ident(app_role)} FROM "
            f"{quote_ident(role)}) and run setup again"
        )
    ident = quote_ident(role)
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {ident}")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
    # Revoke first (column privileges go with it), so it holds exactly these.
    await conn.execute(f"REVOKE ALL ON public.user_preferences FROM {ident}")
    for privileges in SQL_WRITER_PRIVILEGES:
        await conn.execute(f"GRANT {privileges} ON public.user_preferences TO {ident}")
    # The document policy calls it (policies run with the querying role's rights).
    await conn.execute(f"GRANT EXECUTE ON FUNCTION public.livesettings_member_of(text) TO {ident}")
    lines = await _app_policies(conn, "user_preferences", role, columns)
    lines.append(
        f"role {role} may write user_preferences in SQL (SELECT, INSERT, UPDATE, DELETE of "
        "the five settings columns, the user named by livesettings.user_id only); its writes "
        "are applied and pushed by the server"
    )
    return lines


async def _app_policies(
    conn: asyncpg.Connection, table: str, role: str, columns: Columns
) -> list[str]:
    if table not in APP_PRIVILEGES:
        return []  # the app role reaches it only through SECURITY DEFINER functions
    if table == "livesettings_meta":
        return await _ensure_policy(
            conn, table, "livesettings_app_read", role, "true", command="SELECT", check=False
        )
    check: str | None = None
    if table in DOCUMENT_TABLES:
        matches = doc_matches(columns.user_id_type if table == "user_preferences" else "text")
    elif table == "teams":
        matches, check = _TEAM_ROW, "true"  # a new team has no member yet
    elif table == "team_members":
        matches = _MEMBER_ROW
    else:
        matches = user_matches()
    lines = await _ensure_policy(
        conn, table, "livesettings_app_user", role, matches, with_check=check, refresh=True
    )
    # Restrictive as well: a permissive policy a seed left behind cannot widen the app
    # role's view beyond its user.
    lines += await _ensure_policy(
        conn,
        table,
        "livesettings_app_user_only",
        role,
        matches,
        restrictive=True,
        with_check=check,
        refresh=True,
    )
    return lines


async def _ensure_policy(
    conn: asyncpg.Connection,
    table: str,
    name: str,
    role: str,
    using: str,
    *,
    restrictive: bool = False,
    command: str = "ALL",
    check: bool = True,
    with_check: str | None = None,
    refresh: bool = False,
) -> list[str]:
    """Create policy ``name`` for ``role``, or add ``role`` to its roles when it exists.

    ``refresh``: an existing policy gets these expressions (an upgrade may change them —
    schema version 2 added team membership to the document tables' policies).
    """
    row = await conn.fetchrow(
        "SELECT p.polroles::regrole[]::text[] AS roles FROM pg_catalog.pg_policy p "
        "WHERE p.polrelid = $1::regclass AND p.polname = $2",
        f"public.{table}",
        name,
    )
    checked = f" WITH CHECK ({with_check or using})" if check else ""
    if row is None:
        kind = "RESTRICTIVE" if restrictive else "PERMISSIVE"
        await conn.execute(
            f"CREATE POLICY {name} ON public.{table} AS {kind} FOR {command} "
            f"TO {quote_ident(role)} USING ({using}){checked}"
        )
        return [f"created policy {name} on {table}"]
    if refresh:
        await conn.execute(f"ALTER POLICY {name} ON public.{table} USING ({using}){checked}")
    roles = [r.strip('"').replace('""', '"') for r in row["roles"]]
    if role in roles:
        return []
    await conn.execute(
        f"ALTER POLICY {name} ON public.{table} TO "
        + ", ".join(quote_ident(r) for r in [*roles, role])
    )
    return [f"added role {role} to policy {name} on {table}"]
