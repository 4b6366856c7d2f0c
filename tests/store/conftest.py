"""The storage suite runs against every backend: one ``store`` fixture per entry of FACTORIES.

A backend joins by adding a factory to :data:`FACTORIES` (it may be async), a cleanup to
:data:`CLEANUPS` when it makes things outside ``tmp_path``, and its marks and service check to
:data:`SERVICES`: every test of ``test_store.py`` that is not named ``test_sqlite_…`` then runs
against it too. PostgreSQL gets a scratch database per store name and per test, owned by a
non-superuser owner role, with the app role ``setup`` creates (see ``tests/postgres/cluster``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from livesettings.crypto import Keyring, generate_master_key
from livesettings.store import Store
from livesettings.store.sqlite import SqliteStore
from tests.conftest import require_service
from tests.postgres.cluster import drop_scratch, scratch_for

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


async def _postgres(tmp_path: Path, name: str, **kwargs: Any) -> Store:
    from livesettings.store.postgres import PostgresStore

    scratch = scratch_for(tmp_path)
    database = await scratch.database(name)
    return PostgresStore(
        scratch.app_url(database), admin_url=scratch.admin_url(database), pool_size=4, **kwargs
    )


FACTORIES: dict[str, Callable[..., Store | Awaitable[Store]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}
"""backend name → ``factory(tmp_path, name, **store_kwargs)`` building an unopened store."""

CLEANUPS: dict[str, Callable[[Path], Awaitable[None]]] = {"postgres": drop_scratch}
"""backend name → what to drop after a test (servers' databases and roles)."""

SERVICES: dict[str, tuple[str, str, pytest.MarkDecorator]] = {
    "postgres": ("PostgreSQL on 127.0.0.1:5432", "postgres_available", pytest.mark.postgres),
}
"""backend name → (service, its availability fixture, its mark)."""


@pytest.fixture(
    params=[
        pytest.param(name, marks=[SERVICES[name][2]] if name in SERVICES else [])
        for name in FACTORIES
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name in SERVICES:
        service, fixture, _ = SERVICES[name]
        require_service(service, bool(request.getfixturevalue(fixture)))
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
        built = FACTORIES[backend](tmp_path, name, **kwargs)
        store = await built if inspect.isawaitable(built) else built
        made.append(store)
        if setup:
            await store.setup()
            await store.open()
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.close()
        if backend in CLEANUPS:
            await CLEANUPS[backend](tmp_path)


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()
