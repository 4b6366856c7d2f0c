"""What one user's writes can leave in the database: bounded tombstones, no guessable hashes.

Runs against every backend (see ``conftest.py``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import asyncpg

from livesettings.crypto import Keyring, generate_master_key
from livesettings.document import Limits
from livesettings.records import record_bytes
from livesettings.store import Store
from livesettings.store.planning import body_hash
from livesettings.store.sqlite import SqliteStore

from .conftest import MakeStore
from .test_store import CANARY, commit_one, edit

DELETES_PER_PATCH = 1000  # the most one patch may edit


def deletes(start: int, count: int = DELETES_PER_PATCH) -> dict[str, Any]:
    return {"preferences": {f"k{n}": None for n in range(start, start + count)}}


def tombstone_bytes(records: dict[Any, Any]) -> int:
    return sum(record_bytes(p, r) for p, r in records.items() if r.deleted)


async def every_value(store: Store) -> list[Any]:
    """Every column of every row of every table the store keeps, as the database holds it."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return [v for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for v in row]
        finally:
            conn.close()
    admin = await asyncpg.connect(store.admin_url)  # type: ignore[attr-defined]
    try:
        tables = await admin.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        values: list[Any] = []
        for table in tables:
            for row in await admin.fetch(f'SELECT * FROM public."{table["tablename"]}"'):
                values.extend(row.values())
        return values
    finally:
        await admin.close()


async def test_a_flood_of_deletes_keeps_the_records_within_the_budget(
    make_store: MakeStore,
) -> None:
    budget = Limits().max_tombstone_bytes
    store = await make_store()
    await commit_one(store, edit("u1", "keep", {"preferences": {"kept": 1}}, at=1))
    for number in range(8):
        outcome = await commit_one(
            store, edit("u1", f"flood{number}", deletes(number * DELETES_PER_PATCH), at=2 + number)
        )
        assert outcome.error is None
    doc = await store.get_document("u1")
    assert doc.revision == 9
    assert doc.settings["preferences"] == {"kept": 1}
    # 8,000 deletes were made; what is kept fits the budget, and the value's record stays.
    assert 0 < tombstone_bytes(doc.records) <= budget
    assert doc.records[("preferences", "kept")].rev == 1
    # The newest tombstones are the ones kept: the last patch's whole, the first's none.
    for n in range(7 * DELETES_PER_PATCH, 8 * DELETES_PER_PATCH):
        assert doc.records[("preferences", f"k{n}")].rev == 9
    assert not any(("preferences", f"k{n}") in doc.records for n in range(DELETES_PER_PATCH))


async def test_tombstones_older_than_the_change_log_are_dropped(make_store: MakeStore) -> None:
    store = await make_store(changelog_retain=3)
    await commit_one(store, edit("u1", "d", {"preferences": {"gone": None}}, at=1))
    assert ("preferences", "gone") in (await store.get_document("u1")).records
    for number in range(3):
        outcome = await commit_one(
            store, edit("u1", f"n{number}", {"preferences": {"n": number}}, at=2 + number)
        )
        assert outcome.error is None
    doc = await store.get_document("u1")
    assert doc.revision == 4
    assert ("preferences", "gone") not in doc.records
    assert doc.records[("preferences", "n")].rev == 4


async def test_no_stored_value_is_a_plain_hash_of_a_body_with_a_secret(
    make_store: MakeStore, keyring: Keyring
) -> None:
    store = await make_store()
    patch = {"api_keys": {"openai": CANARY}}
    pending = edit("u1", "secret-1", patch)
    outcome = await commit_one(store, pending)
    assert outcome.error is None
    plain = body_hash("patch", patch)
    guesses = {plain, hashlib.sha256(CANARY.encode()).hexdigest()}
    stored = [v for v in await every_value(store) if isinstance(v, str)]
    assert not [v for v in stored if any(g in v for g in guesses)]
    assert not [v for v in stored if CANARY in v]
    # The remembered hash still tells a repeat from a reused id with another body.
    again = await commit_one(store, edit("u1", "secret-1", patch))
    assert again.repeated and again.revision == outcome.revision
    other = await commit_one(store, edit("u1", "secret-1", {"api_keys": {"openai": CANARY + "x"}}))
    assert other.error is not None and other.error.code == "idempotency_key_reused"


async def test_a_remembered_hash_survives_a_master_key_rotation(
    make_store: MakeStore, keyring: Keyring
) -> None:
    store = await make_store()
    patch = {"api_keys": {"openai": CANARY}}
    first = await commit_one(store, edit("u1", "m1", patch))
    await store.close()
    old = keyring.get(keyring.ids[0])
    rotated = Keyring([generate_master_key(), old])
    reopened = await make_store(keyring=rotated)
    again = await commit_one(reopened, edit("u1", "m1", patch))
    assert again.repeated and again.revision == first.revision
    other = await commit_one(reopened, edit("u1", "m1", {"theme": "dark"}))
    assert other.error is not None and other.error.code == "idempotency_key_reused"
