"""``postgres``: PostgreSQL LISTEN/NOTIFY, the default bus with a PostgreSQL store (DESIGN §7).

Each node holds one dedicated asyncpg connection that does nothing but ``LISTEN`` on
:data:`NOTIFY_CHANNEL`. A notification's payload is the PostgreSQL store's (one codec, in
:mod:`livesettings.bus.notify`): a compact JSON list of ``[user_id, revision]`` entries, each
with its change (masked patch, ids, time, conflicts — never a plaintext secret) when that fits
a payload, split into several notifications past :data:`NOTIFY_PAYLOAD_LIMIT` bytes, under
NOTIFY's 8,000. A change that does not fit is read from the change log, once per node.

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

Node heartbeats (``server/nodes.py``) go on a channel of their own, :data:`NOTIFY_CHANNEL` +
``.nodes``, listened to on the same connection: a node of 0.1.0 listens only on the events'
channel, where an entry it does not know would read as malformed and make it resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, StorageError
from ..urls import redact_url

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "the postgres bus needs the asyncpg package: pip install 'livesettings[postgres]'"
    ) from exc

from .base import (
    NODES_SUFFIX,
    BusEvent,
    OnEvents,
    OnResync,
    ReconnectingBus,
    backoff_delays,
    default_name,
)
from .notify import NOTIFY_CHANNEL, NOTIFY_PAYLOAD_LIMIT, ORIGIN, decode_events, encode_events

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "PostgresBus",
    "backoff_delays",
    "decode_events",
    "encode_events",
]

log = logging.getLogger("livesettings.bus")


def _target(url: str) -> tuple[str, int, str]:
    """(host, port, database) of a PostgreSQL URL: notifications are per database."""
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/")) or unquote(parts.username or "")
    try:
        port = parts.port
    except ValueError as exc:  # a port that is not a number: say so, not a traceback
        raise ConfigError(f"the database URL {redact_url(url)!r} is malformed: {exc}") from exc
    return (parts.hostname or "localhost", port or 5432, database)


class PostgresBus(ReconnectingBus):
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
        super().__init__(url, reconnect_delays, probe_interval, probe_timeout, connect_timeout)
        self.application_name = application_name or default_name()
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
        self.beats_channel = channel + NODES_SUFFIX
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the listening connection
        self._lost = asyncio.Event()

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
                f"the postgres bus cannot listen on {redact_url(self._dsn)}: {exc}"
            ) from exc
        self._task = asyncio.create_task(self._supervise(), name="livesettings-pg-bus")

    async def _send(self, events: Sequence[BusEvent]) -> None:
        """Notify the other nodes, unless the store's commit already did."""
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

    async def publish_beat(self, payload: str) -> None:
        """One heartbeat on the heartbeats' channel (a NOTIFY outside any commit)."""
        conn = self._conn
        if not self.connected:
            raise StorageError("the postgres bus is not connected; cannot send a heartbeat")
        try:
            async with self._lock:
                await conn.execute(
                    "SELECT pg_notify($1, $2)",
                    self.beats_channel,
                    payload,
                    timeout=self._probe_timeout,
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageError(f"the postgres bus could not send a heartbeat: {e}") from e

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
        await self._stop_task()
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
            if self._on_beat is not None:
                await conn.add_listener(self.beats_channel, self._on_beat_notify)
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
            # This process's own store notifications come back without their changes: the
            # writer answers its mutations before its own publish brings the rows.
            events = decode_events(payload, local=ORIGIN)
        except ValueError:
            # We cannot tell what changed: asking the change log is always correct.
            log.warning("ignoring a malformed bus payload %r; resyncing", payload[:200])
            self._resync()
            return
        self._deliver(events)

    def _on_beat_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._heard_beat(payload)

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
        await self._reconnect_with_backoff(
            self._connect,
            (Exception,),
            "the postgres bus cannot reconnect yet",
            "the postgres bus is listening again; catching subscribers up",
        )
