"""The PostgreSQL functions: the narrow SECURITY DEFINER ones, and the advisory-lock helper.

Cross-user work (sign-in by username, revocations, pruning, key rotation, export) goes through
the ``livesettings_*`` SECURITY DEFINER functions below, each one narrow, with ``search_path =
pg_catalog, public, pg_temp`` and every name schema-qualified. :func:`ensure_functions`
replaces them on every setup (an upgrade may change a body) and revokes them from PUBLIC; the
app role is granted EXECUTE by :func:`~livesettings.store.pg_policies.grant_app_role`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .base import TOKEN_REVOCATION_GRACE_S
from .pg_tables import LOCK_CLASS, SCOPE_SETTING, USER_SETTING, Columns

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "DEFINER_FUNCTIONS",
    "LOCK_SIGNATURE",
    "MEMBER_OF_FUNCTION",
    "PRUNE_FLOOR_MS",
    "SQL_WRITE_LEASE_S",
    "ensure_functions",
]


def _definer(declaration: str, returns: str, body: str) -> str:
    """A SECURITY DEFINER function with a fixed ``search_path`` that sees every row.

    It sets ``livesettings.scope`` itself and restores it before returning: PostgreSQL 15 lets
    only superusers put a custom setting in a function's ``SET`` clause.
    """
    return f"""
        CREATE OR REPLACE FUNCTION public.{declaration}
        RETURNS {returns}
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE
            previous text := pg_catalog.current_setting('{SCOPE_SETTING}', true);
        BEGIN
            PERFORM pg_catalog.set_config('{SCOPE_SETTING}', 'all', true);
            {body}
            PERFORM pg_catalog.set_config('{SCOPE_SETTING}', COALESCE(previous, ''), true);
        END
        $$"""


_USER_ROW: Final = "TABLE (user_id text, username text, password_hash text, created_at timestamptz)"

PRUNE_FLOOR_MS: Final = 7 * 24 * 3600 * 1000
"""``livesettings_prune`` forgets no mutation id, nor expired token, younger than this."""

_CURRENT: Final = f"NULLIF(pg_catalog.current_setting('{USER_SETTING}', true), '')"

MEMBER_OF_FUNCTION: Final = f"""
    CREATE OR REPLACE FUNCTION public.livesettings_member_of(p_key text)
    RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS $$
        SELECT p_key LIKE 'team:%' AND EXISTS (
            SELECT 1 FROM public.team_members m
            WHERE m.team_id = pg_catalog.substr(p_key, 6) AND m.user_id = {_CURRENT})
    $$"""
"""The membership test of the document tables' policies (see pg_policies)."""

_NOW_MS: Final = "(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)::bigint"

SQL_WRITE_LEASE_S: Final = 30
"""How long a claimed SQL write stays with the node that claimed it."""

_QUEUE_LOCK: Final = -1
"""Second key of the advisory lock that serialises claims of the SQL-write queue (user keys are
hashes, so a collision only makes a claim wait for one commit)."""


# p_q as a lower-case LIKE pattern "contains p_q" (escape character: backslash).
_CONTAINS: Final = (
    "'%' || pg_catalog.replace(pg_catalog.replace(pg_catalog.replace("
    "pg_catalog.lower(p_q), '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' ESCAPE '\\'"
)


def _definer_functions(user_id_text: str) -> dict[str, str]:
    """``signature -> CREATE statement`` of the SECURITY DEFINER functions.

    ``user_id_text`` is ``user_preferences.user_id`` (alias ``p``) as text: a seed's uuid
    column keeps its type.
    """
    return {
        # Sign-in looks a user up by name before anyone is authenticated.
        "livesettings_user_by_username(text)": _definer(
            "livesettings_user_by_username(p_username text)",
            _USER_ROW,
            "RETURN QUERY SELECT u.user_id, u.username, u.password_hash, u.created_at "
            "FROM public.users u WHERE u.username = p_username;",
        ),
        # `livesettings user list` (operators): no password hash leaves through it.
        "livesettings_list_users()": _definer(
            "livesettings_list_users()",
            "TABLE (user_id text, username text, created_at timestamptz)",
            "RETURN QUERY SELECT u.user_id, u.username, u.created_at "
            'FROM public.users u ORDER BY u.username COLLATE "C";',
        ),
        # A refresh token is presented without a user: find whose it is, nothing more.
        "livesettings_refresh_token_owner(text)": _definer(
            "livesettings_refresh_token_owner(p_token_hash text)",
            "SETOF text",
            "RETURN QUERY SELECT t.user_id FROM public.refresh_tokens t "
            "WHERE t.token_hash = p_token_hash;",
        ),
        # Every node polls revocations to close the sockets of logged-out users.
        "livesettings_revocations_since(bigint)": _definer(
            "livesettings_revocations_since(p_after bigint)",
            "TABLE (id bigint, user_id text, at_ms bigint)",
            "RETURN QUERY SELECT r.id, r.user_id, r.at_ms FROM public.session_revocations r "
            "WHERE r.id > p_after ORDER BY r.id;",
        ),
        # `token revoke --jti`: a token is void until it expires; long-expired rows go. The
        # cut-off is the database's clock, not an argument the caller could push forward.
        "livesettings_revoke_token(text,bigint)": _definer(
            "livesettings_revoke_token(p_jti text, p_expires_at bigint)",
            "void",
            "DELETE FROM public.token_revocations r WHERE r.expires_at < "
            "pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())::bigint"
            f" - {TOKEN_REVOCATION_GRACE_S};"
            " INSERT INTO public.token_revocations (jti, expires_at) "
            "VALUES (p_jti, p_expires_at);",
        ),
        "livesettings_token_revocations_since(bigint)": _definer(
            "livesettings_token_revocations_since(p_after bigint)",
            "TABLE (id bigint, jti text, expires_at bigint)",
            "RETURN QUERY SELECT r.id, r.jti, r.expires_at FROM public.token_revocations r "
            "WHERE r.id > p_after ORDER BY r.id;",
        ),
        # Forget mutation ids past their retention and long-expired refresh tokens. The
        # cut-offs are clamped here, not trusted: whoever calls it (the app role) can never
        # forget anything younger than the retention DESIGN §3 promises.
        "livesettings_prune(bigint,bigint)": _definer(
            "livesettings_prune(p_applied_before_ms bigint, p_tokens_expired_before bigint)",
            "void",
            "DELETE FROM public.applied_mutations a WHERE a.created_at_ms < LEAST("
            f"p_applied_before_ms, {_NOW_MS} - {PRUNE_FLOOR_MS});"
            " DELETE FROM public.refresh_tokens t WHERE t.expires_at < LEAST("
            f"p_tokens_expired_before, ({_NOW_MS} - {PRUNE_FLOOR_MS}) / 1000);",
        ),
        # Key rotation: the data keys still wrapped by another master key, and the counts.
        "livesettings_wrapped_keys_not_under(text,integer)": _definer(
            "livesettings_wrapped_keys_not_under(p_master_key_id text, p_limit integer)",
            "TABLE (user_id text, key_id text, master_key_id text, blob text)",
            "RETURN QUERY SELECT k.user_id, k.key_id, k.master_key_id, k.blob "
            "FROM public.data_keys k WHERE k.master_key_id <> p_master_key_id "
            'ORDER BY k.user_id COLLATE "C" LIMIT p_limit;',
        ),
        # Data-key rotation walks the users that have a data key, page by page.
        "livesettings_data_key_users_after(text,integer)": _definer(
            "livesettings_data_key_users_after(p_after text, p_limit integer)",
            "SETOF text",
            "RETURN QUERY SELECT k.user_id FROM public.data_keys k "
            'WHERE k.user_id COLLATE "C" > p_after COLLATE "C" '
            'ORDER BY k.user_id COLLATE "C" LIMIT p_limit;',
        ),
        "livesettings_count_wrapped_keys()": _definer(
            "livesettings_count_wrapped_keys()",
            "TABLE (master_key_id text, n bigint)",
            "RETURN QUERY SELECT k.master_key_id, count(*) FROM public.data_keys k "
            'GROUP BY k.master_key_id ORDER BY k.master_key_id COLLATE "C";',
        ),
        # Export lists the users page by page; each user is then read under its own RLS.
        "livesettings_user_ids_after(text,integer)": _definer(
            "livesettings_user_ids_after(p_after text, p_limit integer)",
            "SETOF text",
            "RETURN QUERY SELECT ids.id FROM ("
            "SELECT u.user_id AS id FROM public.users u "
            f"UNION SELECT {user_id_text} FROM public.user_preferences p "
            "WHERE p.user_id IS NOT NULL "
            "UNION SELECT k.user_id FROM public.data_keys k) AS ids "
            'WHERE ids.id COLLATE "C" > p_after COLLATE "C" '
            'ORDER BY ids.id COLLATE "C" LIMIT p_limit;',
        ),
        # Teams (DESIGN §11). How many teams a user belongs to, for the limit on adding them.
        "livesettings_team_count(text)": _definer(
            "livesettings_team_count(p_user_id text)",
            "SETOF bigint",
            "RETURN QUERY SELECT count(*)::bigint FROM public.team_members m "
            "WHERE m.user_id = p_user_id;",
        ),
        # `livesettings team list` (operators): every team and how many members it has.
        "livesettings_list_teams()": _definer(
            "livesettings_list_teams()",
            "TABLE (team_id text, name text, created_at timestamptz, members bigint)",
            "RETURN QUERY SELECT t.team_id, t.name, t.created_at, "
            "(SELECT count(*) FROM public.team_members m WHERE m.team_id = t.team_id) "
            'FROM public.teams t ORDER BY t.name COLLATE "C", t.team_id COLLATE "C";',
        ),
        # The usernames of a team's members, for a member of that team (or the team's own
        # context): the users table shows the app role its own row only.
        "livesettings_team_usernames(text)": _definer(
            "livesettings_team_usernames(p_team_id text)",
            "TABLE (user_id text, username text)",
            "RETURN QUERY SELECT u.user_id, u.username FROM public.team_members m "
            "JOIN public.users u ON u.user_id = m.user_id WHERE m.team_id = p_team_id "
            f"AND ({_CURRENT} = 'team:' || p_team_id OR EXISTS (SELECT 1 FROM "
            "public.team_members me WHERE me.team_id = p_team_id "
            f"AND me.user_id = {_CURRENT}));",
        ),
        # Writes made in SQL (pg_triggers): a server claims up to p_limit queued rows — only
        # of users with no live claim, so one user's rows are applied in order by one node —
        # for SQL_WRITE_LEASE_S; a row whose lease ran out (its node died) is claimed again.
        # The advisory lock serialises claims, so two nodes never take the same user.
        "livesettings_claim_sql_writes(integer)": _definer(
            "livesettings_claim_sql_writes(p_limit integer)",
            "TABLE (id bigint, user_id text, base_revision bigint, patch text, "
            "edited_at bigint, written_by text)",
            f"PERFORM pg_catalog.pg_advisory_xact_lock({LOCK_CLASS}, {_QUEUE_LOCK}); "
            "RETURN QUERY WITH picked AS (SELECT w.id AS pick FROM public.sql_writes w "
            "WHERE (w.claimed_until IS NULL OR w.claimed_until < pg_catalog.clock_timestamp()) "
            "AND NOT EXISTS (SELECT 1 FROM public.sql_writes o WHERE o.user_id = w.user_id "
            "AND o.claimed_until >= pg_catalog.clock_timestamp()) "
            "ORDER BY w.id LIMIT p_limit), claimed AS (UPDATE public.sql_writes w "
            f"SET claimed_until = pg_catalog.clock_timestamp() + interval '{SQL_WRITE_LEASE_S} s' "
            "FROM picked WHERE w.id = picked.pick RETURNING w.id AS c_id, w.user_id AS c_user, "
            "w.base_revision AS c_base, w.patch::text AS c_patch, w.edited_at AS c_at, "
            "w.written_by AS c_by) "
            "SELECT c.c_id, c.c_user, c.c_base, c.c_patch, c.c_at, c.c_by FROM claimed c "
            "ORDER BY c.c_id;",
        ),
        # Applied (or refused) rows leave the queue.
        "livesettings_finish_sql_writes(bigint[])": _definer(
            "livesettings_finish_sql_writes(p_ids bigint[])",
            "void",
            "DELETE FROM public.sql_writes w WHERE w.id = ANY (p_ids);",
        ),
        # `verify`: how many rows wait, and for how long the oldest has.
        "livesettings_sql_write_status()": _definer(
            "livesettings_sql_write_status()",
            "TABLE (pending bigint, oldest_age_ms bigint)",
            f"RETURN QUERY SELECT count(*)::bigint, {_NOW_MS} - min(w.edited_at) "
            "FROM public.sql_writes w;",
        ),
        # The admin dashboard (operators' `user admin`, the /v1/admin routes). The flag is
        # granted only here, to a built-in user; True when it changed.
        "livesettings_set_admin(text,boolean)": _definer(
            "livesettings_set_admin(p_user_id text, p_on boolean)",
            "SETOF boolean",
            "IF p_on THEN RETURN QUERY WITH done AS (INSERT INTO public.admins "
            "(user_id, granted_at) SELECT u.user_id, pg_catalog.clock_timestamp() "
            "FROM public.users u WHERE u.user_id = p_user_id "
            "ON CONFLICT (user_id) DO NOTHING RETURNING 1) SELECT count(*) > 0 FROM done; "
            "ELSE RETURN QUERY WITH done AS (DELETE FROM public.admins a "
            "WHERE a.user_id = p_user_id RETURNING 1) SELECT count(*) > 0 FROM done; END IF;",
        ),
        "livesettings_admin_ids()": _definer(
            "livesettings_admin_ids()",
            "SETOF text",
            "RETURN QUERY SELECT a.user_id FROM public.admins a;",
        ),
        # Search users by username (contains, any case) or id (prefix): built-in accounts and
        # users known only by a document; never a hash or a key; at most p_limit rows.
        "livesettings_search_users(text,integer)": _definer(
            "livesettings_search_users(p_q text, p_limit integer)",
            "TABLE (user_id text, username text, created_at timestamptz, admin boolean, "
            "revision bigint, updated_at timestamptz, teams bigint)",
            "RETURN QUERY WITH ids AS (SELECT u.user_id AS id FROM public.users u "
            f"WHERE p_q = '' OR pg_catalog.lower(u.username) LIKE {_CONTAINS} "
            "OR pg_catalog.left(u.user_id, pg_catalog.length(p_q)) = p_q "
            f"UNION SELECT {user_id_text} FROM public.user_preferences p "
            f"WHERE p.user_id IS NOT NULL AND pg_catalog.left({user_id_text}, 5) <> 'team:' "
            f"AND (p_q = '' OR pg_catalog.left({user_id_text}, pg_catalog.length(p_q)) = p_q)) "
            "SELECT ids.id, u.username, COALESCE(u.created_at, p.created_at::timestamptz), "
            "EXISTS (SELECT 1 FROM public.admins a WHERE a.user_id = ids.id), "
            "COALESCE(p.revision, 0)::bigint, p.updated_at::timestamptz, "
            "(SELECT count(*) FROM public.team_members m WHERE m.user_id = ids.id) "
            "FROM ids LEFT JOIN public.users u ON u.user_id = ids.id "
            f"LEFT JOIN public.user_preferences p ON {user_id_text} = ids.id "
            'ORDER BY u.username IS NULL, u.username COLLATE "C", ids.id COLLATE "C" '
            "LIMIT p_limit;",
        ),
        "livesettings_search_teams(text,integer)": _definer(
            "livesettings_search_teams(p_q text, p_limit integer)",
            "TABLE (team_id text, name text, members bigint, revision bigint, "
            "created_at timestamptz)",
            "RETURN QUERY SELECT t.team_id, t.name, "
            "(SELECT count(*) FROM public.team_members m WHERE m.team_id = t.team_id), "
            "COALESCE((SELECT p.revision FROM public.user_preferences p "
            f"WHERE {user_id_text} = 'team:' || t.team_id), 0)::bigint, t.created_at "
            f"FROM public.teams t WHERE p_q = '' OR pg_catalog.lower(t.name) LIKE {_CONTAINS} "
            "OR pg_catalog.left(t.team_id, pg_catalog.length(p_q)) = p_q "
            'ORDER BY t.name COLLATE "C", t.team_id COLLATE "C" LIMIT p_limit;',
        ),
        # Row-level security by membership: whether the current user belongs to the team
        # whose document key is given. Plain SQL as the owner, whose own policy on
        # team_members shows it the current user's memberships only.
        "livesettings_member_of(text)": MEMBER_OF_FUNCTION,
    }


DEFINER_FUNCTIONS: Final = tuple(_definer_functions("p.user_id"))
"""The signatures of the SECURITY DEFINER functions (``verify`` checks each of them)."""

# Not SECURITY DEFINER: it runs as the app role and only takes advisory locks, in the order
# given, so that two group commits touching the same users never deadlock.
_LOCK_FUNCTION: Final = f"""
    CREATE OR REPLACE FUNCTION public.livesettings_lock_users(p_keys integer[])
    RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    DECLARE k integer;
    BEGIN
        FOREACH k IN ARRAY p_keys LOOP
            PERFORM pg_advisory_xact_lock({LOCK_CLASS}, k);
        END LOOP;
    END
    $$"""
LOCK_SIGNATURE: Final = "livesettings_lock_users(integer[])"
"""The signature of the lock helper (granted to the app role beside the definer functions)."""


async def ensure_functions(conn: asyncpg.Connection, columns: Columns) -> list[str]:
    """Create or replace every function, revoked from PUBLIC; reported when new."""
    import asyncpg  # the driver only when PostgreSQL is used

    lines: list[str] = []
    existing = {
        row["sig"]
        for row in await conn.fetch(
            "SELECT p.proname || '(' || "
            "pg_catalog.replace(pg_catalog.oidvectortypes(p.proargtypes), ', ', ',') || ')' AS sig "
            "FROM pg_catalog.pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'livesettings\\_%'"
        )
    }
    functions = {**_definer_functions(columns.user_id_text("p")), LOCK_SIGNATURE: _LOCK_FUNCTION}
    for signature, ddl in functions.items():
        # Replaced every time (an upgrade may change a body); reported only when new.
        try:
            async with conn.transaction():  # a savepoint
                await conn.execute(ddl)
        except asyncpg.InvalidFunctionDefinitionError:
            # An upgrade changed what it returns, which CREATE OR REPLACE cannot: drop it
            # (its grants are given again below and by pg_policies.grant_app_role).
            await conn.execute(f"DROP FUNCTION public.{signature}")
            await conn.execute(ddl)
            lines.append(f"replaced function {signature.partition('(')[0]}")
        await conn.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
        if signature not in existing:
            lines.append(f"created function {signature.partition('(')[0]}")
    return lines
