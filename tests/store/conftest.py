"""The storage suite runs against every backend: one ``store`` fixture per entry of FACTORIES.

A backend joins by adding a factory to :data:`FACTORIES` (and, when it needs a server, a skip
inside its factory): every test of ``test_store.py`` that is not named ``test_sqlite_…`` then
runs against it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from livesettings.crypto import Keyring, generate_master_key
from livesettings.store import Store
from livesettings.store.sqlite import SqliteStore

NOW_MS = 1_764_349_200_000  # 2025-11-28T17:00:00.000Z


class Clock:
    """The store's clock (``now_ms=``): fixed unless a test moves it."""

    def __init__(self, now: int = NOW_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class MakeStore(Protocol):
    def __call__(self, name: str = ..., *, setup: bool = ..., **kwargs: Any) -> Awaitable[Store]:
        """A store of the backend under test on database ``name``; set up and opened unless
        ``setup=False``; closed after the test."""


def _sqlite(tmp_path: Path, name: str, **kwargs: Any) -> Store:
    return SqliteStore(f"sqlite:///{tmp_path / name}.db", **kwargs)


FACTORIES: dict[str, Callable[..., Store]] = {"sqlite": _sqlite}
"""backend name → ``factory(tmp_path, name, **store_kwargs)`` building an unopened store."""


@pytest.fixture(params=list(FACTORIES))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([generate_master_key()])


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, clock: Clock, keyring: Keyring
) -> AsyncIterator[MakeStore]:
    made: list[Store] = []

    async def make(name: str = "main", *, setup: bool = True, **kwargs: Any) -> Store:
        kwargs.setdefault("keyring", keyring)
        kwargs.setdefault("now_ms", clock)
        store = FACTORIES[backend](tmp_path, name, **kwargs)
        made.append(store)
        if setup:
            await store.setup()
            await store.open()
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()
