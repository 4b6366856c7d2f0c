"""Fixtures for the client tests: a real server, fast clients, proxies, cache paths."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livesettings.client import AsyncClient
from tests.client.helpers import MakeClient, Proxy, fast_delays
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that never stop it (each test uses its own users)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server") / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[AsyncClient] = []

    async def make(url: str, token: Any, *, start: bool = True, **options: Any) -> AsyncClient:
        options.setdefault("reconnect_delays", fast_delays)
        options.setdefault("connect_timeout", 5.0)
        client = AsyncClient(url, token, **options)
        clients.append(client)
        if start:
            await client.start()
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def make_proxy() -> AsyncIterator[Callable[[ServerProcess], Awaitable[Proxy]]]:
    proxies: list[Proxy] = []

    async def make(server: ServerProcess) -> Proxy:
        proxy = Proxy(server.port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
def cache_path(tmp_path: Path) -> str:
    return str(tmp_path / "client-cache.db")
