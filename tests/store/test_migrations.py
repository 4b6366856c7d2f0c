"""The versioned migration files and the checks of a recorded schema version."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from livesettings.errors import ConfigError
from livesettings.store import SCHEMA_VERSION
from livesettings.store.migrating import dry_run_sqlite, shown_statement, sql_literal
from livesettings.store.migrations import (
    SERVES_NEWER,
    Backend,
    check_servable,
    migration_files,
    parse_version,
    pending_migrations,
    refuse_newer,
    schema,
    statements,
)
from livesettings.store.sqlite import SqliteStore

TABLES = [
    "livesettings_meta",
    "user_preferences",
    "settings_changes",
    "applied_mutations",
    "users",
    "refresh_tokens",
    "session_revocations",
    "token_revocations",
    "data_keys",
    "teams",
    "team_members",
]
PG_ONLY_TABLES = ["sql_writes"]  # version 3: writes made in SQL, queued (PostgreSQL only)
PG_ONLY_INDEXES = {"sql_writes_user"}
INDEXES = {
    "applied_mutations_created",
    "refresh_tokens_user",
    "refresh_tokens_family",
    "data_keys_master",
    "session_revocations_user",
    "user_preferences_user_id_key",
    "team_members_user",
}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_both_backends_name_the_same_tables_and_indexes(backend: Backend) -> None:
    ddl = schema(backend)
    assert ddl.version == SCHEMA_VERSION
    pg = backend == "postgres"
    # Version 3 also adds admins (the /admin dashboard), after PostgreSQL's sql_writes.
    assert list(ddl.tables) == [*TABLES, *(PG_ONLY_TABLES if pg else []), "admins"]
    assert set(ddl.indexes) == INDEXES | (PG_ONLY_INDEXES if pg else set())
    assert {"revision", "leaf_meta", "created_at", "updated_at"} <= set(ddl.columns)
    assert all(
        statement.startswith("CREATE TABLE IF NOT EXISTS") for statement in ddl.tables.values()
    )


def test_the_sqlite_file_creates_a_schema_twice_without_error(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db")
    try:
        ddl = schema("sqlite")
        for _ in range(2):
            for statement in [*ddl.tables.values(), *ddl.indexes.values()]:
                if "IF NOT EXISTS" in statement:
                    conn.execute(statement)
        created = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert set(TABLES) <= created
    finally:
        conn.close()


def test_recorded_versions_are_checked_with_the_fix_named(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_version(None) is None
    assert parse_version("1") == 1
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_version("x")
    refuse_newer(None, "database")
    refuse_newer(SCHEMA_VERSION, "database")
    with pytest.raises(
        ConfigError,
        match=rf"the database has schema version 99, newer than this livesettings \(schema "
        rf"{SCHEMA_VERSION}\) can set up or migrate; upgrade livesettings",
    ):
        refuse_newer(99, "database")
    with pytest.raises(ConfigError):
        refuse_newer(SCHEMA_VERSION + 1, "database")  # setup never records an older version

    assert check_servable(SCHEMA_VERSION, "database x") is None
    with pytest.raises(ConfigError, match="the database x has no livesettings schema; run"):
        check_servable(None, "database x")
    with pytest.raises(
        ConfigError,
        match=rf"schema version 0, older than this livesettings \(schema {SCHEMA_VERSION}\); "
        r"run `livesettings migrate` \(or `livesettings setup`\) to upgrade it",
    ):
        check_servable(0, "database x")
    newer = SCHEMA_VERSION + SERVES_NEWER
    with caplog.at_level(logging.WARNING, logger="livesettings.store"):
        warning = check_servable(newer, "database x")
    assert warning == (
        f"the database x has schema version {newer}, newer than this livesettings (schema "
        f"{SCHEMA_VERSION}): serving it, as during a rolling upgrade; upgrade this node to the "
        f"release of schema {newer}"
    )
    assert [r.getMessage() for r in caplog.records] == [warning]
    with pytest.raises(
        ConfigError,
        match=rf"the database x has schema version {newer + 1}, newer than this livesettings "
        rf"supports: this livesettings \(schema "
        rf"{SCHEMA_VERSION}\) serves {SCHEMA_VERSION} and {newer} only; upgrade livesettings",
    ):
        check_servable(newer + 1, "database x")


_CONTRACTING = re.compile(r"\b(DROP|RENAME|TRUNCATE)\b", re.I)
"""Words no statement of a migration holds (DELETE or UPDATE can only be a statement's verb,
which the allowed forms exclude; ``ON DELETE CASCADE`` is a foreign key's)."""
_ALTERING = re.compile(r"\b(ALTER\s+COLUMN|TYPE|SET\s+NOT\s+NULL|SET\s+DEFAULT)\b", re.I)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_migration_is_expand_only(backend: Backend) -> None:
    """Versions 1 to SCHEMA_VERSION, each file only adding (so the release before it still
    works on the database it leaves): no table defined twice, no column added NOT NULL
    without a default, nothing dropped, renamed, retyped or rewritten."""
    files = migration_files(backend)
    assert [version for version, _ in files] == list(range(1, SCHEMA_VERSION + 1))
    created: set[str] = set()
    for _, name in files:
        for statement in statements(backend, name):
            assert not _CONTRACTING.search(statement), f"{backend}/{name}: {statement[:80]}"
            table = re.match(r"CREATE TABLE IF NOT EXISTS (?:public\.)?(\w+)", statement)
            if table:
                assert table[1] not in created, f"{backend}/{name} redefines {table[1]}"
                created.add(table[1])
                continue
            if re.match(r"ALTER TABLE", statement):
                assert " ADD COLUMN " in statement, statement
                assert not _ALTERING.search(statement), statement
                assert "NOT NULL" not in statement or "DEFAULT" in statement, statement
                continue
            assert re.match(r"CREATE (UNIQUE )?INDEX", statement), statement


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pending_migrations_are_named_by_file(backend: Backend) -> None:
    names = [name.removesuffix(".sql") for _, name in migration_files(backend)]
    assert pending_migrations(backend, None) == names
    assert pending_migrations(backend, SCHEMA_VERSION - 1) == names[-1:]
    assert pending_migrations(backend, SCHEMA_VERSION) == []
    assert pending_migrations(backend, SCHEMA_VERSION + 1) == []


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
async def test_a_sqlite_database_of_any_version_is_migrated(version: int, tmp_path: Path) -> None:
    """Files 1..version applied and recorded, as that release's setup left them; the current
    setup brings it to SCHEMA_VERSION, and the store then opens it."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    try:
        for _, name in migration_files("sqlite")[:version]:
            for statement in statements("sqlite", name):
                if "IF NOT EXISTS" in statement:  # what setup runs only when missing
                    conn.execute(statement)
        conn.execute(
            "CREATE UNIQUE INDEX user_preferences_user_id_key ON user_preferences (user_id)"
        )
        conn.execute("INSERT INTO livesettings_meta VALUES ('schema_version', ?)", (str(version),))
        conn.commit()
    finally:
        conn.close()
    store = SqliteStore(f"sqlite:///{path}")
    try:
        with pytest.raises(ConfigError, match=f"schema version {version}, older than"):
            await store.open()
        lines = await store.setup()
        assert lines[-1] == f"recorded schema version {SCHEMA_VERSION}"
        await store.open()
        assert await store.schema_version() == SCHEMA_VERSION
    finally:
        await store.close()


def test_a_recorded_statement_is_shown_with_its_parameters_and_no_password() -> None:
    assert shown_statement("INSERT INTO t VALUES ($1, $2, $3, $10)", ["it's", 3, None]) == (
        "INSERT INTO t VALUES ('it''s', 3, NULL, $10)"
    )
    shown = shown_statement("CREATE ROLE \"app\" LOGIN PASSWORD 'se''cret' NOSUPERUSER")
    assert shown == "CREATE ROLE \"app\" LOGIN PASSWORD '***' NOSUPERUSER"
    assert sql_literal(True) == "true"


def test_the_sqlite_dry_run_changes_nothing(tmp_path: Path) -> None:
    """A database at the previous version, one index missing: the dry run shows the index
    and the version it would record, and leaves the file as it was."""
    path = tmp_path / "dry.db"
    conn = sqlite3.connect(path)
    try:
        for _, name in migration_files("sqlite")[: SCHEMA_VERSION - 1]:
            for statement in statements("sqlite", name):
                if "IF NOT EXISTS" in statement and "team_members_user" not in statement:
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO livesettings_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION - 1),)
        )
        conn.commit()
        before = list(conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"))
    finally:
        conn.close()
    migration = dry_run_sqlite(f"sqlite:///{path}", None)
    assert migration.lines[-1] == f"recorded schema version {SCHEMA_VERSION}"
    assert schema("sqlite").indexes["team_members_user"] in migration.statements
    assert migration.statements[-1].startswith(
        f"INSERT INTO livesettings_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')"
    )
    conn = sqlite3.connect(path)
    try:
        after = list(conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"))
        version = conn.execute("SELECT value FROM livesettings_meta").fetchone()[0]
    finally:
        conn.close()
    assert (after, version) == (before, str(SCHEMA_VERSION - 1))
