"""Fixtures of the team tests: a fresh set-up PostgreSQL database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.multinode.conftest import REDIS_URL
from tests.support.postgres import Database, clone_database, drop_database


@pytest.fixture
def pg_database(pg_template: Database) -> Iterator[Database]:
    """A copy of the session's database set up by ``livesettings setup`` (schema 2)."""
    db = clone_database(pg_template)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture
def redis_bus_url(redis_available: bool) -> str:
    """A Redis bus URL on a channel no other test uses."""
    require_service("Redis (127.0.0.1:6379)", redis_available)
    return f"{REDIS_URL}?channel=ls-teams-{uuid.uuid4().hex[:12]}"
