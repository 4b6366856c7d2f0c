"""A minimal keep-alive HTTP/1.1 client for open-loop load: one request in flight per
connection, a pool that grows to a cap. It costs a fraction of what a general-purpose client
does, so the generator is not what limits the rate. Used by ``bench/load.py`` and
``bench/pocketbase.py``."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

__all__ = ["Counters", "HttpPool"]

_PERF = time.perf_counter


@dataclass
class Counters:
    """What a run counts (HTTP side and device side)."""

    ok: int = 0
    answered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    received: int = 0
    duplicates: int = 0
    gaps: int = 0
    foreign: int = 0
    misrouted: int = 0
    ws_errors: int = 0
    ws_closed: int = 0
    max_in_flight: int = 0
    max_queued: int = 0


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.job = -1
        self.need = -1  # bytes of the whole response once its head is parsed, else -1
        self.body_at = 0
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, job: int, data: bytes) -> None:
        assert self.transport is not None
        self.job = job
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.job >= 0:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\ncontent-length:")
                if at < 0:  # the server always sends a length; anything else is a bug
                    self.status = 0
                    self._abort()
                    return
                line_end = head.find(b"\r", at + 1)
                try:
                    length = int(head[at + 16 : line_end if line_end > 0 else None].strip())
                except ValueError:
                    self.status = 0
                    self._abort()
                    return
                self.body_at = end + 4
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            body = bytes(buf[self.body_at : self.need]) if self.status != 200 else b""
            del buf[: self.need]
            job, self.job, self.need = self.job, -1, -1
            self.pool.done(self, job, self.status, body)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class HttpPool:
    """Sends each write on an idle connection, opens more up to a cap, else queues it.

    A queued write still has its scheduled time: waiting for a connection counts as latency,
    which is the point of an open-loop generator.
    """

    def __init__(
        self,
        host: str,
        port: int,
        max_conns: int,
        request: Callable[[int], bytes],
        on_done: Callable[[int, int, bytes], None],
        sent: array[float],
        counters: Counters,
    ) -> None:
        self.host, self.port = host, port
        self.max_conns = max_conns
        self.request = request
        self.on_done = on_done
        self.sent = sent
        self.counters = counters
        self.conns: set[_Conn] = set()
        self.idle: list[_Conn] = []  # a stack: hot connections are reused, cold ones expire
        self.queue: deque[int] = deque()
        self.opening = 0
        self.in_flight = 0
        self.tries: dict[int, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self, count: int) -> None:
        await asyncio.gather(*(self._open() for _ in range(count)))

    async def _open(self) -> None:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.queue and not self.conns and not self.opening:
                # No way to reach the server: fail what waits rather than hang.
                while self.queue:
                    self._fail(self.queue.popleft())
            return
        self.opening -= 1
        self.conns.add(conn)
        self._ready(conn)

    def submit(self, job: int) -> None:
        if self.idle:
            self._send(self.idle.pop(), job)
            return
        self.queue.append(job)
        self.counters.max_queued = max(self.counters.max_queued, len(self.queue))
        if len(self.conns) + self.opening < self.max_conns:
            self._spawn()

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._open())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send(self, conn: _Conn, job: int) -> None:
        self.in_flight += 1
        self.counters.max_in_flight = max(self.counters.max_in_flight, self.in_flight)
        self.sent[job] = _PERF()
        conn.send(job, self.request(job))

    def _ready(self, conn: _Conn) -> None:
        if self.queue:
            self._send(conn, self.queue.popleft())
        else:
            self.idle.append(conn)

    def done(self, conn: _Conn, job: int, status: int, body: bytes) -> None:
        self.in_flight -= 1
        self.on_done(job, status, body)
        self._ready(conn)

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.job >= 0:
            # The server closed a keep-alive connection as the request went out. Sending it
            # again is safe: the Idempotency-Key makes the write exactly-once.
            self.in_flight -= 1
            job, conn.job = conn.job, -1
            tries = self.tries.get(job, 0) + 1
            self.tries[job] = tries
            self.counters.retries += 1
            if tries > 3:
                self._fail(job)
            else:
                self.queue.appendleft(job)
        if self.queue and len(self.conns) + self.opening < self.max_conns:
            self._spawn()

    def _fail(self, job: int) -> None:
        self.on_done(job, 0, b"connection failed")

    def close(self) -> None:
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        for task in self.tasks:
            task.cancel()
