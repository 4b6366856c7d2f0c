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
transaction commits. The bus parses it with
:func:`~livesettings.bus.notify.parse_notify_payload`, then reads the change rows per user
through :meth:`PostgresStore.changes_since` (under that user's RLS).

The commit sequence is :class:`~livesettings.store.commit.CommitTemplate`'s, over the
statements of :mod:`~livesettings.store.pg_commit`; SQL shared with the other methods is in
:mod:`~livesettings.store.pg_sql`, driver errors are translated by
:mod:`~livesettings.store.pg_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

from ..bus.notify import (  # the bus's payload codec, sent inside the commit
    NOTIFY_CHANNEL,
    NOTIFY_PAYLOAD_LIMIT,
    notify_payloads,
    parse_notify_payload,
)
from ..crypto import Keyring, WrappedKey, reseal_under_new_key
from ..document import Limits, PreferencesSchema, rfc3339
from ..errors import ConfigError, NotFound, StorageError
from ..urls import redact_url
from . import pg_admins, pg_backup
from .base import (
    ChangesPage,
    CommitOutcome,
    ExportedTeam,
    ExportedUser,
    PendingMutation,
    RefreshResult,
    StoredDocument,
    TeamSummary,
    UserRow,
    UserSummary,
    export_in_pages,
    username_taken,
)
from .codec import dumps, wrapped_key_from_row
from .commit import CommitTemplate, wall_ms
from .migrating import Migration, migrate_in
from .pg_checks import check_app_role, database_facts
from .pg_commit import PgCommitting
from .pg_errors import (
    CONNECTION_ERRORS,
    DRIVER_ERRORS,
    connect_error,
    lacks_rights,
    role_of,
    translate,
)
from .pg_scrub import SCRUB_LOCK_TIMEOUT, scrub_key_tables
from .pg_sql import (
    LOCK_USERS,
    Statements,
    account_from_row,
    as_user,
    changes_after,
    insert_token,
    insert_user,
    load_document,
    lock_key,
    needs_reset,
    row_count,
    select_wrapped_key,
    time_text,
)
from .pg_teams import PgTeams
from .pg_triggers import (
    SQL_WRITES_CHANNEL,
    SqlWrite,
    SqlWriteStatus,
    read_sql_write_status,
    sql_write_from_row,
)
from .postgres_schema import read_schema_version

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "PostgresStore",
    "notify_payloads",
    "parse_notify_payload",
]

logger = logging.getLogger(__name__)

_SETUP_TIMEOUT_S: Final = 600.0
_PROBE_CHANNEL: Final = "livesettings_probe"

_SERVER_SETTINGS: Final = {
    "synchronous_commit": "on",  # an ack waits for the WAL flush (DESIGN §3)
    "standard_conforming_strings": "on",  # _literal() relies on it
    "application_name": "livesettings",
}

_USER_READ: Final = "user_id, username, password_hash, created_at"


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
        if pool_size < 1:
            raise ConfigError(f"the pool size must be at least 1, got {pool_size}")
        self.url = url
        self.admin_url = admin_url or url
        self.app_url = app_url or url
        self.changelog_retain = changelog_retain
        self.pool_size = pool_size
        self.notify = notify
        self._keyring = keyring
        self._now_ms = now_ms or wall_ms
        self._commits = CommitTemplate(keyring, limits, schema, changelog_retain, self._now_ms)
        self._commit_delay = commit_delay_ms / 1000
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._sql: Statements | None = None
        self._waits = 0
        self.teams = PgTeams(self)

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

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
            raise connect_error(exc, url) from exc

    def _statements(self) -> tuple[Any, Statements]:
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
            raise connect_error(exc, self.url) from exc
        broken = False
        try:
            yield conn
        except DRIVER_ERRORS as exc:
            broken = isinstance(exc, CONNECTION_ERRORS)
            raise translate(exc, self._command_timeout) from exc
        finally:
            if broken:
                conn.terminate()  # the pool replaces it; a half-dead one must not go back
            try:
                await pool.release(conn)
            except DRIVER_ERRORS:
                logger.warning("could not return a database connection to the pool")

    @asynccontextmanager
    async def _user_transaction(self, user_id: str, *, readonly: bool = True) -> AsyncIterator[Any]:
        async with self._connection() as conn, as_user(conn, user_id, readonly=readonly):
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
            raise connect_error(exc, self.url) from exc
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                columns = await check_app_role(conn, self.url, self._command_timeout)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._sql = Statements(columns)

    async def close(self) -> None:
        pool, self._pool, self._sql = self._pool, None, None
        self._commits.keys.clear()
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._command_timeout)
        except (TimeoutError, *DRIVER_ERRORS):
            pool.terminate()

    async def setup(self, *, sql_writer: str | None = None) -> list[str]:
        """Create or upgrade the schema as the owner (``admin_url``); adopt a seed table;
        with ``sql_writer``, let that role write ``user_preferences`` in SQL."""
        return (await self.migrate(sql_writer=sql_writer)).lines

    async def migrate(self, *, dry_run: bool = False, sql_writer: str | None = None) -> Migration:
        """Setup as the owner (:func:`~livesettings.store.migrating.migrate_in`); ``dry_run``
        rolls it back, so the recorded SQL is what a migration would run."""
        app_role, app_password = role_of(self.app_url)
        conn = await self._connect(
            self.admin_url, command_timeout=_SETUP_TIMEOUT_S, purpose="setup"
        )
        try:
            migration = await migrate_in(
                conn,
                dry_run=dry_run,
                app_role=app_role,
                app_password=app_password,
                keyring=self._keyring,
                now_ms=self._now_ms(),
                sql_writer=sql_writer,
            )
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ConfigError(
                f"setup must run as the owner of the livesettings tables, with CREATEROLE to "
                f"create the app role (LIVESETTINGS_ADMIN_DATABASE_URL): {exc}"
            ) from exc
        except DRIVER_ERRORS as exc:
            raise translate(exc, _SETUP_TIMEOUT_S) from exc
        finally:
            await conn.close()
        return migration

    async def schema_version(self) -> int | None:
        if self._pool is None:
            conn = await self._connect(self.url)
            try:
                return await read_schema_version(conn)
            except asyncpg.InsufficientPrivilegeError as exc:
                # A role without rights is a configuration to fix, as in open(): not an outage.
                raise lacks_rights(exc) from exc
            except DRIVER_ERRORS as exc:
                raise translate(exc, self._command_timeout) from exc
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
            facts = await database_facts(conn, sql.columns.user_id_type)
        return {
            **facts,
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
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._command_timeout) from exc
        finally:
            await listener.close()

    # --- writes made in SQL (pg_triggers) --------------------------------------------------

    async def claim_sql_writes(self, limit: int) -> list[SqlWrite]:
        """Up to ``limit`` queued SQL writes, leased to this node, in queue order; only of
        users no other node holds a lease for."""
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM public.livesettings_claim_sql_writes($1)", limit)
        return [sql_write_from_row(row) for row in rows]

    async def finish_sql_writes(self, ids: Sequence[int]) -> None:
        """Take applied (or refused) SQL writes off the queue."""
        async with self._connection() as conn:
            await conn.execute("SELECT public.livesettings_finish_sql_writes($1)", list(ids))

    async def listen_sql_writes(self, on_write: Callable[[], None]) -> Any:
        """A connection of its own that calls ``on_write`` on each queued SQL write's NOTIFY;
        the caller closes it (``close()``) and opens another once ``is_closed()``."""
        conn = await self._connect(self.url, purpose="sql-writes")
        try:
            await conn.add_listener(SQL_WRITES_CHANNEL, lambda *_: on_write())
        except DRIVER_ERRORS as exc:
            conn.terminate()
            raise translate(exc, self._command_timeout) from exc
        return conn

    async def sql_write_status(self) -> SqlWriteStatus:
        """The queue of SQL writes and the trigger, for ``verify``."""
        async with self._connection() as conn:
            return await read_sql_write_status(conn)

    # --- documents and the change log ------------------------------------------------------

    async def get_document(self, user_id: str, *, actor: str | None = None) -> StoredDocument:
        _, sql = self._statements()
        async with self._user_transaction(actor or user_id) as conn:
            return await load_document(conn, sql, user_id)

    async def row_id(self, user_id: str) -> int | str | None:
        _, sql = self._statements()
        key = sql.doc_key(user_id)
        if key is None:
            return None  # not a UUID in a uuid column: no row can match
        async with self._user_transaction(user_id) as conn:
            value = await conn.fetchval(sql.row_id, key)
        return value if value is None or isinstance(value, int) else str(value)

    async def commit(self, batch: Sequence[PendingMutation]) -> list[CommitOutcome]:
        """Apply every pending mutation in one transaction, each in its own savepoint; a
        failure of the transaction as a whole fails every outcome with ``StorageError``."""
        if not batch:
            return []
        committing = PgCommitting(
            self._connection,
            lambda: self._statements()[1],
            notify=self.notify,
            delay_s=self._commit_delay,
        )
        return await self._commits.commit(committing, batch)

    async def changes_since(
        self, user_id: str, since: int, limit: int, *, actor: str | None = None
    ) -> ChangesPage:
        """The changes after ``since`` in revision order (at most ``limit``), or a reset when
        ``since`` is from the future or older than the retained log."""
        _, sql = self._statements()
        async with self._user_transaction(actor or user_id) as conn:
            revision = int(await conn.fetchval(sql.revision, sql.doc_key(user_id)) or 0)
            if await needs_reset(conn, user_id, since, revision):
                return ChangesPage((), revision, True)
            return ChangesPage(await changes_after(conn, user_id, since, limit), revision, False)

    async def snapshot_and_changes(
        self, user_id: str, since: int | None, limit: int, *, actor: str | None = None
    ) -> tuple[StoredDocument | None, ChangesPage]:
        """The missed changes, or the document as a snapshot when ``since`` is null, too old,
        from the future, or more than ``limit`` changes behind — in one snapshot."""
        _, sql = self._statements()
        async with self._user_transaction(actor or user_id) as conn:
            doc = await load_document(conn, sql, user_id)
            if (
                since is None
                or doc.revision - since > limit
                or await needs_reset(conn, user_id, since, doc.revision)
            ):
                return doc, ChangesPage((), doc.revision, True)
            changes = await changes_after(conn, user_id, since, limit)
            return None, ChangesPage(changes, doc.revision, False)

    # --- users and tokens ------------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> UserRow:
        user = UserRow(user_id, username, password_hash, self._now_text())
        async with self._user_transaction(user_id, readonly=False) as conn:
            try:
                await insert_user(conn, user)
            except asyncpg.UniqueViolationError as exc:
                raise username_taken(user_id, username) from exc
        return user

    async def get_user(self, user_id: str) -> UserRow | None:
        async with self._user_transaction(user_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {_USER_READ} FROM public.users WHERE user_id = $1", user_id
            )
        return None if row is None else account_from_row(row)

    async def get_user_by_username(self, username: str) -> UserRow | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM public.livesettings_user_by_username($1)", username
            )
        return None if row is None else account_from_row(row)

    async def list_users(self) -> list[UserRow]:
        """Every account, without its password hash (the function never returns one)."""
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM public.livesettings_list_users()")
        return [
            UserRow(row["user_id"], row["username"], "", time_text(row["created_at"]) or "")
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
                ("DELETE FROM public.admins WHERE user_id = $1", user_id),
            ):
                removed += row_count(await conn.execute(statement, key))
        self._commits.keys.forget(user_id)
        return removed > 0

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        async with self._user_transaction(user_id, readonly=False) as conn:
            status = await conn.execute(
                "UPDATE public.users SET password_hash = $2 WHERE user_id = $1",
                user_id,
                password_hash,
            )
        return row_count(status) > 0

    # --- admins (the /admin dashboard; statements in pg_admins) -----------------------------

    async def is_admin(self, user_id: str) -> bool:
        async with self._user_transaction(user_id) as conn:
            return await pg_admins.is_admin(conn, user_id)

    async def set_admin(self, user_id: str, on: bool) -> bool:
        """True when the flag changed; False: no built-in user ``user_id`` (granting), or the
        flag was already so."""
        async with self._connection() as conn:
            return await pg_admins.set_admin(conn, user_id, on)

    async def admin_ids(self) -> set[str]:
        async with self._connection() as conn:
            return await pg_admins.admin_ids(conn)

    async def search_users(self, q: str, limit: int) -> list[UserSummary]:
        async with self._connection() as conn:
            return await pg_admins.search_users(conn, q, limit)

    async def search_teams(self, q: str, limit: int) -> list[TeamSummary]:
        async with self._connection() as conn:
            return await pg_admins.search_teams(conn, q, limit)

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
                await insert_token(conn, token_hash, user_id, family_id, expires_at)
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
            async with as_user(conn, owner, readonly=False):
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
                await insert_token(conn, new_hash, user_id, family_id, new_expires_at)
                return RefreshResult("ok", user_id, family_id)

    async def revoke_refresh_tokens(self, user_id: str) -> int:
        """Revoke the user's live refresh tokens (logout); how many there were."""
        async with self._user_transaction(user_id, readonly=False) as conn:
            status = await conn.execute(
                "UPDATE public.refresh_tokens SET revoked = true "
                "WHERE user_id = $1 AND NOT revoked AND used_at IS NULL",
                user_id,
            )
        return row_count(status)

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
            return await select_wrapped_key(conn, user_id)

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
        return row_count(status) == 1

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
            await conn.execute(LOCK_USERS, [lock_key(user_id)])
            row = await conn.fetchrow(
                "SELECT key_id, master_key_id, blob FROM public.data_keys "
                "WHERE user_id = $1 FOR UPDATE",
                user_id,
            )
            if row is None:
                return None
            doc = await load_document(conn, sql, user_id)
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
            return await scrub_key_tables(conn, documents=documents)
        except asyncpg.LockNotAvailableError:
            return [
                f"warning: a table stayed locked by another transaction for "
                f"{SCRUB_LOCK_TIMEOUT}, so the old keys were not all rewritten; run this again"
            ]
        except DRIVER_ERRORS as exc:
            raise translate(exc, _SETUP_TIMEOUT_S) from exc
        finally:
            await conn.close()

    # --- export / import -------------------------------------------------------------------

    def export_users(self) -> AsyncIterator[ExportedUser]:
        """Every user with a document, an account or a data key, in user id order."""
        return export_in_pages(self._export_page)

    async def _export_page(self, after: str) -> list[ExportedUser]:
        return await pg_backup.export_page(self._connection, self._statements()[1], after)

    async def import_user(self, user: ExportedUser) -> None:
        """Write an exported user; ``Conflict`` when that user (or username) already exists."""
        _, sql = self._statements()
        async with self._user_transaction(user.user_id, readonly=False) as conn:
            await pg_backup.import_user(conn, sql, user, self._now_text())

    def export_teams(self) -> AsyncIterator[ExportedTeam]:
        return pg_backup.export_teams(self._connection)

    async def import_team(self, team: ExportedTeam) -> None:
        await pg_backup.import_team(self._connection, team)

    def _now_text(self) -> str:
        return rfc3339(self._now_ms())
