"""Fixtures of the bus tests: a fresh PostgreSQL database, a unique Redis channel, a recorder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from livesettings.bus import BusEvent
from tests.conftest import require_service

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def short_delays() -> Iterator[float]:
    """Reconnection delays for tests: retry quickly, forever."""
    while True:
        yield 0.05


class Recorder:
    """What a bus hands to its node: every event batch and every resync, in order."""

    def __init__(self) -> None:
        self.batches: list[list[BusEvent]] = []
        self.resyncs = 0
        self._changed = asyncio.Event()

    @property
    def events(self) -> list[BusEvent]:
        return [event for batch in self.batches for event in batch]

    def on_events(self, events: Sequence[BusEvent]) -> None:
        self.batches.append(list(events))
        self._changed.set()

    def on_resync(self) -> None:
        self.resyncs += 1
        self._changed.set()

    async def wait(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for state that no callback announces (polling every 10 ms)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - no event announces the bus's own state
            await asyncio.sleep(0.01)


@pytest.fixture
async def pg_url(postgres_available: bool) -> AsyncIterator[str]:
    """A PostgreSQL database of its own (superuser URL), dropped after the test."""
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    import asyncpg

    name = "ls_bus_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pg_admin(pg_url: str) -> AsyncIterator[Any]:
    """A superuser connection to the server (on the ``postgres`` database)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def redis_channel(redis_available: bool) -> str:
    """A channel no other test (or engineer) on this Redis uses."""
    require_service("Redis (127.0.0.1:6379)", redis_available)
    return "ls-test-" + uuid.uuid4().hex[:12]
