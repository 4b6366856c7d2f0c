"""The PostgreSQL backend (asyncpg): a connection pool, row-level security, one NOTIFY per commit.

``serve`` connects as the app role (``LIVESETTINGS_DATABASE_URL``); ``setup`` as the owner
(``admin_url``, ``LIVESETTINGS_ADMIN_DATABASE_URL``), see
:mod:`livesettings.store.postgres_schema`. Every per-user statement runs in a transaction that
first calls ``set_config('livesettings.user_id', <user>, true)``, so the policies — not this
code — keep one user from another's rows; in a group commit it is set again for each mutation,
inside that mutation's savepoint. Work that crosses users calls the ``livesettings_*``
SECURITY DEFINER functions.

Group commit: one transaction per batch. It takes the batch's per-user advisory locks in one
fixed order (so commits from several nodes neither interleave on a user nor deadlock), applies
each mutation in a savepoint, and before ``COMMIT`` sends one ``pg_notify`` on
:data:`NOTIFY_CHANNEL` carrying every ``[user_id, revision]`` it created (split only if that
list would pass :data:`NOTIFY_PAYLOAD_LIMIT` bytes). PostgreSQL delivers it only if the
transaction commits. The bus parses it with :func:`parse_notify_payload`, then reads the
change rows per user through :meth:`PostgresStore.changes_since` (under that user's RLS).

Merge semantics are not decided here: :func:`~livesettings.store.planning.plan_mutation` is.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import asyncpg

from ..crypto import (
    DataKey,
    Keyring,
    WrappedKey,
    new_data_key,
    reseal_under_new_key,
    seal_secret,
    unwrap_data_key,
    wrap_data_key,
)
from ..document import Limits, PreferencesSchema, rfc3339
from ..errors import (
    ConfigError,
    Conflict,
    LiveSettingsError,
    NotFound,
    StorageError,
    ValidationError,
)
from .base import (
    SCHEMA_VERSION,
    ChangeRow,
    ChangesPage,
    CommitOutcome,
    ExportedUser,
    PendingMutation,
    RefreshResult,
    StoredDocument,
    UserRow,
)
from .codec import (
    DOCUMENT_COLUMNS,
    applied_from_row,
    change_from_row,
    change_to_columns,
    document_from_row,
    document_to_columns,
    dumps,
    loads,
    wrapped_key_from_row,
)
from .idempotency import BodyHasher
from .planning import Plan, Sealer, has_secrets, plan_mutation
from .postgres_schema import (
    DEFINER_FUNCTIONS,
    TABLES,
    USER_SETTING,
    Columns,
    inspect_columns,
    is_canonical_uuid,
    quote_ident,
    read_schema_version,
    risky_memberships,
    setup_schema,
)

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "PostgresStore",
    "notify_payloads",
    "parse_notify_payload",
]

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL: Final = "livesettings"
"""The channel of the one notification per committed group commit."""

NOTIFY_PAYLOAD_LIMIT: Final = 7000
"""Bytes per NOTIFY payload, well under PostgreSQL's 8,000."""

_APPLIED_RETAIN_MS: Final = 7 * 24 * 3600 * 1000  # DESIGN §3: mutation ids kept ≥ 7 days
_PRUNE_EVERY_MS: Final = 3600 * 1000
_KEY_CACHE_SIZE: Final = 4096
_EXPORT_PAGE: Final = 200
_SETUP_TIMEOUT_S: Final = 600.0
_SCRUB_LOCK_TIMEOUT: Final = "5s"
_PROBE_CHANNEL: Final = "livesettings_probe"
_MAX_USER_ID: Final = 1000  # characters; DESIGN §2 promises ≤ 128, this only guards NOTIFY

_SERVER_SETTINGS: Final = {
    "synchronous_commit": "on",  # an ack waits for the WAL flush (DESIGN §3)
    "standard_conforming_strings": "on",  # _literal() relies on it
    "application_name": "livesettings",
}

_DOC_READ: Final = (
    "d.theme, d.language, d.preferences, d.ai_providers, d.api_keys, d.revision, d.leaf_meta, "
    "d.created_at, d.updated_at, d.revision IS NOT NULL AS has_doc"
)
_CHANGE_COLUMNS: Final = (
    "user_id",
    "revision",
    "patch",
    "mutation_id",
    "client_id",
    "committed_at",
    "conflicts",
    "inverse",
)
_USER_READ: Final = "user_id, username, password_hash, created_at"

# Driver errors that mean the server or the connection is gone (or never came).
_CONNECTION_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,  # e.g. a backend terminated while the connection was idle
)
_DRIVER_ERRORS: Final = (asyncpg.PostgresError, *_CONNECTION_ERRORS, TimeoutError)


def notify_payloads(
    pairs: Sequence[tuple[str, int]], limit: int = NOTIFY_PAYLOAD_LIMIT
) -> list[str]:
    """``[[user_id, revision], …]`` as JSON, in as few payloads of ≤ ``limit`` bytes as fit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 2
    for user_id, revision in pairs:
        # ASCII-only JSON: the byte length is the string length.
        entry = json.dumps([user_id, revision], separators=(",", ":"))
        if current and size + 1 + len(entry) > limit:
            payloads.append("[" + ",".join(current) + "]")
            current, size = [], 2
        size += len(entry) + (1 if current else 0)
        current.append(entry)
    if current:
        payloads.append("[" + ",".join(current) + "]")
    return payloads


def parse_notify_payload(payload: str) -> list[tuple[str, int]]:
    """The ``(user_id, revision)`` pairs of one notification; ``ValueError`` if malformed."""
    data = json.loads(payload)
    if not isinstance(data, list):
        raise ValueError("a livesettings notification is a JSON list")
    pairs: list[tuple[str, int]] = []
    for item in data:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], int)
            or isinstance(item[1], bool)
        ):
            raise ValueError("a livesettings notification holds [user_id, revision] pairs")
        pairs.append((item[0], item[1]))
    return pairs


class _Statements:
    """SQL that depends on the ``user_preferences`` column types (a seed's may differ)."""

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.uuid_ids = columns.user_id_is_uuid
        uid_type = columns.user_id_type
        # $2 is the document key: the user id, or NULL when it cannot be one (not a UUID in a
        # uuid column), so such a user simply has no row.
        self.load = (
            f"SELECT {_DOC_READ}, a.body_hash AS a_body_hash, a.revision AS a_revision, "
            "a.conflicts AS a_conflicts FROM (SELECT 1) AS one "
            f"LEFT JOIN public.user_preferences d ON d.user_id = $2::text::{uid_type} "
            "LEFT JOIN public.applied_mutations a ON a.user_id = $1 AND a.mutation_id = $3"
        )
        self.doc_select = (
            f"SELECT {_DOC_READ} FROM public.user_preferences d "
            f"WHERE d.user_id = $1::text::{uid_type}"
        )
        self.revision = (
            f"SELECT revision FROM public.user_preferences WHERE user_id = $1::text::{uid_type}"
        )
        self.delete_doc = (
            f"DELETE FROM public.user_preferences WHERE user_id = $1::text::{uid_type}"
        )
        types = {name: columns.type_of(name) for name in DOCUMENT_COLUMNS}
        types["revision"] = "bigint"
        types["leaf_meta"] = "jsonb"
        values = ", ".join(
            f"${n}::bigint" if name == "revision" else f"${n}::text::{types[name]}"
            for n, name in enumerate(DOCUMENT_COLUMNS, start=2)
        )
        updates = ", ".join(
            # A row adopted from the seed keeps its own creation time.
            "created_at = COALESCE(user_preferences.created_at, excluded.created_at)"
            if name == "created_at"
            else f"{name} = excluded.{name}"
            for name in DOCUMENT_COLUMNS
        )
        self.upsert = (
            f"INSERT INTO public.user_preferences (user_id, {', '.join(DOCUMENT_COLUMNS)}) "
            f"VALUES ($1::text::{uid_type}, {values}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}"
        )
        # $1 user id, $2.. the document columns, then the change row's columns (its user id
        # is $1 again), then the remembered mutation's.
        first = len(DOCUMENT_COLUMNS) + 2
        change_values = ", ".join(
            [
                "$1",
                *(
                    f"${n}::text::jsonb" if name in ("patch", "conflicts", "inverse") else f"${n}"
                    for n, name in enumerate(_CHANGE_COLUMNS[1:], start=first)
                ),
            ]
        )
        n = first + len(_CHANGE_COLUMNS) - 1
        # One round trip writes a winning mutation: its document, change row and mutation id.
        self.write = (
            f"WITH doc AS ({self.upsert}), "
            f"change AS (INSERT INTO public.settings_changes ({', '.join(_CHANGE_COLUMNS)}) "
            f"VALUES ({change_values})) "
            "INSERT INTO public.applied_mutations "
            "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
            f"VALUES ($1, ${n}, ${n + 1}, ${n + 2}, ${n + 3}::text::jsonb, ${n + 4})"
        )
        self.remember = (
            "INSERT INTO public.applied_mutations "
            "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
            "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)"
        )

    def doc_key(self, user_id: str) -> str | None:
        """The value compared with ``user_preferences.user_id``; None when no row can match."""
        if self.uuid_ids and not is_canonical_uuid(user_id):
            return None
        return user_id


class PostgresStore:
    """A :class:`~livesettings.store.base.Store` on PostgreSQL, confined by row-level security.

    ``url`` is what :meth:`open` connects as (the app role); ``admin_url`` what :meth:`setup`
    connects as (the owner; default ``url``); ``app_url`` names the login role setup creates
    (default ``url``). ``notify=False`` skips the NOTIFY (a Redis bus does not need it).
    """

    def __init__(
        self,
        url: str,
        *,
        keyring: Keyring | None = None,
        limits: Limits | None = None,
        schema: PreferencesSchema | None = None,
        changelog_retain: int = 1000,
        commit_delay_ms: int = 0,
        now_ms: Callable[[], int] | None = None,
        admin_url: str | None = None,
        app_url: str | None = None,
        pool_size: int = 10,
        command_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        notify: bool = True,
        **ignored: Any,  # options of other backends (``synchronous``)
    ) -> None:
        if changelog_retain < 1:
            raise ConfigError(f"CHANGELOG_RETAIN must be at least 1, got {changelog_retain}")
        if pool_size < 1:
            raise ConfigError(f"the pool size must be at least 1, got {pool_size}")
        self.url = url
        self.admin_url = admin_url or url
        self.app_url = app_url or url
        self.changelog_retain = changelog_retain
        self.pool_size = pool_size
        self.notify = notify
        self._keyring = keyring
        self._body_hasher = BodyHasher(keyring)
        self._limits = limits
        self._schema = schema
        self._commit_delay = commit_delay_ms / 1000
        self._now_ms = now_ms or _wall_ms
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._sql: _Statements | None = None
        self._waits = 0
        # Unwrapped data keys, by the wrapped form they came from (see SqliteStore).
        self._keys: OrderedDict[tuple[str, WrappedKey], DataKey] = OrderedDict()
        self._last_prune_ms = 0

    def __repr__(self) -> str:
        return f"PostgresStore({_redacted(self.url)!r})"

    # --- connections -----------------------------------------------------------------------

    async def _connect(
        self, url: str, *, command_timeout: float | None = None, purpose: str = ""
    ) -> Any:
        """One connection outside the pool (setup, probes); errors say what to fix."""
        settings = dict(_SERVER_SETTINGS)
        if purpose:  # so pg_stat_activity tells setup's owner connection from serve's
            settings["application_name"] = f"livesettings-{purpose}"
        try:
            return await asyncpg.connect(
                url,
                timeout=self._connect_timeout,
                command_timeout=command_timeout or self._command_timeout,
                server_settings=settings,
            )
        except Exception as exc:
            raise _connect_error(exc, url) from exc

    def _statements(self) -> tuple[Any, _Statements]:
        if self._pool is None or self._sql is None:
            raise StorageError("the PostgreSQL store is not open")
        return self._pool, self._sql

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; driver errors raised while it is held are translated."""
        pool, _ = self._statements()
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            self._waits += 1
        try:
            conn = await pool.acquire(timeout=self._command_timeout)
        except TimeoutError as exc:
            raise StorageError(
                f"no database connection was free within {self._command_timeout:g} s "
                f"(pool size {self.pool_size})"
            ) from exc
        except Exception as exc:
            raise _connect_error(exc, self.url) from exc
        broken = False
        try:
            yield conn
        except _DRIVER_ERRORS as exc:
            broken = isinstance(exc, _CONNECTION_ERRORS)
            raise _translate(exc, self._command_timeout) from exc
        finally:
            if broken:
                conn.terminate()  # the pool replaces it; a half-dead one must not go back
            try:
                await pool.release(conn)
            except _DRIVER_ERRORS:
                logger.warning("could not return a database connection to the pool")

    @asynccontextmanager
    async def _user_transaction(self, user_id: str, *, readonly: bool = True) -> AsyncIterator[Any]:
        async with self._connection() as conn, _as_user(conn, user_id, readonly=readonly):
            yield conn

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect the pool as the app role and check it: ``ConfigError`` for a superuser, a
        BYPASSRLS role, the tables' owner, a member (direct or not) of any of those, a missing
        or foreign schema version, or RLS off."""
        if self._pool is not None:
            return

        async def reset(conn: Any) -> None:
            # Sessions carry no state (the user is transaction-local), so a released
            # connection only needs a stray transaction rolled back — not asyncpg's RESET ALL
            # round trip on every release.
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")

        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings=_SERVER_SETTINGS,
                reset=reset,
            )
        except Exception as exc:
            raise _connect_error(exc, self.url) from exc
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                columns = await self._check(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._sql = _Statements(columns)

    async def _check(self, conn: Any) -> Columns:
        where = _where(self.url)
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
            version = await read_schema_version(conn)
            if version is None:
                raise ConfigError(
                    f"the database {where} has no livesettings schema; "
                    "run `livesettings setup` first"
                )
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the database {where} has schema version {version}, newer than this "
                    f"livesettings understands ({SCHEMA_VERSION}); upgrade livesettings"
                )
            if version < SCHEMA_VERSION:
                raise ConfigError(
                    f"the database {where} has schema version {version}; run "
                    f"`livesettings setup` to upgrade it to {SCHEMA_VERSION}"
                )
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
            raise _lacks_rights(exc) from exc
        except _DRIVER_ERRORS as exc:
            raise _translate(exc, self._command_timeout) from exc
        if columns is None:
            raise ConfigError(
                f"the database {where} has no user_preferences table; run `livesettings setup`"
            )
        return columns

    async def close(self) -> None:
        pool, self._pool, self._sql = self._pool, None, None
        self._keys.clear()
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._command_timeout)
        except (TimeoutError, *_DRIVER_ERRORS):
            pool.terminate()

    async def setup(self) -> list[str]:
        """Create or upgrade the schema as the owner (``admin_url``); adopt a seed table.

        When rows were rewritten (adopted, merged, secrets sealed), ``VACUUM FULL`` rewrites
        ``user_preferences`` afterwards, so no dead row version keeps an old plaintext value
        in the table's files (the WAL and backups keep theirs until they are recycled).
        """
        app_role, app_password = _role_of(self.app_url)
        conn = await self._connect(
            self.admin_url, command_timeout=_SETUP_TIMEOUT_S, purpose="setup"
        )
        try:
            async with conn.transaction():
                result = await setup_schema(
                    conn,
                    app_role=app_role,
                    app_password=app_password,
                    keyring=self._keyring,
                    now_ms=self._now_ms(),
                )
            lines = result.lines
            if result.rewrote_rows:
                lines.extend(await _scrub(conn))
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ConfigError(
                f"setup must run as the owner of the livesettings tables, with CREATEROLE to "
                f"create the app role (LIVESETTINGS_ADMIN_DATABASE_URL): {exc}"
            ) from exc
        except _DRIVER_ERRORS as exc:
            raise _translate(exc, _SETUP_TIMEOUT_S) from exc
        finally:
            await conn.close()
        return lines or [f"schema is up to date (version {SCHEMA_VERSION})"]

    async def schema_version(self) -> int | None:
        if self._pool is None:
            conn = await self._connect(self.url)
            try:
                return await read_schema_version(conn)
            except asyncpg.InsufficientPrivilegeError as exc:
                # A role without rights is a configuration to fix, as in open(): not an outage.
                raise _lacks_rights(exc) from exc
            except _DRIVER_ERRORS as exc:
                raise _translate(exc, self._command_timeout) from exc
            finally:
                await conn.close()
        async with self._connection() as conn:
            return await read_schema_version(conn)

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def info(self) -> dict[str, Any]:
        """Facts for ``verify`` / ``check-db`` / ``/metrics`` (see the module docstring)."""
        _, sql = self._statements()
        async with self._connection() as conn:
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
            "user_id_type": sql.columns.user_id_type,
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
            "notify_channel": NOTIFY_CHANNEL if self.notify else None,
            "pool": self.pool_stats(),
        }

    def pool_stats(self) -> dict[str, int]:
        """The pool without a query (for ``/metrics``): configured ``size``, ``open``
        connections, those ``in_use``, and ``waits`` — acquisitions that found none free."""
        pool = self._pool
        opened = 0 if pool is None else pool.get_size()
        idle = 0 if pool is None else pool.get_idle_size()
        return {
            "size": self.pool_size,
            "open": opened,
            "in_use": opened - idle,
            "waits": self._waits,
        }

    async def notify_round_trip(self, wait_s: float = 5.0) -> float:
        """Seconds for a NOTIFY to come back to a LISTEN on this database (``verify``); it
        uses its own probe channel so no bus hears it. ``StorageError`` when none arrives."""
        self._statements()
        token = os.urandom(8).hex()
        arrived = asyncio.get_running_loop().create_future()

        def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload == token and not arrived.done():
                arrived.set_result(time.monotonic())

        # A connection of its own: a LISTEN must not hold one of the pool's.
        listener = await self._connect(self.url, purpose="probe")
        try:
            await listener.add_listener(_PROBE_CHANNEL, heard)
            started = time.monotonic()
            async with self._connection() as sender:
                await sender.execute("SELECT pg_catalog.pg_notify($1, $2)", _PROBE_CHANNEL, token)
            try:
                done: float = await asyncio.wait_for(arrived, wait_s)
            except TimeoutError as exc:
                raise StorageError(f"a NOTIFY did not come back within {wait_s:g} s") from exc
            return done - started
        except _DRIVER_ERRORS as exc:
            raise _translate(exc, self._command_timeout) from exc
        finally:
            await listener.close()

    # --- documents and the change log ------------------------------------------------------

    async def get_document(self, user_id: str) -> StoredDocument:
        _, sql = self._statements()
        async with self._user_transaction(user_id) as conn:
            return await _load_document(conn, sql, user_id)

    async def commit(self, batch: Sequence[PendingMutation]) -> list[CommitOutcome]:
        """Apply every pending mutation in one transaction, each in its own savepoint; a
        failure of the transaction as a whole fails every outcome with ``StorageError``."""
        if not batch:
            return []
        pending = list(batch)
        now = self._now_ms()
        try:
            async with self._connection() as conn:
                outcomes, pruned = await self._commit_on(conn, pending, now)
        except (LiveSettingsError, *_DRIVER_ERRORS) as exc:
            logger.warning("group commit of %d mutation(s) failed: %s", len(pending), exc)
            return _all_failed(pending, exc)
        if pruned:
            self._last_prune_ms = now
        return outcomes

    async def _commit_on(
        self, conn: Any, batch: list[PendingMutation], now: int
    ) -> tuple[list[CommitOutcome], bool]:
        _, sql = self._statements()
        outcomes: list[CommitOutcome] = []
        docs: dict[str, StoredDocument] = {}  # later mutations of a user see earlier ones
        savepoint = _Savepoint(conn)
        async with conn.transaction():
            await conn.execute(
                "SELECT public.livesettings_lock_users($1::integer[])",
                sorted({_lock_key(p.user_id) for p in batch}),
            )
            for pending in batch:
                outcomes.append(await self._commit_one(conn, sql, savepoint, pending, docs, now))
            for user_id, doc in docs.items():
                cutoff = doc.revision - self.changelog_retain
                if cutoff >= 1:
                    await conn.execute(_set_user_sql(user_id))
                    await conn.execute(
                        "DELETE FROM public.settings_changes WHERE user_id = $1 AND revision <= $2",
                        user_id,
                        cutoff,
                    )
            pruned = now - self._last_prune_ms >= _PRUNE_EVERY_MS
            if pruned:
                await conn.execute(
                    "SELECT public.livesettings_prune($1, $2)",
                    now - _APPLIED_RETAIN_MS,
                    (now - _APPLIED_RETAIN_MS) // 1000,
                )
            if self.notify:
                created = [
                    (o.change.user_id, o.change.revision) for o in outcomes if o.change is not None
                ]
                for payload in notify_payloads(created):
                    await conn.execute(
                        "SELECT pg_catalog.pg_notify($1, $2)", NOTIFY_CHANNEL, payload
                    )
            if self._commit_delay:
                await asyncio.sleep(self._commit_delay)
        return outcomes, pruned

    async def _commit_one(
        self,
        conn: Any,
        sql: _Statements,
        savepoint: _Savepoint,
        pending: PendingMutation,
        docs: dict[str, StoredDocument],
        now: int,
    ) -> CommitOutcome:
        user_id = pending.user_id
        mutation_id = pending.mutation.mutation_id
        problem = _user_id_problem(user_id, uuid_column=sql.uuid_ids)
        if problem is not None:
            return CommitOutcome(user_id, mutation_id, 0, error=problem)
        await savepoint.begin(user_id)
        try:
            plan = await self._plan(conn, sql, pending, docs, now)
            if plan.outcome.error is None:
                await self._write_plan(conn, sql, plan, now)
        except (LiveSettingsError, asyncpg.PostgresError) as exc:
            # Rolling back to the savepoint raises if the connection is gone: then the
            # batch fails as one.
            await savepoint.rollback()
            return CommitOutcome(user_id, mutation_id, 0, error=_as_error(exc))
        if plan.outcome.error is not None:
            await savepoint.rollback()  # e.g. a data key made for a refused write
        if plan.document is not None:
            docs[user_id] = plan.document
        return plan.outcome

    async def _plan(
        self,
        conn: Any,
        sql: _Statements,
        pending: PendingMutation,
        docs: dict[str, StoredDocument],
        now: int,
    ) -> Plan:
        user_id = pending.user_id
        mutation_id = pending.mutation.mutation_id
        row = await conn.fetchrow(sql.load, user_id, sql.doc_key(user_id), mutation_id)
        doc = docs.get(user_id) or _document(user_id, row)
        prior = None
        if row["a_body_hash"] is not None:
            prior = applied_from_row(
                {
                    "mutation_id": mutation_id,
                    "body_hash": row["a_body_hash"],
                    "revision": row["a_revision"],
                    "conflicts": row["a_conflicts"],
                }
            )
        inverses: list[dict[str, Any]] = []
        oldest = 0
        target = pending.revert_to
        if prior is None and pending.kind == "revert" and target is not None:
            if 0 <= target <= doc.revision:
                inverses = [
                    loads(r["inverse"], "inverse patch")
                    for r in await conn.fetch(
                        "SELECT inverse FROM public.settings_changes "
                        "WHERE user_id = $1 AND revision > $2 ORDER BY revision DESC",
                        user_id,
                        target,
                    )
                ]
            oldest = await _oldest_known(conn, user_id, doc.revision)
        seal: Sealer | None = None
        if prior is None and has_secrets(pending):
            seal = _sealer(user_id, await self._data_key(conn, user_id), now)
        return plan_mutation(
            pending,
            doc,
            prior,
            now_ms=now,
            seal=seal,
            limits=self._limits,
            schema=self._schema,
            inverses=inverses,
            oldest_revertable=oldest,
            changelog_retain=self.changelog_retain,
            hasher=self._body_hasher,
        )

    async def _write_plan(self, conn: Any, sql: _Statements, plan: Plan, now: int) -> None:
        remember = plan.remember
        if remember is None:  # pragma: no cover - every plan that is not refused remembers
            return
        remembered = (
            remember.mutation_id,
            remember.body_hash,
            remember.revision,
            dumps(list(remember.conflicts)),
            now,
        )
        user_id = plan.outcome.user_id
        if plan.document is None or plan.change is None:
            await conn.execute(sql.remember, user_id, *remembered)
            return
        doc = document_to_columns(plan.document)
        change = change_to_columns(plan.change)
        await conn.execute(
            sql.write,
            user_id,
            *(_text_param(doc[name]) for name in DOCUMENT_COLUMNS),
            *(change[name] for name in _CHANGE_COLUMNS[1:]),
            *remembered,
        )

    async def _data_key(self, conn: Any, user_id: str) -> DataKey:
        """The user's data key, made (and stored wrapped) on the user's first secret."""
        if self._keyring is None:
            raise ConfigError("storing a secret needs a master key, and none is configured")
        row = await conn.fetchrow(
            "SELECT key_id, master_key_id, blob FROM public.data_keys WHERE user_id = $1", user_id
        )
        if row is None:
            key = new_data_key()
            wrapped = wrap_data_key(self._keyring, user_id, key)
            await conn.execute(
                "INSERT INTO public.data_keys (user_id, key_id, master_key_id, blob, created_at) "
                "VALUES ($1, $2, $3, $4, $5::text::timestamptz)",
                user_id,
                wrapped.id,
                wrapped.master_key_id,
                wrapped.blob,
                self._now_text(),
            )
        else:
            wrapped = wrapped_key_from_row(row)
            cached = self._keys.get((user_id, wrapped))
            if cached is not None:
                self._keys.move_to_end((user_id, wrapped))
                return cached
            key = unwrap_data_key(self._keyring, user_id, wrapped)
        self._keys[(user_id, wrapped)] = key
        if len(self._keys) > _KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return key

    async def changes_since(self, user_id: str, since: int, limit: int) -> ChangesPage:
        """The changes after ``since`` in revision order (at most ``limit``), or a reset when
        ``since`` is from the future or older than the retained log."""
        _, sql = self._statements()
        async with self._user_transaction(user_id) as conn:
            revision = int(await conn.fetchval(sql.revision, sql.doc_key(user_id)) or 0)
            if await _needs_reset(conn, user_id, since, revision):
                return ChangesPage((), revision, True)
            return ChangesPage(await _changes(conn, user_id, since, limit), revision, False)

    async def snapshot_and_changes(
        self, user_id: str, since: int | None, limit: int
    ) -> tuple[StoredDocument | None, ChangesPage]:
        """The missed changes, or the document as a snapshot when ``since`` is null, too old,
        from the future, or more than ``limit`` changes behind — in one snapshot."""
        _, sql = self._statements()
        async with self._user_transaction(user_id) as conn:
            doc = await _load_document(conn, sql, user_id)
            if (
                since is None
                or doc.revision - since > limit
                or await _needs_reset(conn, user_id, since, doc.revision)
            ):
                return doc, ChangesPage((), doc.revision, True)
            changes = await _changes(conn, user_id, since, limit)
            return None, ChangesPage(changes, doc.revision, False)

    # --- users and tokens ------------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> UserRow:
        user = UserRow(user_id, username, password_hash, self._now_text())
        async with self._user_transaction(user_id, readonly=False) as conn:
            try:
                await _insert_user(conn, user)
            except asyncpg.UniqueViolationError as exc:
                raise _user_exists(user_id, username) from exc
        return user

    async def get_user(self, user_id: str) -> UserRow | None:
        async with self._user_transaction(user_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {_USER_READ} FROM public.users WHERE user_id = $1", user_id
            )
        return None if row is None else _user(row)

    async def get_user_by_username(self, username: str) -> UserRow | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM public.livesettings_user_by_username($1)", username
            )
        return None if row is None else _user(row)

    async def list_users(self) -> list[UserRow]:
        """Every account, without its password hash (the function never returns one)."""
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM public.livesettings_list_users()")
        return [
            UserRow(row["user_id"], row["username"], "", _time_text(row["created_at"]) or "")
            for row in rows
        ]

    async def remove_user(self, user_id: str) -> bool:
        """Delete the user's account, document, change log, mutation ids, tokens and data key.

        Session revocations stay: the server records one for a removed user, in either order.
        """
        _, sql = self._statements()
        async with self._user_transaction(user_id, readonly=False) as conn:
            removed = 0
            for statement, key in (
                ("DELETE FROM public.refresh_tokens WHERE user_id = $1", user_id),
                ("DELETE FROM public.users WHERE user_id = $1", user_id),
                (sql.delete_doc, sql.doc_key(user_id)),
                ("DELETE FROM public.settings_changes WHERE user_id = $1", user_id),
                ("DELETE FROM public.applied_mutations WHERE user_id = $1", user_id),
                ("DELETE FROM public.data_keys WHERE user_id = $1", user_id),
            ):
                removed += _count(await conn.execute(statement, key))
        for cached in [k for k in self._keys if k[0] == user_id]:
            del self._keys[cached]
        return removed > 0

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        async with self._user_transaction(user_id, readonly=False) as conn:
            status = await conn.execute(
                "UPDATE public.users SET password_hash = $2 WHERE user_id = $1",
                user_id,
                password_hash,
            )
        return _count(status) > 0

    async def add_refresh_token(
        self,
        token_hash: str,
        user_id: str,
        family_id: str,
        expires_at: int,
        *,
        max_families: int | None = None,
    ) -> None:
        """Store a new family's first token; beyond ``max_families`` live families of the
        user, the least recently refreshed ones are deleted."""
        async with self._user_transaction(user_id, readonly=False) as conn:
            try:
                await _insert_token(conn, token_hash, user_id, family_id, expires_at)
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(f"user {user_id!r} has no account") from exc
            if max_families is not None:
                # A live family has exactly one unused, unrevoked token; its expiry orders the
                # families by their last sign-in or refresh.
                await conn.execute(
                    "DELETE FROM public.refresh_tokens WHERE user_id = $1 AND family_id IN ("
                    " SELECT family_id FROM public.refresh_tokens"
                    " WHERE user_id = $1 AND NOT revoked AND used_at IS NULL"
                    " ORDER BY expires_at DESC, token_hash = $2 DESC"
                    " OFFSET $3)",
                    user_id,
                    token_hash,
                    max_families,
                )

    async def refresh_token_owner(self, token_hash: str) -> str | None:
        async with self._connection() as conn:
            owner: str | None = await conn.fetchval(
                "SELECT * FROM public.livesettings_refresh_token_owner($1)", token_hash
            )
        return owner

    async def use_refresh_token(
        self, token_hash: str, new_hash: str, new_expires_at: int, now: int
    ) -> RefreshResult:
        """Rotate: unknown, expired or revoked → ``invalid``; presented before → the family is
        revoked, ``reused``; else the successor joins the family, ``ok``."""
        async with self._connection() as conn:
            owner = await conn.fetchval(
                "SELECT * FROM public.livesettings_refresh_token_owner($1)", token_hash
            )
            if owner is None:
                return RefreshResult("invalid")
            async with _as_user(conn, owner, readonly=False):
                row = await conn.fetchrow(
                    "SELECT user_id, family_id, expires_at, used_at, revoked "
                    "FROM public.refresh_tokens WHERE token_hash = $1 FOR UPDATE",
                    token_hash,
                )
                if row is None or row["revoked"] or row["expires_at"] <= now:
                    return RefreshResult("invalid")
                user_id, family_id = row["user_id"], row["family_id"]
                if row["used_at"] is not None:
                    await conn.execute(
                        "UPDATE public.refresh_tokens SET revoked = true WHERE family_id = $1",
                        family_id,
                    )
                    return RefreshResult("reused", user_id, family_id)
                await conn.execute(
                    "UPDATE public.refresh_tokens SET used_at = $2 WHERE token_hash = $1",
                    token_hash,
                    now,
                )
                await _insert_token(conn, new_hash, user_id, family_id, new_expires_at)
                return RefreshResult("ok", user_id, family_id)

    async def revoke_refresh_tokens(self, user_id: str) -> int:
        """Revoke the user's live refresh tokens (logout); how many there were."""
        async with self._user_transaction(user_id, readonly=False) as conn:
            status = await conn.execute(
                "UPDATE public.refresh_tokens SET revoked = true "
                "WHERE user_id = $1 AND NOT revoked AND used_at IS NULL",
                user_id,
            )
        return _count(status)

    async def revoke_sessions(self, user_id: str, at_ms: int) -> None:
        """Void the user's tokens issued before ``at_ms`` (only the newest row is kept)."""
        async with self._user_transaction(user_id, readonly=False) as conn:
            await conn.execute("DELETE FROM public.session_revocations WHERE user_id = $1", user_id)
            await conn.execute(
                "INSERT INTO public.session_revocations (user_id, at_ms) VALUES ($1, $2)",
                user_id,
                at_ms,
            )

    async def revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM public.livesettings_revocations_since($1)", after_id
            )
        return [(int(row["id"]), row["user_id"], int(row["at_ms"])) for row in rows]

    async def revoke_token(self, jti: str, expires_at: int) -> None:
        """Void the token ``jti`` until ``expires_at``; long-expired revocations are pruned."""
        async with self._connection() as conn:
            await conn.execute("SELECT public.livesettings_revoke_token($1, $2)", jti, expires_at)

    async def token_revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM public.livesettings_token_revocations_since($1)", after_id
            )
        return [(int(row["id"]), row["jti"], int(row["expires_at"])) for row in rows]

    # --- data keys -------------------------------------------------------------------------

    async def get_wrapped_key(self, user_id: str) -> WrappedKey | None:
        async with self._user_transaction(user_id) as conn:
            return await _select_wrapped_key(conn, user_id)

    async def wrapped_keys_not_under(
        self, master_key_id: str, limit: int
    ) -> list[tuple[str, WrappedKey]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM public.livesettings_wrapped_keys_not_under($1, $2)",
                master_key_id,
                limit,
            )
        return [(row["user_id"], wrapped_key_from_row(row)) for row in rows]

    async def replace_wrapped_key(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        async with self._user_transaction(user_id, readonly=False) as conn:
            status = await conn.execute(
                "UPDATE public.data_keys SET key_id = $5, master_key_id = $6, blob = $7 "
                "WHERE user_id = $1 AND key_id = $2 AND master_key_id = $3 AND blob = $4",
                user_id,
                old.id,
                old.master_key_id,
                old.blob,
                new.id,
                new.master_key_id,
                new.blob,
            )
        return _count(status) == 1

    async def count_wrapped_keys(self) -> dict[str, int]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM public.livesettings_count_wrapped_keys()")
        return {row["master_key_id"]: int(row["n"]) for row in rows}

    async def data_key_users_after(self, after: str, limit: int) -> list[str]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM public.livesettings_data_key_users_after($1, $2)", after, limit
            )
        return [row[0] for row in rows]

    async def renew_data_key(self, user_id: str) -> int | None:
        """A new data key for the user, every secret re-sealed under it, in one transaction
        that holds the user's commit lock: a write racing with it runs before or after."""
        if self._keyring is None:
            raise ConfigError("renewing data keys needs the master keys, and none is configured")
        _, sql = self._statements()
        async with self._user_transaction(user_id, readonly=False) as conn:
            await conn.execute(
                "SELECT public.livesettings_lock_users($1::integer[])", [_lock_key(user_id)]
            )
            row = await conn.fetchrow(
                "SELECT key_id, master_key_id, blob FROM public.data_keys "
                "WHERE user_id = $1 FOR UPDATE",
                user_id,
            )
            if row is None:
                return None
            doc = await _load_document(conn, sql, user_id)
            renewed = reseal_under_new_key(
                self._keyring, user_id, wrapped_key_from_row(row), doc.settings["api_keys"]
            )
            await conn.execute(
                "UPDATE public.data_keys SET key_id = $2, master_key_id = $3, blob = $4, "
                "created_at = $5::text::timestamptz WHERE user_id = $1",
                user_id,
                renewed.wrapped.id,
                renewed.wrapped.master_key_id,
                renewed.wrapped.blob,
                self._now_text(),
            )
            if renewed.count:
                await conn.execute(
                    "UPDATE public.user_preferences "
                    f"SET api_keys = $2::text::{sql.columns.type_of('api_keys')} "
                    f"WHERE user_id = $1::text::{sql.columns.user_id_type}",
                    sql.doc_key(user_id),
                    dumps(renewed.secrets),
                )
        return renewed.count

    async def scrub_key_tables(self, *, documents: bool) -> list[str]:
        """After a rotation, as the owner (``admin_url``): rewrite ``data_keys`` (``VACUUM
        FULL``) so no dead row version keeps an old wrapped key, and with ``documents``
        vacuum ``user_preferences`` too (its old envelopes are sealed under keys that are
        gone); then re-analyse and rewrite ``pg_statistic``, whose samples of those columns
        may hold old values. A line starting ``warning:`` for what could not be done."""
        conn = await self._connect(
            self.admin_url, command_timeout=_SETUP_TIMEOUT_S, purpose="scrub"
        )
        try:
            rights = await conn.fetchrow(
                "SELECT r.rolsuper OR pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') "
                "AS owner, r.rolsuper OR pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') "
                "AS database_owner FROM pg_catalog.pg_roles r, pg_catalog.pg_class c, "
                "pg_catalog.pg_database d WHERE r.rolname = current_user "
                "AND c.oid = 'public.data_keys'::regclass AND d.datname = current_database()"
            )
            if not rights["owner"]:
                return [
                    "warning: old wrapped data keys stay in dead row versions of data_keys until "
                    "the table is vacuumed; set LIVESETTINGS_ADMIN_DATABASE_URL (the owner "
                    "setup runs as) and run this again to rewrite it now"
                ]
            # A long transaction must not make serve's queries queue behind VACUUM FULL.
            await conn.execute(f"SET lock_timeout = '{_SCRUB_LOCK_TIMEOUT}'")
            await conn.execute("VACUUM (FULL, ANALYZE) public.data_keys")
            lines = ["rewrote data_keys (VACUUM FULL): no dead row version keeps an old key"]
            if documents:
                await conn.execute("VACUUM (ANALYZE) public.user_preferences")
                lines.append("vacuumed user_preferences: dead row versions removed")
            if rights["database_owner"]:
                await conn.execute("VACUUM FULL pg_catalog.pg_statistic")
                lines.append("rewrote pg_statistic: no statistic sampled before keeps an old key")
            else:
                lines.append(
                    "warning: only the database owner or a superuser can rewrite pg_statistic; "
                    "statistics sampled before the rotation may keep old wrapped keys until "
                    "it is vacuumed"
                )
            return lines
        except asyncpg.LockNotAvailableError:
            return [
                f"warning: a table stayed locked by another transaction for "
                f"{_SCRUB_LOCK_TIMEOUT}, so the old keys were not all rewritten; run this again"
            ]
        except _DRIVER_ERRORS as exc:
            raise _translate(exc, _SETUP_TIMEOUT_S) from exc
        finally:
            await conn.close()

    # --- export / import -------------------------------------------------------------------

    async def export_users(self) -> AsyncIterator[ExportedUser]:
        """Every user with a document, an account or a data key, in user id order."""
        after = ""
        while True:
            page = await self._export_page(after)
            for user in page:
                yield user
            if len(page) < _EXPORT_PAGE:
                return
            after = page[-1].user_id

    async def _export_page(self, after: str) -> list[ExportedUser]:
        _, sql = self._statements()
        users: list[ExportedUser] = []
        async with self._connection() as conn:
            ids = [
                row[0]
                for row in await conn.fetch(
                    "SELECT * FROM public.livesettings_user_ids_after($1, $2)", after, _EXPORT_PAGE
                )
            ]
            for user_id in ids:
                async with _as_user(conn, user_id, readonly=True):
                    account = await conn.fetchrow(
                        "SELECT username, password_hash FROM public.users WHERE user_id = $1",
                        user_id,
                    )
                    users.append(
                        ExportedUser(
                            user_id,
                            None if account is None else account["username"],
                            None if account is None else account["password_hash"],
                            await _load_document(conn, sql, user_id),
                            await _select_wrapped_key(conn, user_id),
                        )
                    )
        return users

    async def import_user(self, user: ExportedUser) -> None:
        """Write an exported user; ``Conflict`` when that user (or username) already exists."""
        _, sql = self._statements()
        doc = user.document
        write_doc = doc.revision > 0 or doc.created_at is not None
        if write_doc:
            problem = _user_id_problem(user.user_id, uuid_column=sql.uuid_ids)
            if problem is not None:
                raise problem
        async with self._user_transaction(user.user_id, readonly=False) as conn:
            exists = (
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM public.users WHERE user_id = $1) "
                    "OR EXISTS (SELECT 1 FROM public.data_keys WHERE user_id = $1)",
                    user.user_id,
                )
                or await conn.fetchval(sql.revision, sql.doc_key(user.user_id)) is not None
            )
            if exists:
                raise Conflict(
                    f"user {user.user_id!r} already exists", details={"user_id": user.user_id}
                )
            if user.username is not None:
                row = UserRow(
                    user.user_id, user.username, user.password_hash or "", self._now_text()
                )
                try:
                    await _insert_user(conn, row)
                except asyncpg.UniqueViolationError as exc:
                    raise _user_exists(user.user_id, user.username) from exc
            if write_doc:
                owned = StoredDocument(
                    user.user_id,
                    doc.revision,
                    doc.settings,
                    doc.records,
                    doc.updated_at,
                    doc.created_at,
                )
                columns = document_to_columns(owned)
                await conn.execute(
                    sql.upsert,
                    user.user_id,
                    *(_text_param(columns[name]) for name in DOCUMENT_COLUMNS),
                )
            if user.wrapped_key is not None:
                key = user.wrapped_key
                await conn.execute(
                    "INSERT INTO public.data_keys (user_id, key_id, master_key_id, blob, "
                    "created_at) VALUES ($1, $2, $3, $4, $5::text::timestamptz)",
                    user.user_id,
                    key.id,
                    key.master_key_id,
                    key.blob,
                    self._now_text(),
                )

    def _now_text(self) -> str:
        return rfc3339(self._now_ms())


# --- helpers ------------------------------------------------------------------------------


async def _scrub(conn: Any) -> list[str]:
    """After rows were rewritten: leave no old version of them (plaintext API keys of a seed)
    in the table's files, nor in the column statistics ANALYZE may have sampled earlier.

    VACUUM cannot run in a transaction, so this follows setup's commit. The WAL and backups
    keep old values until they are recycled.
    """
    await conn.execute("VACUUM (FULL, ANALYZE) public.user_preferences")
    lines = [
        "rewrote user_preferences (VACUUM FULL): no dead row version keeps an old value "
        "such as a plaintext API key"
    ]
    # ANALYZE just replaced the table's statistics; the old rows may hold sampled values.
    if await conn.fetchval(
        "SELECT r.rolsuper OR pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') "
        "FROM pg_catalog.pg_roles r, pg_catalog.pg_database d "
        "WHERE r.rolname = current_user AND d.datname = current_database()"
    ):
        await conn.execute("VACUUM FULL pg_catalog.pg_statistic")
        lines.append("rewrote pg_statistic (VACUUM FULL): no statistic sampled before keeps one")
    else:
        lines.append(
            "warning: only the database owner or a superuser can rewrite pg_statistic; "
            "statistics sampled before setup may keep old values until it is vacuumed"
        )
    return lines


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _literal(text: str) -> str:
    """An SQL string literal (``standard_conforming_strings`` is on for our sessions)."""
    return "'" + text.replace("'", "''") + "'"


def _set_user_sql(user_id: str) -> str:
    return f"SELECT pg_catalog.set_config('{USER_SETTING}', {_literal(user_id)}, true)"


def _user_id_problem(user_id: str, *, uuid_column: bool) -> ValidationError | None:
    """Why ``user_id`` cannot be stored here, if it cannot (checked before any SQL)."""
    if not user_id or "\x00" in user_id or len(user_id) > _MAX_USER_ID:
        # Long ids are refused so that one [user_id, revision] always fits a NOTIFY.
        return ValidationError(
            f"a user id must be 1 to {_MAX_USER_ID} characters, without U+0000",
            path="",
            code="invalid_user_id",
        )
    if uuid_column and not is_canonical_uuid(user_id):
        return ValidationError(
            f"user id {user_id!r} is not a lowercase UUID, which this database's "
            "user_preferences.user_id (uuid) requires",
            path="",
            code="invalid_user_id",
        )
    return None


@asynccontextmanager
async def _as_user(conn: Any, user_id: str, *, readonly: bool) -> AsyncIterator[None]:
    """A transaction whose statements see only ``user_id``'s rows (one round trip to begin)."""
    problem = _user_id_problem(user_id, uuid_column=False)
    if problem is not None:
        raise problem
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if readonly else "BEGIN"
    await conn.execute(f"{begin}; {_set_user_sql(user_id)}")
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            try:
                await conn.execute("ROLLBACK")
            except _DRIVER_ERRORS:
                logger.warning("rollback failed")
        raise
    await conn.execute("COMMIT")


class _Savepoint:
    """One savepoint per mutation of a group commit, its release folded into the next
    mutation's first round trip (``COMMIT`` releases the last one)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._open = False

    async def begin(self, user_id: str) -> None:
        release = "RELEASE SAVEPOINT mutation; " if self._open else ""
        await self._conn.execute(f"{release}SAVEPOINT mutation; {_set_user_sql(user_id)}")
        self._open = True

    async def rollback(self) -> None:
        await self._conn.execute("ROLLBACK TO SAVEPOINT mutation")


def _lock_key(user_id: str) -> int:
    """A stable 32-bit key for the user's advisory lock (collisions only serialise)."""
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _time_text(value: Any) -> str | None:
    """A stored time as the text the rows speak (RFC 3339 for timestamp columns)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _text_param(value: Any) -> Any:
    """Document columns are bound as text (cast in SQL to the column's own type)."""
    return value if value is None or isinstance(value, int | str) else str(value)


def _document(user_id: str, row: Any) -> StoredDocument:
    if row is None or not row["has_doc"]:
        return document_from_row(user_id, None)
    values = {name: row[name] for name in DOCUMENT_COLUMNS}
    values["created_at"] = _time_text(values["created_at"])
    values["updated_at"] = _time_text(values["updated_at"])
    return document_from_row(user_id, values)


async def _load_document(conn: Any, sql: _Statements, user_id: str) -> StoredDocument:
    key = sql.doc_key(user_id)
    row = None if key is None else await conn.fetchrow(sql.doc_select, key)
    return _document(user_id, row)


async def _oldest_known(conn: Any, user_id: str, revision: int) -> int:
    """The oldest revision the retained log can rebuild (see the SQLite backend)."""
    oldest = await conn.fetchval(
        "SELECT min(revision) FROM public.settings_changes WHERE user_id = $1", user_id
    )
    return revision if oldest is None else int(oldest) - 1


async def _needs_reset(conn: Any, user_id: str, since: int, revision: int) -> bool:
    return since > revision or since < await _oldest_known(conn, user_id, revision)


async def _changes(conn: Any, user_id: str, since: int, limit: int) -> tuple[ChangeRow, ...]:
    rows = await conn.fetch(
        f"SELECT {', '.join(_CHANGE_COLUMNS)} FROM public.settings_changes "
        "WHERE user_id = $1 AND revision > $2 ORDER BY revision LIMIT $3",
        user_id,
        since,
        limit,
    )
    return tuple(change_from_row(row) for row in rows)


def _user(row: Any) -> UserRow:
    return UserRow(
        row["user_id"], row["username"], row["password_hash"], _time_text(row["created_at"]) or ""
    )


async def _insert_user(conn: Any, user: UserRow) -> None:
    await conn.execute(
        "INSERT INTO public.users (user_id, username, password_hash, created_at) "
        "VALUES ($1, $2, $3, $4::text::timestamptz)",
        user.user_id,
        user.username,
        user.password_hash,
        user.created_at,
    )


def _user_exists(user_id: str, username: str) -> Conflict:
    return Conflict(
        f"the username {username!r} is already taken",
        details={"username": username, "user_id": user_id},
    )


async def _insert_token(
    conn: Any, token_hash: str, user_id: str, family_id: str, expires_at: int
) -> None:
    await conn.execute(
        "INSERT INTO public.refresh_tokens (token_hash, user_id, family_id, expires_at) "
        "VALUES ($1, $2, $3, $4)",
        token_hash,
        user_id,
        family_id,
        expires_at,
    )


async def _select_wrapped_key(conn: Any, user_id: str) -> WrappedKey | None:
    row = await conn.fetchrow(
        "SELECT key_id, master_key_id, blob FROM public.data_keys WHERE user_id = $1", user_id
    )
    return None if row is None else wrapped_key_from_row(row)


def _count(status: str) -> int:
    """The row count of a command tag (``"UPDATE 3"`` → 3)."""
    return int(status.rpartition(" ")[2] or 0)


def _sealer(user_id: str, key: DataKey, now: int) -> Sealer:
    def seal(name: str, plaintext: str) -> dict[str, Any]:
        return seal_secret(user_id, name, plaintext, key, now_ms=now)

    return seal


def _all_failed(batch: Sequence[PendingMutation], exc: BaseException) -> list[CommitOutcome]:
    """Every outcome of a batch whose transaction failed as a whole (nothing was written)."""
    cause = _translate(exc, None) if not isinstance(exc, LiveSettingsError) else exc
    error = StorageError(f"the commit failed: {cause.message}")
    error.__cause__ = exc
    return [CommitOutcome(p.user_id, p.mutation.mutation_id, 0, error=error) for p in batch]


def _as_error(exc: BaseException) -> LiveSettingsError:
    error = _translate(exc, None)
    if error is not exc:
        error.__cause__ = exc
    return error


def _translate(exc: BaseException, timeout: float | None) -> LiveSettingsError:
    """A driver error as one of ours, with a message that says what happened."""
    if isinstance(exc, LiveSettingsError):
        return exc
    if isinstance(
        exc, asyncpg.UntranslatableCharacterError | asyncpg.CharacterNotInRepertoireError
    ):
        return ValidationError(
            "a value holds a character PostgreSQL cannot store (U+0000)",
            path="",
            code="invalid_value",
        )
    if isinstance(exc, TimeoutError | asyncpg.QueryCanceledError):
        after = "" if timeout is None else f" within {timeout:g} s"
        return StorageError(f"PostgreSQL did not answer{after}; is the database overloaded?")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StorageError(f"lost the connection to PostgreSQL: {exc or type(exc).__name__}")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StorageError(
            f"PostgreSQL refused the app role: {exc}; run `livesettings setup`, which grants "
            "the app role what it needs"
        )
    if isinstance(
        exc,
        asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError | asyncpg.UndefinedColumnError,
    ):
        return StorageError(
            f"the livesettings schema is missing or outdated ({exc}); run `livesettings setup`"
        )
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL refused a statement: {exc}")
    logger.error("a database call failed unexpectedly", exc_info=exc)
    return LiveSettingsError("the database call failed on the server", code="internal_error")


def _lacks_rights(exc: BaseException) -> ConfigError:
    """The role connected as may not read the livesettings tables."""
    return ConfigError(
        f"the role of LIVESETTINGS_DATABASE_URL may not read the livesettings tables "
        f"({exc}); run `livesettings setup`, which grants the app role what it needs"
    )


def _connect_error(exc: BaseException, url: str) -> LiveSettingsError:
    """Why a connection could not be made, naming the database but never the password."""
    where = _where(url)
    role, _ = _role_of(url)
    if isinstance(exc, LiveSettingsError):
        return exc
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ConfigError(f"the database {where} does not exist: {exc}")
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return ConfigError(f"PostgreSQL at {where} refused the password of role {role!r}")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        hint = (
            "; run `livesettings setup` (with LIVESETTINGS_ADMIN_DATABASE_URL) to create it"
            if "does not exist" in str(exc)
            else ""
        )
        return ConfigError(f"PostgreSQL at {where} refused role {role!r}: {exc}{hint}")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return StorageError(f"PostgreSQL at {where} has no connection slot left: {exc}")
    if isinstance(exc, TimeoutError):
        return StorageError(f"cannot reach PostgreSQL at {where}: no answer in time")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StorageError(f"cannot reach PostgreSQL at {where}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL at {where} refused the connection: {exc}")
    if isinstance(exc, ValueError):  # asyncpg's DSN parser
        return ConfigError(f"the database URL {_redacted(url)!r} is malformed: {exc}")
    raise exc


def _role_of(url: str) -> tuple[str, str | None]:
    """The role and password a ``postgresql://role:password@host/db`` URL names."""
    parts = urlsplit(url)
    role = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return role or os.environ.get("PGUSER") or getpass.getuser(), password


def _where(url: str) -> str:
    """``host:port/database`` of a URL, for messages."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "localhost"
    return f"{host}:{port or 5432}{parts.path or '/'}"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
