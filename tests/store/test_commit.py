"""The pieces of the commit template that need no database: ``run_sync`` and the data keys."""

from __future__ import annotations

import asyncio

import pytest

from livesettings.crypto import Keyring, WrappedKey, generate_master_key, unwrap_data_key
from livesettings.store.commit import run_sync
from livesettings.store.datakeys import DataKeyCache, get_or_create_data_key


class Table:
    """``data_keys`` as a dict (a :class:`~livesettings.store.datakeys.KeyTable`)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[WrappedKey, str]] = {}
        self.selects = 0

    async def select_wrapped_key(self, user_id: str) -> WrappedKey | None:
        self.selects += 1
        row = self.rows.get(user_id)
        return None if row is None else row[0]

    async def insert_wrapped_key(self, user_id: str, wrapped: WrappedKey, created_at: str) -> None:
        assert user_id not in self.rows
        self.rows[user_id] = (wrapped, created_at)


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


def test_a_data_key_is_made_once_then_read_back() -> None:
    keyring = Keyring([generate_master_key()])
    table, cache = Table(), DataKeyCache()
    made = run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t0", cache))
    wrapped, created_at = table.rows["u1"]
    assert created_at == "t0"
    assert unwrap_data_key(keyring, "u1", wrapped) == made
    # From the cache (the row is read, never unwrapped again), and without a cache.
    assert run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t1", cache)) == made
    assert run_sync(get_or_create_data_key(table, keyring, "u1", lambda: "t1")) == made
    assert list(table.rows) == ["u1"]
    assert table.selects == 3


def test_the_cache_keeps_the_most_recently_used_and_forgets_a_user() -> None:
    keyring = Keyring([generate_master_key()])
    table, cache = Table(), DataKeyCache(size=2)
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
