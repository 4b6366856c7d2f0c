"""Fixtures of the admin tests: a set-up PostgreSQL database per test, stores of each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from livesettings.store import Store
from livesettings.store.postgres import PostgresStore
from livesettings.store.sqlite import SqliteStore
from tests.support.postgres import Database, clone_database, drop_database


@pytest.fixture
def pg_database(pg_template: Database) -> Iterator[Database]:
    """A copy of the session's database set up by ``livesettings setup``."""
    db = clone_database(pg_template)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend (PostgreSQL: a set-up copy, served as the app role)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'admin.db'}"
    db: Database = request.getfixturevalue("pg_database")
    return db.app_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    made: Store
    if store_url.startswith("sqlite"):
        made = SqliteStore(store_url)
        await made.setup()
    else:
        made = PostgresStore(store_url)
    await made.open()
    try:
        yield made
    finally:
        await made.close()
