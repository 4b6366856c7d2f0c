"""The versioned migration files and the checks of a recorded schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from livesettings.errors import ConfigError
from livesettings.store import SCHEMA_VERSION
from livesettings.store.migrations import parse_version, refuse_newer, require_current, schema

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
def test_both_backends_name_the_same_tables_and_indexes(backend: str) -> None:
    ddl = schema(backend)  # type: ignore[arg-type]
    assert ddl.version == SCHEMA_VERSION
    assert list(ddl.tables) == TABLES
    assert set(ddl.indexes) == INDEXES
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


def test_recorded_versions_are_checked_with_the_fix_named() -> None:
    assert parse_version(None) is None
    assert parse_version("1") == 1
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_version("x")
    refuse_newer(None, "database")
    refuse_newer(SCHEMA_VERSION, "database")
    with pytest.raises(ConfigError, match="the database has schema version 99, newer than"):
        refuse_newer(99, "database")
    require_current(SCHEMA_VERSION, "database x")
    with pytest.raises(ConfigError, match="the database x has no livesettings schema; run"):
        require_current(None, "database x")
    with pytest.raises(ConfigError, match="schema version 0; run `livesettings setup` to upgr"):
        require_current(0, "database x")
