"""``livesettings migrate``: each backend's setup run as a migration of a live database, or as
a dry run whose SQL is recorded.

Both backends make their schema changes inside one transaction (DDL is transactional in
PostgreSQL and SQLite alike), so the dry run is the real setup, run to its end in a transaction
that is then rolled back: the SQL it prints is exactly what ``migrate`` would run, read from
the database as it is, and nothing is changed. Only statements that would change something
are recorded (DDL and DML, not the catalog reads setup decides by); a password in a
``CREATE ROLE`` is masked.

On PostgreSQL, nodes keep writing while the migration runs, and setup takes ``ACCESS
EXCLUSIVE`` locks table by table (``ALTER POLICY``, ``ENABLE ROW LEVEL SECURITY``). Holding
one of them while waiting for another that a node's transaction holds — while that transaction
waits for the first — is a deadlock, which PostgreSQL ends by aborting one side. So
:func:`lock_tables` first takes every existing table's lock in one statement, waiting at most
:data:`LOCK_WAIT` (shorter than PostgreSQL's 1 s deadlock check) and retrying from a savepoint
that gives back whatever it got: the nodes' writes wait for the migration (a fraction of a
second), none fails.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..crypto import DataKey, Keyring
from ..errors import StorageError
from .base import SCHEMA_VERSION
from .commit import CommitTemplate, run_sync
from .sqlite import sqlite_path
from .sqlite_commit import SqliteCommit
from .sqlite_schema import record_setup

__all__ = [
    "LOCK_ATTEMPTS_S",
    "LOCK_WAIT",
    "Migration",
    "Recorder",
    "dry_run_sqlite",
    "lock_tables",
    "migrate_in",
    "shown_statement",
    "sql_literal",
]

_PARAMETER: Final = re.compile(r"\$(\d+)")
_PASSWORD: Final = re.compile(r"(PASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE)
_READS: Final = ("SELECT", "SET ", "SHOW", "LOCK ", "--")

LOCK_WAIT: Final = "200ms"
"""How long one attempt at the tables' locks waits (below PostgreSQL's ``deadlock_timeout``)."""
LOCK_ATTEMPTS_S: Final = 60.0
"""How long the migration keeps trying to take the locks before it gives up."""


@dataclass(frozen=True, slots=True)
class Migration:
    """What a migration did (or would do): setup's report, and the SQL it ran (or would)."""

    lines: list[str]
    statements: list[str]


def sql_literal(value: object) -> str:
    """``value`` as an SQL literal, for showing a statement with its parameters bound."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def shown_statement(statement: str, args: Sequence[object] = ()) -> str:
    """A statement as printed: parameters bound, a role's password masked."""
    text = statement.strip()
    if args:
        text = _PARAMETER.sub(
            lambda m: sql_literal(args[int(m[1]) - 1]) if 0 < int(m[1]) <= len(args) else m[0],
            text,
        )
    return _PASSWORD.sub(r"\1'***'", text)


def dry_run_sqlite(url: str, keyring: Keyring | None) -> Migration:
    """Setup of the SQLite database at ``url``, rolled back (the file must exist)."""
    uri = sqlite_path(url).absolute().as_uri() + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the SQLite database {sqlite_path(url)}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        now_ms = int(time.time() * 1000)
        # The same data-key rule as the store's writer: a sealed seed secret shows its insert.
        keys = CommitTemplate(keyring, None, None, 1, lambda: now_ms)

        def data_key(user_id: str) -> DataKey:
            return run_sync(keys.data_key(SqliteCommit(conn, 0), user_id))

        lines, recorded = record_setup(conn, keyring=keyring, data_key=data_key, now_ms=now_ms)
    except sqlite3.Error as exc:
        raise StorageError(f"the SQLite database failed: {exc}") from exc
    finally:
        conn.close()
    return Migration(lines, [shown_statement(statement) for statement in recorded])


class Recorder:
    """An asyncpg connection that notes every ``execute``/``executemany`` that is not a read;
    everything else passes through (``fetch*``, ``transaction``: savepoints nest as usual)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.statements: list[str] = []

    def _note(self, query: str, args: Sequence[object]) -> None:
        if not query.lstrip().upper().startswith(_READS):
            self.statements.append(shown_statement(query, args))

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._note(query, args)
        return await self._conn.execute(query, *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        rows = list(args)
        for row in rows:
            self._note(command, row)
        return await self._conn.executemany(command, rows, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def lock_tables(conn: Any, *, attempts_s: float = LOCK_ATTEMPTS_S) -> None:
    """Take ``ACCESS EXCLUSIVE`` locks on every existing livesettings table, all at once, in
    the caller's transaction (see the module docstring); ``StorageError`` after ``attempts_s``."""
    import asyncpg

    from .pg_tables import TABLES

    names = [
        row["name"]
        for row in await conn.fetch(
            "SELECT pg_catalog.format('public.%I', c.relname) AS name, c.relname "
            "FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])",
            list(TABLES),
        )
    ]
    if not names:
        return
    deadline = time.monotonic() + attempts_s
    pause = 0.02
    while True:
        try:
            async with conn.transaction():  # a savepoint: a failed attempt gives back its locks
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                await conn.execute(f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE")
            break
        except asyncpg.LockNotAvailableError:
            if time.monotonic() > deadline:
                raise StorageError(
                    f"could not lock the livesettings tables for the migration within "
                    f"{attempts_s:g} s: a long transaction holds them; try again"
                ) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
    await conn.execute("SET LOCAL lock_timeout = DEFAULT")


async def migrate_in(
    conn: Any,
    *,
    dry_run: bool,
    app_role: str,
    app_password: str | None,
    keyring: Keyring | None,
    now_ms: int,
    sql_writer: str | None,
) -> Migration:
    """PostgreSQL's setup on the owner's connection ``conn``: every table locked first
    (:func:`lock_tables`: nodes that keep writing wait, none deadlocks with it), then
    ``setup_schema`` with its statements recorded, committed — or rolled back (``dry_run``).

    When rows were rewritten (adopted, merged, secrets sealed), ``VACUUM FULL`` rewrites
    ``user_preferences`` afterwards, so no dead row version keeps an old plaintext value in
    the table's files (the WAL and backups keep theirs until they are recycled).
    """
    from .pg_scrub import SCRUB_STATEMENT, scrub_after_setup
    from .postgres_schema import setup_schema

    recorder = Recorder(conn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await lock_tables(conn)
        result = await setup_schema(
            recorder,  # the connection, its statements recorded
            app_role=app_role,
            app_password=app_password,
            keyring=keyring,
            now_ms=now_ms,
            sql_writer=sql_writer,
        )
    except BaseException:
        await transaction.rollback()
        raise
    await (transaction.rollback() if dry_run else transaction.commit())
    lines, statements = result.lines, recorder.statements
    if result.rewrote_rows:  # after the commit: VACUUM cannot run in a transaction
        statements = [*statements, SCRUB_STATEMENT]
        if not dry_run:
            lines = [*lines, *await scrub_after_setup(conn)]
    return Migration(lines or [f"schema is up to date (version {SCHEMA_VERSION})"], statements)
