"""Writes made in SQL to ``user_preferences``: the triggers that queue them for the server.

The merge rule lives in Python only, so the database never applies such a write itself. A
``BEFORE`` row trigger on ``public.user_preferences`` turns an ``UPDATE``, ``INSERT`` or
``DELETE`` made by anyone but livesettings into one row of ``public.sql_writes`` — the RFC 7386
merge patch it meant, the revision it saw, its transaction's time — and a ``NOTIFY`` on
:data:`SQL_WRITES_CHANNEL`. A server then applies the row through its one write path, as a
mutation by client ``sql`` (:mod:`livesettings.server.sql_writes`)::

    UPDATE   patch = diff(OLD, NEW) of the five fields; the row stays as it was (RETURN OLD)
    INSERT   patch = the non-NULL fields against the existing row (none: the defaults); the
             insert is skipped (RETURN NULL), so an ``INSERT … ON CONFLICT DO UPDATE`` upsert
             never reaches its conflict path. A NULL column in an INSERT means "not given".
    DELETE   patch = every field reset to its default; the row, change log and revisions stay

The row changes only once a server applied the write (milliseconds after ``COMMIT``), so a
statement reads the row as the server last wrote it, and its patch is what the statement
changed from there: two quick ``UPDATE``s of different keys both land, as two revisions.

The server's own writes pass through untouched: a session whose ``application_name`` starts
with ``livesettings`` (every livesettings connection sets it, release 0.1.0 included) *and*
whose login role holds ``UPDATE`` on ``revision`` (the app role, the owner — never a
``--sql-writer`` role, which cannot step around the queue by naming itself livesettings). An
``UPDATE`` that changes none of the five fields passes through as well.

Refused in the statement itself, with an SQL error: an API key set in SQL (the master key is
not in the database, so nothing there can seal it; removing a key is allowed), a theme other
than light/dark/system, a language over 35 characters, an object field that is not an object,
a changed ``user_id``, and an INSERT for a user the session's ``livesettings.user_id`` does
not name (row-level security would check it, but a skipped insert is never checked).

:func:`ensure_triggers` (re)makes the functions and the trigger on every ``setup``; the queue's
claim, finish and status functions are :mod:`.pg_functions`' SECURITY DEFINER ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..document import FIELDS
from .pg_tables import SCOPE_SETTING, USER_SETTING, Columns

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "SQL_WRITES_CHANNEL",
    "TRIGGER_FUNCTIONS",
    "TRIGGER_NAME",
    "SqlWrite",
    "SqlWriteStatus",
    "ensure_triggers",
    "read_sql_write_status",
    "sql_write_from_row",
    "sql_write_status",
]

SQL_WRITES_CHANNEL: Final = "livesettings_sql_writes"
"""The channel a queued SQL write is notified on (empty payload: "look at the queue")."""

TRIGGER_NAME: Final = "livesettings_sql_writes"
"""The trigger on ``public.user_preferences``."""

TRIGGER_FUNCTIONS: Final = ("livesettings_json_patch(jsonb,jsonb)", "livesettings_sql_write()")
"""The functions the trigger uses (revoked from PUBLIC; no role needs EXECUTE on them)."""

_OBJECT_FIELDS: Final = ("preferences", "ai_providers", "api_keys")
_MAX_LANGUAGE: Final = 35
_API_KEY_HINT: Final = (
    "set API keys with PATCH /v1/users/{user_id}/settings and a service token, or the user's "
    "own PATCH /v1/settings; removing a key in SQL (NULL, or api_keys - 'name') is allowed"
)


@dataclass(frozen=True, slots=True)
class SqlWrite:
    """One queued write made in SQL, as a server claimed it."""

    id: int
    user_id: str
    base_revision: int
    patch: str
    """The merge patch as JSON text (checked by the server like any client's patch)."""
    edited_at: int
    """The writing transaction's time, in ms."""
    written_by: str
    """The login role that wrote it."""


@dataclass(frozen=True, slots=True)
class SqlWriteStatus:
    """The queue of writes made in SQL, for ``verify``."""

    pending: int
    """Rows not yet applied (claimed ones included)."""
    oldest_age_s: float | None
    """Seconds since the oldest pending row was written (None: the queue is empty)."""
    trigger_present: bool
    """Whether the trigger exists on ``user_preferences`` and is enabled."""


def sql_write_from_row(row: Any) -> SqlWrite:
    return SqlWrite(
        int(row["id"]),
        str(row["user_id"]),
        int(row["base_revision"]),
        str(row["patch"]),
        int(row["edited_at"]),
        str(row["written_by"]),
    )


def _as_jsonb(ref: str, sql_type: str) -> str:
    """A JSON column of a seed table (jsonb, json or text) as jsonb."""
    if sql_type == "jsonb":
        return ref
    if sql_type == "json":
        return f"{ref}::jsonb"
    return f"{ref}::text::jsonb"


def _document(row: str, columns: Columns) -> str:
    """The five fields of ``row`` as one jsonb object; a NULL column is a JSON null."""
    parts = [
        f"'{name}', "
        + (
            f"{row}.{name}::text"
            if name not in _OBJECT_FIELDS
            else _as_jsonb(f"{row}.{name}", columns.type_of(name))
        )
        for name in FIELDS
    ]
    return f"pg_catalog.jsonb_build_object({', '.join(parts)})"


_NULL_DOCUMENT: Final = "'{" + ",".join(f'"{name}":null' for name in FIELDS) + "}'::jsonb"

# RFC 7386 from one object to another: a removed key → null, an added or changed value → the
# new value, objects on both sides recursed. JSON nulls in either are "absent".
_JSON_PATCH: Final = """
    CREATE OR REPLACE FUNCTION public.livesettings_json_patch(p_old jsonb, p_new jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        result jsonb := '{}';
        k text;
        v jsonb;
        o jsonb;
        d jsonb;
    BEGIN
        FOR k IN SELECT e.key FROM pg_catalog.jsonb_each(p_old) e
                 WHERE pg_catalog.jsonb_typeof(e.value) <> 'null'
                 AND pg_catalog.jsonb_typeof(COALESCE(p_new -> e.key, 'null')) = 'null' LOOP
            result := result || pg_catalog.jsonb_build_object(k, NULL::jsonb);
        END LOOP;
        FOR k, v IN SELECT e.key, e.value FROM pg_catalog.jsonb_each(p_new) e
                    WHERE pg_catalog.jsonb_typeof(e.value) <> 'null' LOOP
            o := p_old -> k;
            IF pg_catalog.jsonb_typeof(o) = 'object' AND pg_catalog.jsonb_typeof(v) = 'object' THEN
                d := public.livesettings_json_patch(o, v);
                IF d <> '{}' THEN
                    result := result || pg_catalog.jsonb_build_object(k, d);
                END IF;
            ELSIF o IS NULL OR o <> v THEN
                result := result || pg_catalog.jsonb_build_object(k, v);
            END IF;
        END LOOP;
        RETURN result;
    END
    $$"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _trigger_function(columns: Columns) -> str:
    """The trigger function, shaped by the column types of ``user_preferences``."""
    uid_type = columns.user_id_type
    set_scope = f"PERFORM pg_catalog.set_config('{SCOPE_SETTING}', 'all', true);"
    restore = f"PERFORM pg_catalog.set_config('{SCOPE_SETTING}', COALESCE(previous, ''), true);"
    current = f"NULLIF(pg_catalog.current_setting('{USER_SETTING}', true), '')"
    objects = "ARRAY[" + ", ".join(f"'{name}'" for name in _OBJECT_FIELDS) + "]"
    api_key_error = _literal(
        "livesettings: API keys cannot be written in SQL (the master key is not in the database)"
    )
    return f"""
    CREATE OR REPLACE FUNCTION public.livesettings_sql_write()
    RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        previous text := pg_catalog.current_setting('{SCOPE_SETTING}', true);
        v_user text;
        v_base bigint;
        v_old jsonb;
        v_new jsonb;
        v_patch jsonb := '{{}}';
        v_diff jsonb;
        f text;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            -- Deleting a document in SQL resets it; its revisions and change log stay.
            v_user := OLD.user_id::text;
            v_base := OLD.revision;
            v_patch := {_NULL_DOCUMENT};
        ELSE
            v_new := {_document("NEW", columns)};
            IF TG_OP = 'UPDATE' THEN
                IF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
                    RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                        MESSAGE = 'livesettings: a document''s user_id cannot be changed in SQL';
                END IF;
                v_user := OLD.user_id::text;
                v_base := OLD.revision;
                v_old := {_document("OLD", columns)};
            ELSE
                v_user := NEW.user_id::text;
                IF v_user IS NULL OR v_user = '' THEN
                    RAISE EXCEPTION USING ERRCODE = 'not_null_violation',
                        MESSAGE = 'livesettings: an INSERT into user_preferences needs a user_id';
                END IF;
                -- Row-level security checks a skipped insert for nobody: check its policy
                -- here (the owner and superusers, whom it does not confine, excepted).
                IF NOT (v_user = {current}
                        OR public.livesettings_member_of(v_user)
                        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
                                   WHERE r.rolname = session_user
                                   AND c.oid = 'public.user_preferences'::regclass
                                   AND (r.rolsuper
                                        OR pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER'))))
                THEN
                    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                        MESSAGE = 'livesettings: new row violates row-level security policy '
                            'for table "user_preferences"',
                        HINT = 'name the user first: SELECT set_config('
                            '''livesettings.user_id'', <user id>, true)';
                END IF;
                {set_scope}
                SELECT {_document("p", columns)}, p.revision INTO v_old, v_base
                FROM public.user_preferences p WHERE p.user_id = v_user::{uid_type};
                {restore}
                v_base := COALESCE(v_base, 0);
                v_old := COALESCE(v_old, {_NULL_DOCUMENT});
                -- A NULL column in an INSERT is "not given": it keeps the stored value.
                SELECT v_old || COALESCE(pg_catalog.jsonb_object_agg(e.key, e.value), '{{}}')
                INTO v_new FROM pg_catalog.jsonb_each(v_new) e
                WHERE pg_catalog.jsonb_typeof(e.value) <> 'null';
            END IF;
            FOREACH f IN ARRAY ARRAY['theme', 'language'] LOOP
                IF (v_old -> f) IS DISTINCT FROM (v_new -> f) THEN
                    v_patch := v_patch || pg_catalog.jsonb_build_object(f, v_new -> f);
                END IF;
            END LOOP;
            FOREACH f IN ARRAY {objects} LOOP
                IF pg_catalog.jsonb_typeof(v_new -> f) = 'null' THEN
                    IF pg_catalog.jsonb_typeof(v_old -> f) <> 'null' THEN
                        v_patch := v_patch || pg_catalog.jsonb_build_object(f, NULL::jsonb);
                    END IF;
                ELSIF pg_catalog.jsonb_typeof(v_new -> f) <> 'object' THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                        MESSAGE = pg_catalog.format('livesettings: %s must be a JSON object '
                            '(or NULL for the default), got %s', f,
                            pg_catalog.jsonb_typeof(v_new -> f));
                ELSE
                    v_diff := public.livesettings_json_patch(
                        CASE WHEN pg_catalog.jsonb_typeof(v_old -> f) = 'object'
                             THEN v_old -> f ELSE '{{}}' END,
                        v_new -> f);
                    IF v_diff <> '{{}}' THEN
                        v_patch := v_patch || pg_catalog.jsonb_build_object(f, v_diff);
                    END IF;
                END IF;
            END LOOP;
            IF v_patch = '{{}}' THEN
                -- Nothing of the document changed (an updated_at touched, a row rewritten).
                IF TG_OP = 'UPDATE' THEN
                    RETURN NEW;
                END IF;
                RETURN NULL;
            END IF;
            IF pg_catalog.jsonb_typeof(v_patch -> 'theme') = 'string'
               AND NOT (v_patch ->> 'theme') IN ('light', 'dark', 'system') THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('livesettings: theme must be light, dark or '
                        'system (or NULL for the default), got %L', v_patch ->> 'theme');
            END IF;
            IF pg_catalog.length(v_patch ->> 'language') > {_MAX_LANGUAGE} THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('livesettings: language must be a BCP 47 tag of '
                        'at most {_MAX_LANGUAGE} characters, got %s characters',
                        pg_catalog.length(v_patch ->> 'language'));
            END IF;
            IF pg_catalog.jsonb_typeof(v_patch -> 'api_keys') = 'object' AND EXISTS (
                SELECT 1 FROM pg_catalog.jsonb_each(v_patch -> 'api_keys') e
                WHERE pg_catalog.jsonb_typeof(e.value) <> 'null') THEN
                RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                    MESSAGE = {api_key_error},
                    HINT = {_literal(_API_KEY_HINT)};
            END IF;
        END IF;
        {set_scope}
        INSERT INTO public.sql_writes (user_id, base_revision, patch, edited_at, written_by)
        VALUES (v_user, v_base, v_patch,
                (pg_catalog.date_part('epoch', pg_catalog.now()) * 1000)::bigint, session_user);
        {restore}
        PERFORM pg_catalog.pg_notify('{SQL_WRITES_CHANNEL}', '');
        IF TG_OP = 'UPDATE' THEN
            RETURN OLD;  -- the server applies the write; the row changes then
        END IF;
        RETURN NULL;
    END
    $$"""


# Fired for everyone but the server: a livesettings session (application_name) whose login
# role may write revision itself. Evaluated without entering PL/pgSQL, so the server's own
# writes cost two built-in calls.
_TRIGGER: Final = f"""
    CREATE TRIGGER {TRIGGER_NAME}
    BEFORE INSERT OR UPDATE OR DELETE ON public.user_preferences
    FOR EACH ROW
    WHEN (pg_catalog.current_setting('application_name') NOT LIKE 'livesettings%'
          OR NOT pg_catalog.has_column_privilege(
              session_user, 'public.user_preferences'::regclass, 'revision', 'UPDATE'))
    EXECUTE FUNCTION public.livesettings_sql_write()"""


async def ensure_triggers(conn: asyncpg.Connection, columns: Columns) -> list[str]:
    """(Re)make the trigger's functions and the trigger; reported when new."""
    existed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t "
        "WHERE t.tgrelid = 'public.user_preferences'::regclass AND t.tgname = $1)",
        TRIGGER_NAME,
    )
    await conn.execute(_JSON_PATCH)
    await conn.execute(_trigger_function(columns))
    for signature in TRIGGER_FUNCTIONS:
        await conn.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
    # Remade every time: an upgrade may change its condition (the function bodies above are
    # replaced in place).
    await conn.execute(f"DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON public.user_preferences")
    await conn.execute(_TRIGGER)
    if existed:
        return []
    return [f"created trigger {TRIGGER_NAME} on user_preferences (writes made in SQL are pushed)"]


async def read_sql_write_status(conn: asyncpg.Connection) -> SqlWriteStatus:
    """The queue through its status function, and whether the trigger is in place."""
    row = await conn.fetchrow("SELECT * FROM public.livesettings_sql_write_status()")
    present = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t "
        "WHERE t.tgrelid = pg_catalog.to_regclass('public.user_preferences') "
        "AND t.tgname = $1 AND t.tgenabled <> 'D')",
        TRIGGER_NAME,
    )
    age = row["oldest_age_ms"]
    return SqlWriteStatus(
        int(row["pending"]), None if age is None else max(0.0, age / 1000), bool(present)
    )


async def sql_write_status(store: object) -> SqlWriteStatus | None:
    """The queue of SQL writes (pending rows, the oldest one's age) and whether the trigger is
    in place, of an opened store; None for a store without them (SQLite). For ``verify``."""
    read = getattr(store, "sql_write_status", None)
    if read is None:
        return None
    status: SqlWriteStatus = await read()
    return status
