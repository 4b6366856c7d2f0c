"""Helpers for the client tests: tokens, polling, the server's view, a cuttable network.

Clients get short *real* reconnect delays (``backoff(0.05, 2, 0.2)``), never a fake clock.
:class:`Proxy` is a real TCP forwarder in front of the server: ``cut()`` drops every
connection through it and refuses new ones until ``restore()`` — a network partition for one
client while the server keeps running for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from livesettings.auth import TokenIssuer
from livesettings.client import AsyncClient, backoff
from tests.support.server import TEST_JWT_SECRET, ServerProcess

ISSUER = TokenIssuer(TEST_JWT_SECRET.encode())


def fast_delays() -> Iterator[float]:
    """Real but short reconnect delays for tests."""
    return backoff(0.05, 2.0, 0.2)


def token_for(user_id: str, **kwargs: Any) -> str:
    return ISSUER.issue(user_id, **kwargs)[0]


def service_token() -> str:
    return ISSUER.issue("svc", role="service")[0]


def new_user() -> str:
    return "user-" + uuid.uuid4().hex[:12]


async def eventually(predicate: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``predicate`` on the running loop until it is truthy."""
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.01)


def server_changes(server: ServerProcess, user_id: str) -> list[dict[str, Any]]:
    """The user's change log, read over HTTP."""
    with server.client() as http:
        response = http.get(
            "/v1/settings/changes",
            params={"since": 0, "limit": 1000},
            headers={"Authorization": f"Bearer {token_for(user_id)}"},
        )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return list(body["changes"])


def server_settings(server: ServerProcess, user_id: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(
            "/v1/settings", headers={"Authorization": f"Bearer {token_for(user_id)}"}
        )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


class MakeClient(Protocol):
    def __call__(
        self, url: str, token: Any, *, start: bool = ..., **options: Any
    ) -> Awaitable[AsyncClient]:
        """An AsyncClient with fast reconnect delays, started unless ``start=False`` and
        closed after the test."""


class Proxy:
    """A TCP forwarder to ``127.0.0.1:<port>`` that the test can cut and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Drop every connection and refuse new ones (they are closed at once)."""
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
