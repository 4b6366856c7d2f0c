"""The embedded SQLite backend (stdlib ``sqlite3``), WAL journal, ``synchronous=FULL`` by default.

Threads: every write runs on one dedicated thread that owns the write connection, so a group
commit never waits for SQLite's busy lock inside the process; reads run on a small pool, each
thread with its own connection (WAL lets them read while the writer commits). The async methods
hand work to those threads with ``loop.run_in_executor``.

Merge semantics are not decided here: :meth:`SqliteStore.commit` loads what
:func:`~livesettings.store.planning.plan_mutation` needs inside one ``BEGIN IMMEDIATE``
transaction, each mutation in its own savepoint, and writes the plan it returns.

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path as FilePath
from typing import Any, Final, TypeVar

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
from ..document import (
    FIELDS,
    Limits,
    PreferencesSchema,
    default_for,
    rfc3339,
    validate_document,
)
from ..errors import ConfigError, Conflict, LiveSettingsError, NotFound, StorageError
from .base import (
    SCHEMA_VERSION,
    TOKEN_REVOCATION_GRACE_S,
    AppliedMutation,
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
    JSON_FIELDS,
    applied_from_row,
    change_from_row,
    change_to_columns,
    document_from_row,
    document_to_columns,
    dumps,
    loads,
    user_from_row,
    wrapped_key_from_row,
)
from .idempotency import BodyHasher
from .planning import Plan, Sealer, has_secrets, plan_mutation

__all__ = ["SqliteStore", "sqlite_path"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
_BUSY_TIMEOUT_MS: Final = 10_000
_READ_THREADS: Final = 4
_APPLIED_RETAIN_MS: Final = 7 * 24 * 3600 * 1000  # DESIGN §3: mutation ids kept ≥ 7 days
_PRUNE_EVERY_MS: Final = 3600 * 1000
_KEY_CACHE_SIZE: Final = 4096
_EXPORT_PAGE: Final = 200

_TABLES: Final[dict[str, str]] = {
    "livesettings_meta": """
        CREATE TABLE livesettings_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    "user_preferences": """
        CREATE TABLE user_preferences (
            id INTEGER PRIMARY KEY,
            user_id TEXT UNIQUE NOT NULL,
            preferences TEXT,
            api_keys TEXT,
            ai_providers TEXT,
            theme TEXT,
            language TEXT,
            created_at TEXT,
            updated_at TEXT,
            revision INTEGER NOT NULL DEFAULT 0,
            leaf_meta TEXT
        )""",
    "settings_changes": """
        CREATE TABLE settings_changes (
            user_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            patch TEXT NOT NULL,
            mutation_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            committed_at INTEGER NOT NULL,
            conflicts TEXT NOT NULL,
            inverse TEXT NOT NULL,
            PRIMARY KEY (user_id, revision)
        ) WITHOUT ROWID""",
    "applied_mutations": """
        CREATE TABLE applied_mutations (
            user_id TEXT NOT NULL,
            mutation_id TEXT NOT NULL,
            body_hash TEXT NOT NULL,
            revision INTEGER NOT NULL,
            conflicts TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            PRIMARY KEY (user_id, mutation_id)
        ) WITHOUT ROWID""",
    "users": """
        CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            username TEXT UNIQUE NOT NULL,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
    "refresh_tokens": """
        CREATE TABLE refresh_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
            family_id TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            used_at INTEGER,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
    "session_revocations": """
        CREATE TABLE session_revocations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            at_ms INTEGER NOT NULL
        )""",
    "token_revocations": """
        CREATE TABLE token_revocations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        )""",
    "data_keys": """
        CREATE TABLE data_keys (
            user_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            master_key_id TEXT NOT NULL,
            blob TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
}

# Columns a seed-style user_preferences table may lack; setup adds them in place.
_ADDED_COLUMNS: Final = {
    "revision": "INTEGER NOT NULL DEFAULT 0",
    "leaf_meta": "TEXT",
    "created_at": "TEXT",
    "updated_at": "TEXT",
}

_INDEXES: Final[dict[str, str]] = {
    "applied_mutations_created": "ON applied_mutations (created_at_ms)",
    "refresh_tokens_user": "ON refresh_tokens (user_id)",
    "refresh_tokens_family": "ON refresh_tokens (family_id)",
    "data_keys_master": "ON data_keys (master_key_id)",
    "session_revocations_user": "ON session_revocations (user_id)",
}

_DOC_SELECT: Final = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM user_preferences WHERE user_id = ?"
_DOC_UPSERT: Final = (
    f"INSERT INTO user_preferences (user_id, {', '.join(DOCUMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(DOCUMENT_COLUMNS) + 1))}) "
    "ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(
        # A row adopted from the seed keeps its own creation time.
        "created_at = COALESCE(user_preferences.created_at, excluded.created_at)"
        if name == "created_at"
        else f"{name} = excluded.{name}"
        for name in DOCUMENT_COLUMNS
    )
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
_CHANGE_INSERT: Final = (
    f"INSERT INTO settings_changes ({', '.join(_CHANGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CHANGE_COLUMNS))})"
)
_USER_COLUMNS: Final = "user_id, username, password_hash, created_at"


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
        if changelog_retain < 1:
            raise ConfigError(f"CHANGELOG_RETAIN must be at least 1, got {changelog_retain}")
        self.synchronous = sync
        self.changelog_retain = changelog_retain
        self._keyring = keyring
        self._body_hasher = BodyHasher(keyring)
        self._limits = limits
        self._schema = schema
        self._commit_delay = commit_delay_ms / 1000
        self._now_ms = now_ms or _wall_ms
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None  # used on the writer thread only
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        # Unwrapped data keys, by the wrapped form they came from: a rotated or replaced key
        # misses the cache, and a key whose insert was rolled back is simply never looked up.
        self._keys: OrderedDict[tuple[str, WrappedKey], DataKey] = OrderedDict()
        self._last_prune_ms = 0

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
        """Connect and check the schema (``ConfigError`` names the fix: ``livesettings setup``)."""
        if not self._file.exists():
            raise ConfigError(
                f"the SQLite database {self.path} does not exist; run `livesettings setup` first"
            )
        version = await self._write(self._open_sync)
        if version is None:
            raise ConfigError(
                f"the SQLite database {self.path} has no livesettings schema; "
                "run `livesettings setup` first"
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the SQLite database {self.path} has schema version {version}, newer than "
                f"this livesettings understands ({SCHEMA_VERSION}); upgrade livesettings"
            )
        if version < SCHEMA_VERSION:
            raise ConfigError(
                f"the SQLite database {self.path} has schema version {version}; "
                f"run `livesettings setup` to upgrade it to {SCHEMA_VERSION}"
            )

    def _open_sync(self) -> int | None:
        return _read_schema_version(self._writer_conn())

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
        self._keys.clear()

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
        lines: list[str] = []
        with _transaction(conn):
            version = _read_schema_version(conn)
            if version is not None and version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the database has schema version {version}, newer than this livesettings "
                    f"understands ({SCHEMA_VERSION}); upgrade livesettings"
                )
            existing = {
                row["name"]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            for name, ddl in _TABLES.items():
                if name not in existing:
                    conn.execute(ddl)
                    lines.append(f"created table {name}")
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(user_preferences)")}
            for name, ddl in _ADDED_COLUMNS.items():
                if name not in columns:
                    conn.execute(f"ALTER TABLE user_preferences ADD COLUMN {name} {ddl}")
                    lines.append(f"added column user_preferences.{name}")
            for name, ddl in _INDEXES.items():
                if not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                ).fetchone():
                    conn.execute(f"CREATE INDEX {name} {ddl}")
                    lines.append(f"created index {name}")
            lines.extend(self._adopt_seed_rows(conn))
            if version != SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO livesettings_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
                lines.append(f"recorded schema version {SCHEMA_VERSION}")
        if not lines:
            lines.append(f"schema is up to date (version {SCHEMA_VERSION})")
        return lines

    def _adopt_seed_rows(self, conn: sqlite3.Connection) -> list[str]:
        """Bring rows livesettings never wrote (``leaf_meta`` NULL) into the document shape.

        Values the document does not accept fall back to their field's default, and
        plaintext API keys are sealed under the user's data key (which needs the keyring).
        """
        rows = conn.execute(
            f"SELECT user_id, {', '.join(DOCUMENT_COLUMNS)} FROM user_preferences "
            "WHERE leaf_meta IS NULL"
        ).fetchall()
        lines: list[str] = []
        now = self._now_ms()
        for row in rows:
            user_id = row["user_id"]
            settings: dict[str, Any] = {}
            for name in FIELDS:
                try:
                    raw = loads(row[name], name) if name in JSON_FIELDS else row[name]
                    settings[name] = validate_document({name: raw}, check_size=False)[name]
                except LiveSettingsError:
                    settings[name] = default_for(name)
                    lines.append(f"user {user_id}: reset invalid {name} to its default")
            keys = settings["api_keys"]
            plaintext = sum(isinstance(value, str) for value in keys.values())
            if plaintext:
                key = self._data_key(conn, user_id)
                settings["api_keys"] = {
                    name: seal_secret(user_id, name, value, key, now_ms=now)
                    if isinstance(value, str)
                    else value
                    for name, value in keys.items()
                }
                lines.append(f"user {user_id}: sealed {plaintext} API key(s)")
            doc = StoredDocument(
                user_id,
                int(row["revision"] or 0),
                settings,
                {},
                updated_at=row["updated_at"],
                created_at=row["created_at"],
            )
            _upsert_document(conn, doc)
        if rows:
            lines.append(f"adopted {len(rows)} existing user_preferences row(s)")
        return lines

    async def schema_version(self) -> int | None:
        return await self._read(_read_schema_version)

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
                "schema_version": _read_schema_version(conn),
            }

        return await self._read(facts)

    # --- documents and the change log ------------------------------------------------------

    async def get_document(self, user_id: str) -> StoredDocument:
        return await self._read(_load_document, user_id)

    async def commit(self, batch: Sequence[PendingMutation]) -> list[CommitOutcome]:
        if not batch:
            return []
        try:
            return await self._write(self._commit_sync, list(batch))
        except (StorageError, RuntimeError) as exc:
            # RuntimeError: the store was closed under us (the executor refuses new work).
            return _all_failed(batch, exc)

    def _commit_sync(self, batch: list[PendingMutation]) -> list[CommitOutcome]:
        conn = self._writer_conn()
        now = self._now_ms()
        outcomes: list[CommitOutcome] = []
        docs: dict[str, StoredDocument] = {}  # later mutations of a user see earlier ones
        try:
            with _transaction(conn):
                for pending in batch:
                    outcomes.append(self._commit_one(conn, pending, docs, now))
                for user_id, doc in docs.items():
                    conn.execute(
                        "DELETE FROM settings_changes WHERE user_id = ? AND revision <= ?",
                        (user_id, doc.revision - self.changelog_retain),
                    )
                pruned = self._prune(conn, now)
                if self._commit_delay:
                    time.sleep(self._commit_delay)
        except sqlite3.Error as exc:
            logger.warning("group commit of %d mutation(s) failed: %s", len(batch), exc)
            return _all_failed(batch, exc)
        if pruned:
            self._last_prune_ms = now
        return outcomes

    def _commit_one(
        self,
        conn: sqlite3.Connection,
        pending: PendingMutation,
        docs: dict[str, StoredDocument],
        now: int,
    ) -> CommitOutcome:
        conn.execute("SAVEPOINT mutation")
        try:
            plan = self._plan(conn, pending, docs, now)
            if plan.outcome.error is None:
                self._write_plan(conn, pending.user_id, plan, now)
        except Exception as exc:
            # Rolling back to the savepoint raises if SQLite already dropped the whole
            # transaction (disk full, I/O error): then the batch fails as one.
            conn.execute("ROLLBACK TO mutation")
            conn.execute("RELEASE mutation")
            return CommitOutcome(
                pending.user_id, pending.mutation.mutation_id, 0, error=_as_error(exc)
            )
        if plan.outcome.error is not None:
            conn.execute("ROLLBACK TO mutation")  # e.g. a data key made for a refused write
        conn.execute("RELEASE mutation")
        if plan.document is not None:
            docs[pending.user_id] = plan.document
        return plan.outcome

    def _plan(
        self,
        conn: sqlite3.Connection,
        pending: PendingMutation,
        docs: dict[str, StoredDocument],
        now: int,
    ) -> Plan:
        user_id = pending.user_id
        doc = docs.get(user_id) or _load_document(conn, user_id)
        row = conn.execute(
            "SELECT mutation_id, body_hash, revision, conflicts FROM applied_mutations "
            "WHERE user_id = ? AND mutation_id = ?",
            (user_id, pending.mutation.mutation_id),
        ).fetchone()
        prior = None if row is None else applied_from_row(row)
        inverses: list[dict[str, Any]] = []
        oldest = 0
        target = pending.revert_to
        if prior is None and pending.kind == "revert" and target is not None:
            if 0 <= target <= doc.revision:
                inverses = [
                    loads(r["inverse"], "inverse patch")
                    for r in conn.execute(
                        "SELECT inverse FROM settings_changes WHERE user_id = ? AND revision > ? "
                        "ORDER BY revision DESC",
                        (user_id, target),
                    )
                ]
            oldest = _oldest_known(conn, user_id, doc.revision)
        seal: Sealer | None = None
        if prior is None and has_secrets(pending):
            seal = _sealer(user_id, self._data_key(conn, user_id), now)
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

    def _write_plan(self, conn: sqlite3.Connection, user_id: str, plan: Plan, now: int) -> None:
        if plan.document is not None:
            _upsert_document(conn, plan.document)
        if plan.change is not None:
            _insert_change(conn, plan.change)
        if plan.remember is not None:
            _remember(conn, user_id, plan.remember, now)

    def _data_key(self, conn: sqlite3.Connection, user_id: str) -> DataKey:
        """The user's data key, made (and stored wrapped) on the user's first secret."""
        if self._keyring is None:
            raise ConfigError("storing a secret needs a master key, and none is configured")
        row = conn.execute(
            "SELECT key_id, master_key_id, blob FROM data_keys WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            key = new_data_key()
            wrapped = wrap_data_key(self._keyring, user_id, key)
            conn.execute(
                "INSERT INTO data_keys (user_id, key_id, master_key_id, blob, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (user_id, wrapped.id, wrapped.master_key_id, wrapped.blob, self._now_text()),
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

    def _prune(self, conn: sqlite3.Connection, now: int) -> bool:
        """Now and then, forget mutation ids past their 7 days and long-expired tokens."""
        if now - self._last_prune_ms < _PRUNE_EVERY_MS:
            return False
        conn.execute(
            "DELETE FROM applied_mutations WHERE created_at_ms < ?", (now - _APPLIED_RETAIN_MS,)
        )
        conn.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < ?",
            ((now - _APPLIED_RETAIN_MS) // 1000,),
        )
        return True

    async def changes_since(self, user_id: str, since: int, limit: int) -> ChangesPage:
        """The changes after ``since`` in revision order (at most ``limit``), or a reset when
        ``since`` is from the future or older than the retained log."""

        def read(conn: sqlite3.Connection) -> ChangesPage:
            with _read_transaction(conn):
                revision = _current_revision(conn, user_id)
                if _needs_reset(conn, user_id, since, revision):
                    return ChangesPage((), revision, True)
                return ChangesPage(_changes(conn, user_id, since, limit), revision, False)

        return await self._read(read)

    async def snapshot_and_changes(
        self, user_id: str, since: int | None, limit: int
    ) -> tuple[StoredDocument | None, ChangesPage]:
        """The missed changes, or the document as a snapshot when ``since`` is null, too old,
        from the future, or more than ``limit`` changes behind (a subscriber must get all)."""

        def read(conn: sqlite3.Connection) -> tuple[StoredDocument | None, ChangesPage]:
            with _read_transaction(conn):
                doc = _load_document(conn, user_id)
                if (
                    since is None
                    or doc.revision - since > limit
                    or _needs_reset(conn, user_id, since, doc.revision)
                ):
                    return doc, ChangesPage((), doc.revision, True)
                changes = _changes(conn, user_id, since, limit)
                return None, ChangesPage(changes, doc.revision, False)

        return await self._read(read)

    # --- users and tokens ------------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> UserRow:
        def write() -> UserRow:
            conn = self._writer_conn()
            user = UserRow(user_id, username, password_hash, self._now_text())
            try:
                with _transaction(conn):
                    _insert_user(conn, user)
            except sqlite3.IntegrityError as exc:
                raise _user_exists(user_id, username) from exc
            return user

        return await self._write(write)

    async def get_user(self, user_id: str) -> UserRow | None:
        return await self._read(_select_user, "user_id", user_id)

    async def get_user_by_username(self, username: str) -> UserRow | None:
        return await self._read(_select_user, "username", username)

    async def list_users(self) -> list[UserRow]:
        """Every account, without its password hash (as on PostgreSQL)."""

        def read(conn: sqlite3.Connection) -> list[UserRow]:
            rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
            return [replace(user_from_row(row), password_hash="") for row in rows]

        return await self._read(read)

    async def remove_user(self, user_id: str) -> bool:
        """Delete the user's account, document, change log, mutation ids, tokens and data key.

        Session revocations stay: the server records one for a removed user, in either order.
        """

        def write() -> bool:
            conn = self._writer_conn()
            removed = 0
            with _transaction(conn):
                for table in (
                    "refresh_tokens",
                    "users",
                    "user_preferences",
                    "settings_changes",
                    "applied_mutations",
                    "data_keys",
                ):
                    cursor = conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
                    removed += cursor.rowcount
            for cached in [k for k in self._keys if k[0] == user_id]:
                del self._keys[cached]
            return removed > 0

        return await self._write(write)

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        count = await self._write(
            self._execute_count,
            "UPDATE users SET password_hash = ? WHERE user_id = ?",
            (password_hash, user_id),
        )
        return count > 0

    def _execute_count(self, sql: str, params: tuple[Any, ...]) -> int:
        conn = self._writer_conn()
        with _transaction(conn):
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
                with _transaction(conn):
                    _insert_token(conn, token_hash, user_id, family_id, expires_at)
                    if max_families is not None:
                        conn.execute(_DROP_FAMILIES, (user_id, user_id, max_families))
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
            with _transaction(conn):
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
                _insert_token(conn, new_hash, user_id, family_id, new_expires_at)
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
            with _transaction(conn):
                conn.execute("DELETE FROM session_revocations WHERE user_id = ?", (user_id,))
                conn.execute(
                    "INSERT INTO session_revocations (user_id, at_ms) VALUES (?, ?)",
                    (user_id, at_ms),
                )

        await self._write(write)

    async def revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        def read(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
            rows = conn.execute(
                "SELECT id, user_id, at_ms FROM session_revocations WHERE id > ? ORDER BY id",
                (after_id,),
            )
            return [(int(row["id"]), row["user_id"], int(row["at_ms"])) for row in rows]

        return await self._read(read)

    async def revoke_token(self, jti: str, expires_at: int) -> None:
        """Void the token ``jti`` until ``expires_at``; forget revocations long expired."""

        def write() -> None:
            conn = self._writer_conn()
            with _transaction(conn):
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
        def read(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
            rows = conn.execute(
                "SELECT id, jti, expires_at FROM token_revocations WHERE id > ? ORDER BY id",
                (after_id,),
            )
            return [(int(row["id"]), row["jti"], int(row["expires_at"])) for row in rows]

        return await self._read(read)

    # --- data keys -------------------------------------------------------------------------

    async def get_wrapped_key(self, user_id: str) -> WrappedKey | None:
        return await self._read(_select_wrapped_key, user_id)

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
            with _transaction(conn):
                wrapped = _select_wrapped_key(conn, user_id)
                if wrapped is None:
                    return None
                doc = _load_document(conn, user_id)
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

    async def export_users(self) -> AsyncIterator[ExportedUser]:
        """Every user with a document, an account or a data key, in user id order."""
        after = ""
        while True:
            page = await self._read(_export_page, after)
            for user in page:
                yield user
            if len(page) < _EXPORT_PAGE:
                return
            after = page[-1].user_id

    async def import_user(self, user: ExportedUser) -> None:
        """Write an exported user; ``Conflict`` when that user (or username) already exists."""

        def write() -> None:
            conn = self._writer_conn()
            with _transaction(conn):
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
                        _insert_user(conn, row)
                    except sqlite3.IntegrityError as exc:
                        raise _user_exists(user.user_id, user.username) from exc
                doc = user.document
                if doc.revision > 0 or doc.created_at is not None:
                    _upsert_document(conn, _owned_by(doc, user.user_id))
                if user.wrapped_key is not None:
                    key = user.wrapped_key
                    conn.execute(
                        "INSERT INTO data_keys (user_id, key_id, master_key_id, blob, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (user.user_id, key.id, key.master_key_id, key.blob, self._now_text()),
                    )

        await self._write(write)

    def _now_text(self) -> str:
        return rfc3339(self._now_ms())


# --- statements shared by the methods above (each takes the connection of its thread) --------


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so a transaction
    never fails half way for want of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("rollback failed")
        raise


@contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One snapshot for several SELECTs (WAL keeps it while the writer commits)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _sealer(user_id: str, key: DataKey, now: int) -> Sealer:
    def seal(name: str, plaintext: str) -> dict[str, Any]:
        return seal_secret(user_id, name, plaintext, key, now_ms=now)

    return seal


def _all_failed(batch: Sequence[PendingMutation], exc: BaseException) -> list[CommitOutcome]:
    """Every outcome of a batch whose transaction failed as a whole (nothing was written)."""
    error = StorageError(f"the commit failed: {exc}")
    error.__cause__ = exc
    return [CommitOutcome(p.user_id, p.mutation.mutation_id, 0, error=error) for p in batch]


def _as_error(exc: BaseException) -> LiveSettingsError:
    if isinstance(exc, LiveSettingsError):
        return exc
    error: LiveSettingsError
    if isinstance(exc, sqlite3.Error):
        error = StorageError(f"the mutation could not be stored: {exc}")
    else:
        logger.error("a mutation failed unexpectedly", exc_info=exc)
        error = LiveSettingsError("the mutation failed on the server", code="internal_error")
    error.__cause__ = exc
    return error


def _read_schema_version(conn: sqlite3.Connection) -> int | None:
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'livesettings_meta'"
    ).fetchone():
        return None
    row = conn.execute(
        "SELECT value FROM livesettings_meta WHERE key = 'schema_version'"
    ).fetchone()
    if row is None:
        return None
    try:
        return int(row["value"])
    except ValueError:
        raise ConfigError(f"the stored schema version {row['value']!r} is not a number") from None


def _load_document(conn: sqlite3.Connection, user_id: str) -> StoredDocument:
    return document_from_row(user_id, conn.execute(_DOC_SELECT, (user_id,)).fetchone())


def _owned_by(doc: StoredDocument, user_id: str) -> StoredDocument:
    if doc.user_id == user_id:
        return doc
    return StoredDocument(
        user_id, doc.revision, doc.settings, doc.records, doc.updated_at, doc.created_at
    )


def _upsert_document(conn: sqlite3.Connection, doc: StoredDocument) -> None:
    columns = document_to_columns(doc)
    conn.execute(_DOC_UPSERT, (doc.user_id, *(columns[name] for name in DOCUMENT_COLUMNS)))


def _insert_change(conn: sqlite3.Connection, change: ChangeRow) -> None:
    columns = change_to_columns(change)
    conn.execute(_CHANGE_INSERT, tuple(columns[name] for name in _CHANGE_COLUMNS))


def _remember(conn: sqlite3.Connection, user_id: str, applied: AppliedMutation, now: int) -> None:
    conn.execute(
        "INSERT INTO applied_mutations "
        "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            applied.mutation_id,
            applied.body_hash,
            applied.revision,
            dumps(list(applied.conflicts)),
            now,
        ),
    )


def _current_revision(conn: sqlite3.Connection, user_id: str) -> int:
    row = conn.execute(
        "SELECT revision FROM user_preferences WHERE user_id = ?", (user_id,)
    ).fetchone()
    return 0 if row is None else int(row["revision"] or 0)


def _oldest_known(conn: sqlite3.Connection, user_id: str, revision: int) -> int:
    """The oldest revision the retained log can rebuild: the first retained one minus one
    (0 when nothing was pruned); with no change rows at all, only the current one."""
    row = conn.execute(
        "SELECT MIN(revision) AS oldest FROM settings_changes WHERE user_id = ?", (user_id,)
    ).fetchone()
    return revision if row["oldest"] is None else int(row["oldest"]) - 1


def _needs_reset(conn: sqlite3.Connection, user_id: str, since: int, revision: int) -> bool:
    return since > revision or since < _oldest_known(conn, user_id, revision)


def _changes(
    conn: sqlite3.Connection, user_id: str, since: int, limit: int
) -> tuple[ChangeRow, ...]:
    rows = conn.execute(
        "SELECT * FROM settings_changes WHERE user_id = ? AND revision > ? "
        "ORDER BY revision LIMIT ?",
        (user_id, since, limit),
    )
    return tuple(change_from_row(row) for row in rows)


def _insert_user(conn: sqlite3.Connection, user: UserRow) -> None:
    conn.execute(
        f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?)",
        (user.user_id, user.username, user.password_hash, user.created_at),
    )


def _user_exists(user_id: str, username: str) -> Conflict:
    return Conflict(
        f"the username {username!r} is already taken",
        details={"username": username, "user_id": user_id},
    )


def _select_user(conn: sqlite3.Connection, column: str, value: str) -> UserRow | None:
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else user_from_row(row)


# A live family has exactly one unused, unrevoked token; its expiry orders the families by
# their last sign-in or refresh. Those past the newest N go, with every token they hold.
_DROP_FAMILIES: Final = """
    DELETE FROM refresh_tokens WHERE user_id = ? AND family_id IN (
        SELECT family_id FROM refresh_tokens
        WHERE user_id = ? AND revoked = 0 AND used_at IS NULL
        ORDER BY expires_at DESC, rowid DESC
        LIMIT -1 OFFSET ?
    )"""


def _insert_token(
    conn: sqlite3.Connection, token_hash: str, user_id: str, family_id: str, expires_at: int
) -> None:
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (token_hash, user_id, family_id, expires_at),
    )


def _select_wrapped_key(conn: sqlite3.Connection, user_id: str) -> WrappedKey | None:
    row = conn.execute(
        "SELECT key_id, master_key_id, blob FROM data_keys WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else wrapped_key_from_row(row)


def _export_page(conn: sqlite3.Connection, after: str) -> list[ExportedUser]:
    with _read_transaction(conn):
        ids = [
            row["user_id"]
            for row in conn.execute(
                "SELECT user_id FROM (SELECT user_id FROM users UNION "
                "SELECT user_id FROM user_preferences UNION SELECT user_id FROM data_keys) "
                "WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after, _EXPORT_PAGE),
            )
        ]
        users: list[ExportedUser] = []
        for user_id in ids:
            account = _select_user(conn, "user_id", user_id)
            users.append(
                ExportedUser(
                    user_id,
                    None if account is None else account.username,
                    None if account is None else account.password_hash,
                    _load_document(conn, user_id),
                    _select_wrapped_key(conn, user_id),
                )
            )
        return users
