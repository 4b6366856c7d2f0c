"""The pieces of the commit template that need no whole commit: ``run_sync`` and the data
keys, read and written in the real ``data_keys`` table of a set-up SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesettings.crypto import Keyring, WrappedKey, generate_master_key, unwrap_data_key
from livesettings.store.commit import run_sync
from livesettings.store.datakeys import DataKeyCache, get_or_create_data_key
from livesettings.store.sqlite import SqliteStore
from livesettings.store.sqlite_commit import SqliteCommit
from livesettings.store.sqlite_sql import select_wrapped_key


class Table(SqliteCommit):
    """The store's ``data_keys`` (a :class:`~livesettings.store.datakeys.KeyTable`), counting
    the reads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn, 0)
        self.conn = conn
        self.selects = 0

    async def select_wrapped_key(self, user_id: str) -> WrappedKey | None:
        self.selects += 1
        return await super().select_wrapped_key(user_id)

    @property
    def rows(self) -> dict[str, tuple[WrappedKey | None, str]]:
        return {
            row["user_id"]: (select_wrapped_key(self.conn, row["user_id"]), row["created_at"])
            for row in self.conn.execute("SELECT user_id, created_at FROM data_keys")
        }


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    store = SqliteStore(f"sqlite:///{tmp_path / 'keys.db'}")
    asyncio.run(store.setup())
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        yield Table(conn)
    finally:
        conn.close()


def test_run_sync_returns_what_a_coroutine_that_never_suspends_returns() -> None:
    async def answer() -> int:
        return 42

    assert run_sync(answer()) == 42


def test_run_sync_raises_the_coroutine_s_error() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_sync(fail())


def test_run_sync_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(suspends())


def test_a_data_key_is_made_once_then_read_back(table: Table) -> None:
    keyring = Keyring([generate_master_key()])
    cache = DataKeyCache()
    made = run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t0", cache))
    wrapped, created_at = table.rows["u1"]
    assert created_at == "t0"
    assert unwrap_data_key(keyring, "u1", wrapped) == made
    # From the cache (the row is read, never unwrapped again), and without a cache.
    assert run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t1", cache)) == made
    assert run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t1")) == made
    assert list(table.rows) == ["u1"]
    assert table.selects == 3


def test_the_cache_keeps_the_most_recently_used_and_forgets_a_user(table: Table) -> None:
    keyring = Keyring([generate_master_key()])
    cache = DataKeyCache(size=2)
    keys = {
        user: run_sync(get_or_create_data_key(table, keyring, user, lambda: "t", cache))
        for user in ("a", "b")
    }
    assert cache.get("a", table.rows["a"][0]) == keys["a"]  # "a" is now the newest
    run_sync(get_or_create_data_key(table, keyring, "c", lambda: "t", cache))
    assert cache.get("b", table.rows["b"][0]) is None
    assert cache.get("a", table.rows["a"][0]) == keys["a"]
    cache.forget("a")
    assert cache.get("a", table.rows["a"][0]) is None
    cache.clear()
    assert cache.get("c", table.rows["c"][0]) is None
