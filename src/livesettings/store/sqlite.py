"""The embedded SQLite backend (stdlib ``sqlite3``), WAL journal, ``synchronous=FULL`` by default.

Threads: every write runs on one dedicated thread that owns the write connection, so a group
commit never waits for SQLite's busy lock inside the process; reads run on a small pool, each
thread with its own connection (WAL lets them read while the writer commits). The async methods
hand work to those threads with ``loop.run_in_executor``.

The commit sequence is :class:`~livesettings.store.commit.CommitTemplate`'s: the writer thread
runs it whole (:func:`~livesettings.store.commit.run_sync`) inside one ``BEGIN IMMEDIATE``
transaction, over the statements of :mod:`~livesettings.store.sqlite_commit`; the other
statements are :mod:`~livesettings.store.sqlite_sql`'s.

With SQLite there is no row-level security; the rule "a request touches only its own user" is
kept by this layer: every statement of a per-user method is keyed by that user's id.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path as FilePath
from typing import Any, Final, TypeVar

from ..crypto import DataKey, Keyring, WrappedKey, reseal_under_new_key
from ..document import Limits, PreferencesSchema, rfc3339
from ..errors import ConfigError, Conflict, NotFound, StorageError
from . import sqlite_admins
from .base import (
    SCHEMA_VERSION,
    TOKEN_REVOCATION_GRACE_S,
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
from .codec import (
    dumps,
    user_from_row,
    wrapped_key_from_row,
)
from .commit import CommitTemplate, all_failed, run_sync, wall_ms
from .migrations import check_servable
from .sqlite_commit import SqliteCommit
from .sqlite_schema import read_schema_version, setup_schema
from .sqlite_sql import (
    DROP_FAMILIES,
    USER_COLUMNS,
    changes_after,
    current_revision,
    export_page,
    export_teams,
    import_team,
    insert_token,
    insert_user,
    insert_wrapped_key,
    load_document,
    needs_reset,
    owned_by,
    read_transaction,
    revocations_after,
    select_user,
    select_wrapped_key,
    upsert_document,
    write_transaction,
)
from .sqlite_teams import SqliteTeams

__all__ = ["SqliteStore", "sqlite_path"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
_BUSY_TIMEOUT_MS: Final = 10_000
_READ_THREADS: Final = 4


def sqlite_path(url: str) -> FilePath:
    """The file of ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"a SQLite database URL looks like sqlite:///path/to/file.db, got {url!r}"
        )
    path = url[len(prefix) :].partition("?")[0]
    if not path or path == ":memory:":
        raise ConfigError(f"the SQLite database URL {url!r} names no file")
    return FilePath(path)


class SqliteStore:
    """A :class:`~livesettings.store.base.Store` on one SQLite file."""

    def __init__(
        self,
        url: str,
        *,
        keyring: Keyring | None = None,
        limits: Limits | None = None,
        schema: PreferencesSchema | None = None,
        synchronous: str = "FULL",
        changelog_retain: int = 1000,
        commit_delay_ms: int = 0,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._file = self.path.resolve()  # relative to the directory we started in
        sync = synchronous.upper()
        if sync not in _SYNCHRONOUS:
            raise ConfigError(
                f"SQLITE_SYNCHRONOUS must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            )
        self.synchronous = sync
        self.changelog_retain = changelog_retain
        self._now_ms = now_ms or wall_ms
        self._commits = CommitTemplate(keyring, limits, schema, changelog_retain, self._now_ms)
        self._keyring = keyring
        self._commit_delay = commit_delay_ms / 1000
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None  # used on the writer thread only
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self.teams = SqliteTeams(self)

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"

    # --- threads and connections -----------------------------------------------------------

    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        # mode=rw: only setup creates the file, so a typo in the URL is an error, not a new db.
        uri = self._file.as_uri() + ("?mode=rwc" if create else "?mode=rw")
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # each connection stays on one thread; close() is elsewhere
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_conn(self, *, create: bool = False) -> sqlite3.Connection:
        if self._write_conn is None:
            conn = self._connect(create=create)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # Zero what is deleted or overwritten: a removed user, or the plaintext of an
                # adopted seed row, must not linger in free pages.
                conn.execute("PRAGMA secure_delete=ON")
            except BaseException:
                conn.close()
                raise
            self._write_conn = conn
        return self._write_conn

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._writer is None or self._readers is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="livesettings-sqlite-write")
            self._readers = ThreadPoolExecutor(
                _READ_THREADS, thread_name_prefix="livesettings-sqlite-read"
            )
        return self._writer, self._readers

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn)
        except sqlite3.Error as exc:
            raise StorageError(f"the SQLite database failed: {exc}") from exc

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._pools()[0], functools.partial(fn, *args))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        def call() -> T:
            return fn(self._reader_conn(), *args)

        return await self._run(self._pools()[1], call)

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the schema version: ``ConfigError`` names the fix; one version
        newer is served with a warning (:func:`~.migrations.check_servable`)."""
        if not self._file.exists():
            raise ConfigError(
                f"the SQLite database {self.path} does not exist; run `livesettings setup` first"
            )
        check_servable(await self._write(self._open_sync), f"SQLite database {self.path}")

    def _open_sync(self) -> int | None:
        return read_schema_version(self._writer_conn())

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        if writer is None or readers is None:
            return
        self._writer = self._readers = None
        await asyncio.get_running_loop().run_in_executor(writer, self._close_writer)
        await asyncio.to_thread(writer.shutdown)
        await asyncio.to_thread(readers.shutdown)
        with self._read_lock:
            conns, self._read_conns = self._read_conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
        self._commits.keys.clear()

    def _close_writer(self) -> None:
        if self._write_conn is not None:
            conn, self._write_conn = self._write_conn, None
            conn.close()

    async def setup(self) -> list[str]:
        """Create or upgrade the schema; adopt a seed ``user_preferences`` table in place."""
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the directory of {self.path}: {exc}") from exc
        return await self._write(self._setup_sync)

    def _setup_sync(self) -> list[str]:
        conn = self._writer_conn(create=True)
        with write_transaction(conn):
            lines = setup_schema(
                conn,
                keyring=self._keyring,
                data_key=functools.partial(self._data_key, conn),
                now_ms=self._now_ms(),
            )
        return lines or [f"schema is up to date (version {SCHEMA_VERSION})"]

    async def schema_version(self) -> int | None:
        return await self._read(read_schema_version)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def info(self) -> dict[str, Any]:
        def facts(conn: sqlite3.Connection) -> dict[str, Any]:
            sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            return {
                "backend": "sqlite",
                "path": str(self._file),
                "sqlite_version": sqlite3.sqlite_version,
                "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
                "synchronous": _SYNCHRONOUS[sync] if 0 <= sync < len(_SYNCHRONOUS) else str(sync),
                "schema_version": read_schema_version(conn),
            }

        return await self._read(facts)

    # --- documents and the change log ------------------------------------------------------

    async def get_document(self, user_id: str, *, actor: str | None = None) -> StoredDocument:
        return await self._read(load_document, user_id)

    async def row_id(self, user_id: str) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            found = conn.execute(
                "SELECT id FROM user_preferences WHERE user_id = ?", (user_id,)
            ).fetchone()
            return None if found is None else int(found[0])

        return await self._read(read)

    async def commit(self, batch: Sequence[PendingMutation]) -> list[CommitOutcome]:
        if not batch:
            return []
        pending = list(batch)

        def write() -> list[CommitOutcome]:
            committing = SqliteCommit(self._writer_conn(), self._commit_delay)
            return run_sync(self._commits.commit(committing, pending))

        try:
            return await self._write(write)
        except (StorageError, RuntimeError) as exc:
            # RuntimeError: the store was closed under us (the executor refuses new work).
            return all_failed(batch, exc)

    def _data_key(self, conn: sqlite3.Connection, user_id: str) -> DataKey:
        """The user's data key, made (and stored wrapped) on the user's first secret."""
        return run_sync(self._commits.data_key(SqliteCommit(conn, 0), user_id))

    async def changes_since(
        self, user_id: str, since: int, limit: int, *, actor: str | None = None
    ) -> ChangesPage:
        """The changes after ``since`` in revision order (at most ``limit``), or a reset when
        ``since`` is from the future or older than the retained log."""

        def read(conn: sqlite3.Connection) -> ChangesPage:
            with read_transaction(conn):
                revision = current_revision(conn, user_id)
                if needs_reset(conn, user_id, since, revision):
                    return ChangesPage((), revision, True)
                return ChangesPage(changes_after(conn, user_id, since, limit), revision, False)

        return await self._read(read)

    async def snapshot_and_changes(
        self, user_id: str, since: int | None, limit: int, *, actor: str | None = None
    ) -> tuple[StoredDocument | None, ChangesPage]:
        """The missed changes, or the document as a snapshot when ``since`` is null, too old,
        from the future, or more than ``limit`` changes behind (a subscriber must get all).
        ``actor`` plays no part here: the server checks team membership before reading."""

        def read(conn: sqlite3.Connection) -> tuple[StoredDocument | None, ChangesPage]:
            with read_transaction(conn):
                doc = load_document(conn, user_id)
                if (
                    since is None
                    or doc.revision - since > limit
                    or needs_reset(conn, user_id, since, doc.revision)
                ):
                    return doc, ChangesPage((), doc.revision, True)
                changes = changes_after(conn, user_id, since, limit)
                return None, ChangesPage(changes, doc.revision, False)

        return await self._read(read)

    # --- users and tokens ------------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> UserRow:
        def write() -> UserRow:
            conn = self._writer_conn()
            user = UserRow(user_id, username, password_hash, self._now_text())
            try:
                with write_transaction(conn):
                    insert_user(conn, user)
            except sqlite3.IntegrityError as exc:
                raise username_taken(user_id, username) from exc
            return user

        return await self._write(write)

    async def get_user(self, user_id: str) -> UserRow | None:
        return await self._read(select_user, "user_id", user_id)

    async def get_user_by_username(self, username: str) -> UserRow | None:
        return await self._read(select_user, "username", username)

    async def list_users(self) -> list[UserRow]:
        """Every account, without its password hash (as on PostgreSQL)."""

        def read(conn: sqlite3.Connection) -> list[UserRow]:
            rows = conn.execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")
            return [replace(user_from_row(row), password_hash="") for row in rows]

        return await self._read(read)

    async def remove_user(self, user_id: str) -> bool:
        """Delete the user's account, document, change log, mutation ids, tokens and data key.

        Session revocations stay: the server records one for a removed user, in either order.
        """

        def write() -> bool:
            conn = self._writer_conn()
            removed = 0
            with write_transaction(conn):
                for table in (
                    "refresh_tokens",
                    "users",
                    "user_preferences",
                    "settings_changes",
                    "applied_mutations",
                    "data_keys",
                    "admins",
                ):
                    cursor = conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
                    removed += cursor.rowcount
            self._commits.keys.forget(user_id)
            return removed > 0

        return await self._write(write)

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        count = await self._write(
            self._execute_count,
            "UPDATE users SET password_hash = ? WHERE user_id = ?",
            (password_hash, user_id),
        )
        return count > 0

    # --- admins (the /admin dashboard; statements in sqlite_admins) -------------------------

    async def is_admin(self, user_id: str) -> bool:
        return await self._read(sqlite_admins.is_admin, user_id)

    async def set_admin(self, user_id: str, on: bool) -> bool:
        """True when the flag changed; False: no built-in user ``user_id`` (granting), or the
        flag was already so."""
        return await self._write(
            lambda: sqlite_admins.set_admin(self._writer_conn(), user_id, on, self._now_text())
        )

    async def admin_ids(self) -> set[str]:
        return await self._read(sqlite_admins.admin_ids)

    async def search_users(self, q: str, limit: int) -> list[UserSummary]:
        return await self._read(sqlite_admins.search_users, q, limit)

    async def search_teams(self, q: str, limit: int) -> list[TeamSummary]:
        return await self._read(sqlite_admins.search_teams, q, limit)

    def _execute_count(self, sql: str, params: tuple[Any, ...]) -> int:
        conn = self._writer_conn()
        with write_transaction(conn):
            return int(conn.execute(sql, params).rowcount)

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

        def write() -> None:
            conn = self._writer_conn()
            try:
                with write_transaction(conn):
                    insert_token(conn, token_hash, user_id, family_id, expires_at)
                    if max_families is not None:
                        conn.execute(DROP_FAMILIES, (user_id, user_id, max_families))
            except sqlite3.IntegrityError as exc:
                raise NotFound(f"user {user_id!r} has no account") from exc

        await self._write(write)

    async def refresh_token_owner(self, token_hash: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT user_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else str(row["user_id"])

        return await self._read(read)

    async def use_refresh_token(
        self, token_hash: str, new_hash: str, new_expires_at: int, now: int
    ) -> RefreshResult:
        """Rotate: unknown, expired or revoked → ``invalid``; presented before → the family is
        revoked, ``reused``; else the successor joins the family, ``ok``."""

        def write() -> RefreshResult:
            conn = self._writer_conn()
            with write_transaction(conn):
                row = conn.execute(
                    "SELECT user_id, family_id, expires_at, used_at, revoked FROM refresh_tokens "
                    "WHERE token_hash = ?",
                    (token_hash,),
                ).fetchone()
                if row is None or row["revoked"] or row["expires_at"] <= now:
                    return RefreshResult("invalid")
                user_id, family_id = row["user_id"], row["family_id"]
                if row["used_at"] is not None:
                    conn.execute(
                        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?", (family_id,)
                    )
                    return RefreshResult("reused", user_id, family_id)
                conn.execute(
                    "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?", (now, token_hash)
                )
                insert_token(conn, new_hash, user_id, family_id, new_expires_at)
                return RefreshResult("ok", user_id, family_id)

        return await self._write(write)

    async def revoke_refresh_tokens(self, user_id: str) -> int:
        """Revoke the user's live refresh tokens (logout); how many there were. A used one
        needs no revoking: presenting it again is a reuse already."""
        return await self._write(
            self._execute_count,
            "UPDATE refresh_tokens SET revoked = 1 "
            "WHERE user_id = ? AND revoked = 0 AND used_at IS NULL",
            (user_id,),
        )

    async def revoke_sessions(self, user_id: str, at_ms: int) -> None:
        """Void the user's tokens issued before ``at_ms``. Only the newest revocation of a
        user matters, so it replaces the older ones (ids keep growing for the pollers)."""

        def write() -> None:
            conn = self._writer_conn()
            with write_transaction(conn):
                conn.execute("DELETE FROM session_revocations WHERE user_id = ?", (user_id,))
                conn.execute(
                    "INSERT INTO session_revocations (user_id, at_ms) VALUES (?, ?)",
                    (user_id, at_ms),
                )

        await self._write(write)

    async def revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        return await self._read(
            revocations_after, "session_revocations", "user_id, at_ms", after_id
        )

    async def revoke_token(self, jti: str, expires_at: int) -> None:
        """Void the token ``jti`` until ``expires_at``; forget revocations long expired."""

        def write() -> None:
            conn = self._writer_conn()
            with write_transaction(conn):
                conn.execute(
                    "DELETE FROM token_revocations WHERE expires_at < ?",
                    (int(time.time()) - TOKEN_REVOCATION_GRACE_S,),
                )
                conn.execute(
                    "INSERT INTO token_revocations (jti, expires_at) VALUES (?, ?)",
                    (jti, expires_at),
                )

        await self._write(write)

    async def token_revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        return await self._read(revocations_after, "token_revocations", "jti, expires_at", after_id)

    # --- data keys -------------------------------------------------------------------------

    async def get_wrapped_key(self, user_id: str) -> WrappedKey | None:
        return await self._read(select_wrapped_key, user_id)

    async def wrapped_keys_not_under(
        self, master_key_id: str, limit: int
    ) -> list[tuple[str, WrappedKey]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, WrappedKey]]:
            rows = conn.execute(
                "SELECT user_id, key_id, master_key_id, blob FROM data_keys "
                "WHERE master_key_id != ? ORDER BY user_id LIMIT ?",
                (master_key_id, limit),
            )
            return [(row["user_id"], wrapped_key_from_row(row)) for row in rows]

        return await self._read(read)

    async def replace_wrapped_key(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        count = await self._write(
            self._execute_count,
            "UPDATE data_keys SET key_id = ?, master_key_id = ?, blob = ? "
            "WHERE user_id = ? AND key_id = ? AND master_key_id = ? AND blob = ?",
            (new.id, new.master_key_id, new.blob, user_id, old.id, old.master_key_id, old.blob),
        )
        return count == 1

    async def count_wrapped_keys(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT master_key_id, COUNT(*) AS n FROM data_keys "
                "GROUP BY master_key_id ORDER BY master_key_id"
            )
            return {row["master_key_id"]: int(row["n"]) for row in rows}

        return await self._read(read)

    async def data_key_users_after(self, after: str, limit: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT user_id FROM data_keys WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after, limit),
            )
            return [row["user_id"] for row in rows]

        return await self._read(read)

    async def renew_data_key(self, user_id: str) -> int | None:
        """A new data key for the user, every secret re-sealed under it, in one ``BEGIN
        IMMEDIATE`` transaction: a server's writer in another process waits for it."""
        keyring = self._keyring
        if keyring is None:
            raise ConfigError("renewing data keys needs the master keys, and none is configured")

        def write() -> int | None:
            conn = self._writer_conn()
            with write_transaction(conn):
                wrapped = select_wrapped_key(conn, user_id)
                if wrapped is None:
                    return None
                doc = load_document(conn, user_id)
                renewed = reseal_under_new_key(keyring, user_id, wrapped, doc.settings["api_keys"])
                conn.execute(
                    "UPDATE data_keys SET key_id = ?, master_key_id = ?, blob = ?, "
                    "created_at = ? WHERE user_id = ?",
                    (
                        renewed.wrapped.id,
                        renewed.wrapped.master_key_id,
                        renewed.wrapped.blob,
                        self._now_text(),
                        user_id,
                    ),
                )
                if renewed.count:
                    conn.execute(
                        "UPDATE user_preferences SET api_keys = ? WHERE user_id = ?",
                        (dumps(renewed.secrets), user_id),
                    )
                return renewed.count

        return await self._write(write)

    async def scrub_key_tables(self, *, documents: bool) -> list[str]:
        """``secure_delete`` already zeroed the old rows in their pages; a checkpoint moves
        the new pages into the file and truncates the WAL, whose frames may hold old ones."""

        def checkpoint() -> list[str]:
            busy = self._writer_conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                return [
                    "warning: the write-ahead log could not be checkpointed while readers "
                    "were active, so it may still hold old key material; run this again"
                ]
            return []

        return await self._write(checkpoint)

    # --- export / import -------------------------------------------------------------------

    def export_users(self) -> AsyncIterator[ExportedUser]:
        """Every user with a document, an account or a data key, in user id order."""
        return export_in_pages(functools.partial(self._read, export_page))

    async def import_user(self, user: ExportedUser) -> None:
        """Write an exported user; ``Conflict`` when that user (or username) already exists."""

        def write() -> None:
            conn = self._writer_conn()
            with write_transaction(conn):
                for table in ("users", "user_preferences", "data_keys"):
                    if conn.execute(
                        f"SELECT 1 FROM {table} WHERE user_id = ?", (user.user_id,)
                    ).fetchone():
                        raise Conflict(
                            f"user {user.user_id!r} already exists",
                            details={"user_id": user.user_id},
                        )
                if user.username is not None:
                    row = UserRow(
                        user.user_id, user.username, user.password_hash or "", self._now_text()
                    )
                    try:
                        insert_user(conn, row)
                    except sqlite3.IntegrityError as exc:
                        raise username_taken(user.user_id, user.username) from exc
                doc = user.document
                if doc.revision > 0 or doc.created_at is not None:
                    upsert_document(conn, owned_by(doc, user.user_id))
                if user.wrapped_key is not None:
                    insert_wrapped_key(conn, user.user_id, user.wrapped_key, self._now_text())

        await self._write(write)

    async def export_teams(self) -> AsyncIterator[ExportedTeam]:
        """Every team with its members, in team id order (one read transaction)."""
        for team in await self._read(export_teams):
            yield team

    async def import_team(self, team: ExportedTeam) -> None:
        """Write an exported team as it was; ``Conflict`` when that team already exists."""
        await self._write(lambda: import_team(self._writer_conn(), team))

    def _now_text(self) -> str:
        return rfc3339(self._now_ms())
