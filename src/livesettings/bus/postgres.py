"""``postgres``: PostgreSQL LISTEN/NOTIFY, the default bus with a PostgreSQL store (DESIGN §7).

Each node holds one dedicated asyncpg connection that does nothing but ``LISTEN`` on
:data:`NOTIFY_CHANNEL`. A notification's payload is the PostgreSQL store's (one codec, in
:mod:`livesettings.store.postgres`): a compact JSON list of ``[user_id, revision]`` pairs —
ids only, so no secret crosses the bus — split into several notifications only past
:data:`NOTIFY_PAYLOAD_LIMIT` bytes, far under NOTIFY's 8,000.

Who sends the NOTIFY: when the store commits to the same database the bus listens on (the
default, bus URL ``postgres``), the PostgreSQL store calls ``pg_notify`` inside its own group
commit transaction — one notification per committed transaction, delivered by PostgreSQL only
if and when that transaction commits. :meth:`PostgresBus.publish` then sends nothing on the
network. Otherwise (the bus names another database, or the store is not PostgreSQL)
``publish`` issues the notification itself, one statement per group commit.

Either way ``publish`` also hands the events to this node's own listener at once, so local
subscribers do not wait for the round trip through the server; the echo that arrives later is
a no-op for the hub, which pushes each revision once.

A node that loses its listening connection (``pg_terminate_backend``, a restart, a network
failure — found by the connection closing or by a periodic probe) reconnects with backoff,
listens again and only then calls ``on_resync``, so the hub catches every subscriber up from
the change log: nothing committed while the node was deaf is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, StorageError

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "the postgres bus needs the asyncpg package: pip install 'livesettings[postgres]'"
    ) from exc

from ..store.postgres import (  # the store's payload format: one codec for both ends
    NOTIFY_CHANNEL,
    NOTIFY_PAYLOAD_LIMIT,
    notify_payloads,
    parse_notify_payload,
)
from .base import BusEvent, Listeners, OnEvents, OnResync

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "PostgresBus",
    "backoff_delays",
    "decode_events",
    "encode_events",
]

log = logging.getLogger("livesettings.bus")


def encode_events(events: Sequence[BusEvent]) -> list[str]:
    """The store's payloads ``[[user_id, revision], …]``, split at ``NOTIFY_PAYLOAD_LIMIT``."""
    return notify_payloads([(e.user_id, e.revision) for e in events])


def decode_events(payload: str) -> list[BusEvent]:
    """The events of one payload; ``ValueError`` when it is not a list of id pairs."""
    return [BusEvent(user_id, revision) for user_id, revision in parse_notify_payload(payload)]


def backoff_delays(first: float = 0.05, cap: float = 5.0) -> Iterator[float]:
    """Reconnection delays: exponential from ``first`` up to ``cap``, with jitter so that
    nodes that lost the same server do not come back in lockstep."""
    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(cap, delay * 2)


def _target(url: str) -> tuple[str, int, str]:
    """(host, port, database) of a PostgreSQL URL: notifications are per database."""
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/")) or unquote(parts.username or "")
    try:
        port = parts.port
    except ValueError as exc:  # a port that is not a number: say so, not a traceback
        raise ConfigError(f"the database URL {_redacted(url)!r} is malformed: {exc}") from exc
    return (parts.hostname or "localhost", port or 5432, database)


def _default_name() -> str:
    # Process id first: PostgreSQL cuts names at 63 bytes, and the pid tells nodes apart.
    return f"livesettings-bus/{os.getpid()}@{socket.gethostname()}"[:63]


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class PostgresBus(Listeners):
    """LISTEN/NOTIFY on a dedicated connection; see the module docstring.

    ``url`` is ``postgres`` (listen on ``database_url``) or a ``postgresql://`` URL of its own.
    ``store_notifies`` says whether the store already notifies inside its transactions; by
    default it does when ``database_url`` is the PostgreSQL database the bus listens on.
    ``reconnect_delays`` makes the backoff generator (tests pass short ones);
    ``probe_interval`` is how often an idle listening connection is checked with a query;
    ``application_name`` is what ``pg_stat_activity`` shows for it (default
    ``livesettings-bus/<process id>@<host>``, so an operator can tell the nodes apart).
    """

    def __init__(
        self,
        url: str,
        *,
        database_url: str | None = None,
        store_notifies: bool | None = None,
        channel: str = NOTIFY_CHANNEL,
        reconnect_delays: Callable[[], Iterable[float]] = backoff_delays,
        probe_interval: float = 10.0,
        probe_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        application_name: str | None = None,
        **_: Any,
    ) -> None:
        self.url = url
        self.application_name = application_name or _default_name()
        store_is_pg = bool(database_url) and str(database_url).startswith(
            ("postgres://", "postgresql://")
        )
        if url == "postgres":
            if not store_is_pg:
                raise ConfigError(
                    "the postgres bus listens on the PostgreSQL database: set "
                    "LIVESETTINGS_DATABASE_URL=postgresql://…, or give the bus its own URL"
                )
            assert database_url is not None
            self._dsn = database_url
        elif url.startswith(("postgres://", "postgresql://")):
            self._dsn = url
        else:
            raise ConfigError(f"not a PostgreSQL bus URL: {url!r}")
        if store_notifies is None:
            store_notifies = store_is_pg and _target(str(database_url)) == _target(self._dsn)
        self.store_notifies = store_notifies
        self.channel = channel
        self.reconnects = 0
        """How many times the listening connection was re-established (for tests, metrics)."""
        self._delays = reconnect_delays
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the listening connection
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the node is listening right now."""
        conn = self._conn
        return conn is not None and not conn.is_closed() and not self._lost.is_set()

    # -- the Bus protocol -----------------------------------------------------------------
    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None:
        """Connect and listen; ``StorageError`` when the database cannot be reached."""
        self._on_events, self._on_resync = on_events, on_resync
        try:
            await self._connect()
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(
                f"the postgres bus cannot listen on {_redacted(self._dsn)}: {exc}"
            ) from exc
        self._task = asyncio.create_task(self._supervise(), name="livesettings-pg-bus")

    async def publish(self, events: Sequence[BusEvent]) -> None:
        """Deliver locally now; notify the other nodes unless the store's commit already did."""
        if not events:
            return
        self._deliver(events)
        if self.store_notifies:
            return
        conn = self._conn
        if conn is None or conn.is_closed():
            raise StorageError("the postgres bus is not connected; cannot notify")
        try:
            async with self._lock:
                # One statement, one transaction: several notifications only for huge batches.
                await conn.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                    self.channel,
                    encode_events(events),
                    timeout=self._probe_timeout,
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageError(f"the postgres bus could not notify: {e}") from e

    async def ping(self) -> None:
        """``StorageError`` unless the listening connection is up and answers a query."""
        conn = self._conn
        if not self.connected:
            raise StorageError("the postgres bus has lost its listening connection; reconnecting")
        try:
            async with self._lock:
                await conn.fetchval("SELECT 1", timeout=self._probe_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageError(f"the postgres bus is unreachable: {e}") from e

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_terminated)
            try:
                await asyncio.wait_for(conn.close(), self._probe_timeout)
            except Exception:  # closing a broken connection must not fail shutdown
                conn.terminate()

    # -- the listening connection ---------------------------------------------------------
    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": self.application_name},
        )
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._lost.clear()

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn and not self._closing:
            log.warning("the postgres bus lost its listening connection; reconnecting")
            self._lost.set()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            events = decode_events(payload)
        except ValueError:
            # We cannot tell what changed: asking the change log is always correct.
            log.warning("ignoring a malformed bus payload %r; resyncing", payload[:200])
            self._resync()
            return
        self._deliver(events)

    async def _supervise(self) -> None:
        """Probe the idle connection; on loss reconnect with backoff, listen, then resync."""
        while not self._closing:
            try:
                await asyncio.wait_for(self._lost.wait(), self._probe_interval)
            except TimeoutError:
                await self._probe()
                continue
            await self._reconnect()

    async def _probe(self) -> None:
        # A half-open TCP connection never reports its loss by itself; a query does.
        conn = self._conn
        if conn is None:
            self._lost.set()
            return
        try:
            async with self._lock:
                await conn.fetchval("SELECT 1", timeout=self._probe_timeout)
        except Exception as exc:
            log.warning("the postgres bus probe failed (%s); reconnecting", exc)
            self._lost.set()
            conn.terminate()

    async def _reconnect(self) -> None:
        old, self._conn = self._conn, None
        if old is not None and not old.is_closed():
            old.terminate()
        delays = iter(self._delays())
        delay = 1.0
        while True:
            if self._closing:
                return
            try:
                await self._connect()
                break
            except Exception as exc:
                log.warning("the postgres bus cannot reconnect yet: %s", exc)
                delay = next(delays, delay)  # a finite schedule repeats its last delay
                await asyncio.sleep(delay)
        self.reconnects += 1
        log.info("the postgres bus is listening again; catching subscribers up")
        # Listening again before resyncing: whatever commits after this is notified, whatever
        # committed before is in the change log the hub now reads.
        self._resync()
