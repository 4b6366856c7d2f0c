"""Seed adoption: the one rule (pure), and SQLite applying it to a table with duplicate rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from livesettings.crypto import Keyring, new_data_key, open_secret, unwrap_data_key
from livesettings.document import default_document
from livesettings.errors import ConfigError, StorageError
from livesettings.store import SCHEMA_VERSION
from livesettings.store.adoption import (
    ADOPTED_COLUMNS,
    adopt_rows,
    adopted_line,
    cleared_line,
    keyring_for_sealing,
)
from livesettings.store.commit import sealer

from .conftest import NOW_MS, MakeStore


def row(**values: Any) -> dict[str, Any]:
    return {
        "theme": None,
        "language": None,
        "preferences": None,
        "ai_providers": None,
        "api_keys": None,
        "created_at": None,
        "updated_at": None,
        **values,
    }


def test_duplicate_rows_merge_into_the_latest_field_by_field() -> None:
    newest = row(theme="dark", preferences='{"a": {"x": 2}}', updated_at="2024-02-01")
    oldest = row(
        theme="light",
        language="fr",
        preferences='{"a": {"x": 1, "y": 1}, "b": 1}',
        created_at="2024-01-01",
        updated_at="2024-01-15",
    )
    adoption = adopt_rows("u1", [newest, row(created_at="2024-01-05"), oldest])
    assert adoption.settings == {
        **default_document(),
        "theme": "dark",
        "language": "fr",
        "preferences": {"a": {"x": 2, "y": 1}, "b": 1},
    }
    assert (adoption.created_at, adoption.updated_at) == ("2024-01-01", "2024-02-01")
    assert adoption.lines == ("user u1: merged 3 duplicate rows (the latest updated_at wins)",)
    assert adoption.plaintext == 0
    assert dict(zip(ADOPTED_COLUMNS, adoption.columns(), strict=True)) == {
        "theme": "dark",
        "language": "fr",
        "preferences": '{"a":{"x":2,"y":1},"b":1}',
        "ai_providers": "{}",
        "api_keys": "{}",
        "created_at": "2024-01-01",
        "updated_at": "2024-02-01",
    }


def test_invalid_values_reset_to_their_default_and_are_reported() -> None:
    adoption = adopt_rows("u2", [row(theme="purple", preferences="{not json", language="en")])
    assert adoption.settings == default_document()
    assert adoption.lines == (
        "user u2: reset invalid theme to its default",
        "user u2: reset invalid preferences to its default",
    )


def test_plaintext_keys_are_sealed_and_never_leave_in_clear() -> None:
    adoption = adopt_rows("u3", [row(api_keys=json.dumps({"openai": "sk-plaintext-0001"}))])
    assert adoption.plaintext == 1
    with pytest.raises(StorageError, match="not sealed"):
        adoption.columns()
    key = new_data_key()
    sealed = adoption.sealed(sealer("u3", key, NOW_MS))
    assert sealed.plaintext == 0
    assert sealed.lines == ("user u3: sealed 1 API key(s)",)
    envelope = sealed.settings["api_keys"]["openai"]
    assert open_secret("u3", "openai", envelope, key) == "sk-plaintext-0001"
    assert sealed.sealed(sealer("u3", key, NOW_MS)) is sealed


def test_lines_and_the_missing_keyring() -> None:
    assert adopted_line(3) == "adopted 3 existing user_preferences row(s)"
    assert cleared_line(1) == "cleared the api_keys of 1 user_preferences row(s) without a user_id"
    with pytest.raises(ConfigError, match=r"plaintext API keys.*LIVESETTINGS_MASTER_KEYS"):
        keyring_for_sealing(None)
    with pytest.raises(ValueError):
        adopt_rows("u", [])


OLD_KEYS = json.dumps({"openai": "sk-old-secret-000"})
NEW_KEYS = json.dumps({"anthropic": "sk-new-secret-000"})
SEED_ROWS = [
    # user_id, preferences, api_keys, theme, created_at, updated_at
    ("dup", '{"font": 12}', OLD_KEYS, "light", "2024-01-01", "2024-01-02"),
    ("dup", '{"size": 3}', NEW_KEYS, "dark", "2024-01-03", "2024-02-01"),
    ("solo", None, None, "system", None, None),
    (None, None, json.dumps({"openai": "sk-orphan-secret0"}), None, None, None),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_adopts_duplicate_rows_as_postgres_does(
    tmp_path: Path, make_store: MakeStore, keyring: Keyring
) -> None:
    path = tmp_path / "dups.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # No UNIQUE on user_id, and a row without a user: what a lax seed may hold.
        conn.execute(
            "CREATE TABLE user_preferences (id INTEGER PRIMARY KEY, user_id TEXT, "
            "preferences TEXT, api_keys TEXT, ai_providers TEXT, theme TEXT, language TEXT, "
            "created_at TEXT, updated_at TEXT)"
        )
        conn.executemany(
            "INSERT INTO user_preferences (user_id, preferences, api_keys, theme, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            SEED_ROWS,
        )
    finally:
        conn.close()
    store = await make_store("dups", setup=False)
    lines = await store.setup()
    assert [line for line in lines if line.startswith(("user ", "adopted", "cleared"))] == [
        "cleared the api_keys of 1 user_preferences row(s) without a user_id",
        "user dup: merged 2 duplicate rows (the latest updated_at wins)",
        "user dup: sealed 2 API key(s)",
        "adopted 2 existing user_preferences row(s)",
    ]
    assert "created unique index user_preferences_user_id_key" in lines
    await store.open()
    doc = await store.get_document("dup")
    keys = doc.settings["api_keys"]
    assert doc.settings == {
        **default_document(),
        "theme": "dark",
        "preferences": {"font": 12, "size": 3},
        "api_keys": keys,
    }
    assert (doc.revision, doc.created_at, doc.updated_at) == (0, "2024-01-01", "2024-02-01")
    wrapped = await store.get_wrapped_key("dup")
    assert wrapped is not None
    data_key = unwrap_data_key(keyring, "dup", wrapped)
    assert open_secret("dup", "anthropic", keys["anthropic"], data_key) == "sk-new-secret-000"
    assert open_secret("dup", "openai", keys["openai"], data_key) == "sk-old-secret-000"
    assert (await store.get_document("solo")).settings == {**default_document(), "theme": "system"}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("SELECT count(*) FROM user_preferences").fetchone() == (3,)
        assert conn.execute(
            "SELECT api_keys FROM user_preferences WHERE user_id IS NULL"
        ).fetchone() == ("{}",)
    finally:
        conn.close()
    assert await store.setup() == [f"schema is up to date (version {SCHEMA_VERSION})"]
