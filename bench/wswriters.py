"""Writes as WebSocket ``update`` frames instead of HTTP ``PATCH`` (W3 over WebSockets).

One extra socket per user, authenticated but not subscribed, carries that user's writes: so
the ``change`` frames the devices get are all from another socket, as with HTTP, and the
writer socket gets only its ``ack`` (or ``error``) per write, which answers the write. The
interface is the HTTP pool's (``submit(job)``, ``close()``), so ``bench/load.py`` schedules
both the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["WsWriters"]

_PERF = time.perf_counter


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class WsWriters:
    """The writer sockets of the users who write through one node."""

    def __init__(
        self,
        host: str,
        port: int,
        mid_prefix: str,
        body: Callable[[int], bytes],
        user_of: array[int],
        on_done: Callable[[int, int, bytes], None],
        sent: array[float],
    ) -> None:
        self.url = f"ws://{host}:{port}/v1/realtime"
        self.mid_prefix = mid_prefix
        self.body = body
        self.user_of = user_of
        self.on_done = on_done
        self.sent = sent
        self.sockets: dict[int, ClientConnection] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.closing = False

    async def open(self, users: dict[int, str], client_prefix: str) -> None:
        """One socket per user (``users``: user index → token), authenticated."""
        gate = asyncio.Semaphore(50)

        async def one(u: int, token: str) -> None:
            async with gate:
                ws = await connect(
                    self.url,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    max_size=4 * 1024 * 1024,
                    max_queue=4096,
                    open_timeout=20,
                    close_timeout=2,
                )
                auth = {"type": "auth", "token": token, "client_id": f"{client_prefix}-ws-{u}"}
                await ws.send(json.dumps(auth))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if frame.get("type") != "auth_ok":
                    raise RuntimeError(f"writer socket of user {u} refused: {frame}")
                self.sockets[u] = ws
                self.readers.append(asyncio.create_task(self._read(ws)))

        await asyncio.gather(*(one(u, t) for u, t in users.items()))

    def submit(self, job: int) -> None:
        ws = self.sockets[self.user_of[job]]
        frame = b'{"type":"update","mutation_id":"%s%d","base_revision":null,"patch":%s,' % (
            self.mid_prefix.encode(),
            job,
            self.body(job),
        ) + b'"edited_at":%d}' % int(time.time() * 1000)
        self.sent[job] = _PERF()
        # A text frame: the protocol is JSON text frames.
        task = asyncio.get_running_loop().create_task(ws.send(frame.decode()))
        # A failed send closes the socket: the write stays unanswered, which the report shows.
        task.add_done_callback(_retrieve)

    async def _read(self, ws: ClientConnection) -> None:
        cut = len(self.mid_prefix)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                mid = frame.get("mutation_id")
                if kind not in ("ack", "error") or not isinstance(mid, str):
                    continue
                if not mid.startswith(self.mid_prefix):
                    continue
                job = int(mid[cut:])
                if kind == "ack":
                    self.on_done(job, 200, b"")
                else:
                    self.on_done(job, 600, json.dumps(frame).encode())
        except Exception:  # a closed socket ends the reader; unanswered writes show it
            return

    @property
    def queue(self) -> list[int]:
        """Writes waiting for a socket: none (each is sent at once); for the pool's report."""
        return []

    async def aclose(self) -> None:
        self.closing = True
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets.values()), return_exceptions=True)
