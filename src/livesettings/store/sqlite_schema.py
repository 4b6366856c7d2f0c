"""SQLite setup: the migration files applied, and a seed-style ``user_preferences`` adopted.

:func:`setup_schema` runs on the writer's connection inside the caller's transaction, is
idempotent, and returns what it did line by line; :func:`record_setup` runs it in a transaction
that is rolled back, recording its statements (``livesettings migrate --dry-run``). The tables,
columns and indexes are ``migrations/sqlite/``'s; the adoption rule is
:mod:`livesettings.store.adoption`'s, the same as PostgreSQL's: this module only reads the rows
and writes what it decides.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from typing import Final

from ..crypto import DataKey, Keyring
from ..document import FIELDS
from .adoption import (
    ADOPTED_COLUMNS,
    adopt_rows,
    adopted_line,
    cleared_line,
    keyring_for_sealing,
)
from .base import SCHEMA_VERSION
from .commit import sealer
from .migrations import parse_version, refuse_newer, schema
from .planning import Sealer

__all__ = ["read_schema_version", "record_setup", "setup_schema"]

_UNIQUE_USER_INDEX: Final = "user_preferences_user_id_key"

_ADOPTED_UPDATE: Final = (
    "UPDATE user_preferences SET "
    + ", ".join(f"{name} = ?" for name in ADOPTED_COLUMNS)
    + ", leaf_meta = '{}' WHERE rowid = ?"
)


def read_schema_version(conn: sqlite3.Connection) -> int | None:
    """The recorded schema version; None without a meta table or a recorded version."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'livesettings_meta'"
    ).fetchone():
        return None
    row = conn.execute(
        "SELECT value FROM livesettings_meta WHERE key = 'schema_version'"
    ).fetchone()
    return parse_version(None if row is None else row["value"])


def setup_schema(
    conn: sqlite3.Connection,
    *,
    keyring: Keyring | None,
    data_key: Callable[[str], DataKey],
    now_ms: int,
) -> list[str]:
    """Create or upgrade the schema and adopt seed rows, in the caller's transaction.

    ``data_key(user_id)`` gets or makes a user's data key, for sealing plaintext API keys.
    """
    ddl = schema("sqlite")
    lines: list[str] = []
    version = read_schema_version(conn)
    refuse_newer(version, "database")
    existing = {
        row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    for name, statement in ddl.tables.items():
        if name not in existing:
            conn.execute(statement)
            lines.append(f"created table {name}")
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(user_preferences)")}
    for name, statement in ddl.columns.items():
        if name not in columns:
            conn.execute(statement)
            lines.append(f"added column user_preferences.{name}")
    indexes = dict(ddl.indexes)
    unique = indexes.pop(_UNIQUE_USER_INDEX)
    for name, statement in indexes.items():
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).fetchone():
            conn.execute(statement)
            lines.append(f"created index {name}")

    def seal_for(user_id: str) -> Sealer:
        keyring_for_sealing(keyring)
        return sealer(user_id, data_key(user_id), now_ms)

    lines.extend(_adopt_seed_rows(conn, seal_for))
    if not _has_unique_user_index(conn):
        conn.execute(unique)  # duplicates were merged by the adoption just before
        lines.append(f"created unique index {_UNIQUE_USER_INDEX}")
    if version != SCHEMA_VERSION:
        conn.execute(
            "INSERT INTO livesettings_meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        lines.append(f"recorded schema version {SCHEMA_VERSION}")
    return lines


_READ_ONLY: Final = (
    "SELECT",
    "PRAGMA",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "--",
)


def record_setup(
    conn: sqlite3.Connection,
    *,
    keyring: Keyring | None,
    data_key: Callable[[str], DataKey],
    now_ms: int,
) -> tuple[list[str], list[str]]:
    """:func:`setup_schema` in a transaction that is always rolled back: what it would report,
    and the statements that would change the database (reads left out), parameters bound.

    ``conn`` must be in autocommit mode (``isolation_level=None``) with no open transaction.
    """
    recorded: list[str] = []

    def trace(statement: str) -> None:
        if not statement.lstrip().upper().startswith((*_READ_ONLY, "--")):
            recorded.append(statement.strip())

    conn.execute("BEGIN IMMEDIATE")  # DDL is transactional in SQLite: the rollback undoes it
    try:
        conn.set_trace_callback(trace)
        try:
            lines = setup_schema(conn, keyring=keyring, data_key=data_key, now_ms=now_ms)
        finally:
            conn.set_trace_callback(None)
    finally:
        conn.execute("ROLLBACK")
    return lines, recorded


def _adopt_seed_rows(conn: sqlite3.Connection, seal_for: Callable[[str], Sealer]) -> list[str]:
    """Bring rows livesettings never wrote (``leaf_meta`` NULL) into the document shape, by
    :func:`~livesettings.store.adoption.adopt_rows`; ``seal_for(user_id)`` seals its keys."""
    lines: list[str] = []
    # A row without a user is nobody's settings, but its secrets must not stay in clear.
    cleared = conn.execute(
        "UPDATE user_preferences SET api_keys = '{}' "
        "WHERE user_id IS NULL AND api_keys IS NOT NULL AND api_keys <> '{}'"
    ).rowcount
    if cleared > 0:
        lines.append(cleared_line(cleared))
    rows = conn.execute(
        f"SELECT rowid AS row_id, user_id, {', '.join(FIELDS)}, created_at, updated_at "
        "FROM user_preferences WHERE leaf_meta IS NULL AND user_id IS NOT NULL "
        "ORDER BY user_id, updated_at DESC NULLS LAST, created_at DESC NULLS LAST, rowid DESC"
    ).fetchall()
    users = 0
    for user_id, grouped in itertools.groupby(rows, key=lambda row: row["user_id"]):
        group = list(grouped)
        adoption = adopt_rows(user_id, group)
        if adoption.plaintext:
            adoption = adoption.sealed(seal_for(user_id))
        lines.extend(adoption.lines)
        conn.execute(_ADOPTED_UPDATE, (*adoption.columns(), group[0]["row_id"]))
        conn.executemany(
            "DELETE FROM user_preferences WHERE rowid = ?", [(row["row_id"],) for row in group[1:]]
        )
        users += 1
    if users:
        lines.append(adopted_line(users))
    return lines


def _has_unique_user_index(conn: sqlite3.Connection) -> bool:
    """Whether a unique index on ``user_id`` alone (as ``ON CONFLICT (user_id)`` needs) exists."""
    return (
        conn.execute(
            "SELECT 1 FROM pragma_index_list('user_preferences') AS l "
            "JOIN pragma_index_info(l.name) AS i "
            "WHERE l.[unique] AND NOT l.partial GROUP BY l.name "
            "HAVING count(*) = 1 AND max(i.name) = 'user_id'"
        ).fetchone()
        is not None
    )
