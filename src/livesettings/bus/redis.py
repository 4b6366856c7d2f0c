"""``redis://…``: Redis pub/sub between nodes, the option for deployments that run Redis.

URL: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS), optionally with
``?channel=NAME`` to choose the channel (default ``livesettings``: nodes that share a channel
share their events, so separate deployments on one Redis need their own).

``publish`` sends one message per group commit, a compact JSON list of ``[user_id, revision]``
entries, each with its change (masked patch: no plaintext secret crosses the bus) when that
takes at most :data:`CHANGE_LIMIT` bytes, and hands the events to this node's own listener at
once; the echo that comes back through Redis is a no-op for the hub.

The node listens on a dedicated subscriber connection with the driver's silent reconnection
turned off, so a lost connection (``CLIENT KILL``, a Redis restart, a probe ``PING`` left
unanswered) is seen here: the bus reconnects with backoff, subscribes again, waits for Redis to
confirm, and only then calls ``on_resync`` so the hub catches every subscriber up from the
change log — messages published while the node was deaf are not needed.

Unlike PostgreSQL's NOTIFY, a publish happens after the commit, so a node that dies between
its commit and its publish leaves other nodes to learn of that change at their next event for
the user or their next resync; clients reconnecting with ``since`` always catch up.

Node heartbeats (``server/nodes.py``) go on a channel of their own, the channel's name and
``.nodes``, subscribed to on the same connection: a node of 0.1.0 subscribes only to the
events' channel, where an entry it does not know would read as malformed and make it resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import ConfigError, StorageError
from ..urls import redact_url
from .base import (
    NODES_SUFFIX,
    BusEvent,
    OnEvents,
    OnResync,
    ReconnectingBus,
    backoff_delays,
    default_name,
)
from .notify import decode_events, encode_events

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "the redis bus needs the redis package: pip install 'livesettings[redis]'"
    ) from exc

__all__ = ["CHANGE_LIMIT", "DEFAULT_CHANNEL", "RedisBus", "decode_message", "encode_message"]

log = logging.getLogger("livesettings.bus")

DEFAULT_CHANNEL: Final = "livesettings"

CHANGE_LIMIT: Final = 64 * 1024
"""Bytes of one event's entry up to which a message carries its change."""


def encode_message(events: Sequence[BusEvent], change_limit: int = CHANGE_LIMIT) -> str:
    """One message for a group commit: ``[[user_id, revision, change?], …]``, never split."""
    if not events:
        return "[]"
    return encode_events(events, limit=sys.maxsize, change_limit=change_limit)[0]


def decode_message(data: bytes | str) -> list[BusEvent]:
    """The events of one message; ``ValueError`` when it is not a list of id pairs."""
    return decode_events(data)


def _split_url(url: str) -> tuple[str, str | None]:
    """The URL without our ``channel`` query parameter (redis-py would refuse it), and it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    channel = next((v for k, v in query if k == "channel"), None)
    rest = urlencode([(k, v) for k, v in query if k != "channel"])
    return parts._replace(query=rest).geturl(), channel


class _Lost(Exception):
    """The subscriber connection stopped answering."""


class RedisBus(ReconnectingBus):
    """Redis pub/sub; see the module docstring.

    ``channel`` overrides the URL's ``?channel=``; ``client_name`` is what ``CLIENT LIST``
    shows for both connections (default ``livesettings-bus/<process id>@<host>``);
    ``reconnect_delays`` makes the backoff generator; ``probe_interval`` is how long a quiet
    subscriber waits before checking with ``PING``.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        client_name: str | None = None,
        reconnect_delays: Callable[[], Iterable[float]] = backoff_delays,
        probe_interval: float = 10.0,
        probe_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        **_: Any,
    ) -> None:
        super().__init__(url, reconnect_delays, probe_interval, probe_timeout, connect_timeout)
        self._redis_url, url_channel = _split_url(url)
        self.channel = channel or url_channel or DEFAULT_CHANNEL
        self.beats_channel = self.channel + NODES_SUFFIX
        self._beats_names = (self.beats_channel.encode(), self.beats_channel)  # bytes or text
        self.client_name = client_name or default_name()
        self._pub: Any = None
        self._sub: Any = None
        self._pubsub: Any = None
        self._up = False

    @property
    def connected(self) -> bool:
        """Whether the node is subscribed right now."""
        return self._up

    # -- the Bus protocol -----------------------------------------------------------------
    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None:
        """Connect and subscribe; ``StorageError`` when Redis cannot be reached."""
        self._on_events, self._on_resync = on_events, on_resync
        common: dict[str, Any] = {
            "client_name": self.client_name,
            "socket_connect_timeout": self._connect_timeout,
        }
        try:
            self._pub = aioredis.Redis.from_url(
                self._redis_url, socket_timeout=self._probe_timeout, **common
            )
            # No silent retries on the subscriber: every reconnection must be seen to resync.
            self._sub = aioredis.Redis.from_url(
                self._redis_url, retry=Retry(NoBackoff(), 0), **common
            )
            await self._subscribe()
        except (RedisError, OSError, ValueError) as exc:
            await self._close_clients()
            raise StorageError(
                f"the redis bus cannot subscribe on {redact_url(self._redis_url)}: {exc}"
            ) from exc
        self._task = asyncio.create_task(self._listen(), name="livesettings-redis-bus")

    async def _send(self, events: Sequence[BusEvent]) -> None:
        """One message to every node."""
        if self._pub is None:
            raise StorageError("the redis bus is not started")
        try:
            await self._pub.publish(self.channel, encode_message(events))
        except (RedisError, OSError) as exc:
            raise StorageError(f"the redis bus could not publish: {exc}") from exc

    async def publish_beat(self, payload: str) -> None:
        """One heartbeat on the heartbeats' channel."""
        if self._pub is None:
            raise StorageError("the redis bus is not started")
        try:
            await self._pub.publish(self.beats_channel, payload)
        except (RedisError, OSError) as exc:
            raise StorageError(f"the redis bus could not send a heartbeat: {exc}") from exc

    async def ping(self) -> None:
        """``StorageError`` unless the subscriber is connected and Redis answers."""
        if not self._up or self._pub is None:
            raise StorageError("the redis bus has lost its subscriber connection; reconnecting")
        try:
            await self._pub.ping()
        except (RedisError, OSError) as exc:
            raise StorageError(f"the redis bus is unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._stop_task()
        await self._close_clients()

    # -- the subscriber connection --------------------------------------------------------
    async def _subscribe(self) -> None:
        """A fresh subscriber connection, subscribed once Redis has confirmed it."""
        pubsub = self._sub.pubsub()
        self._pubsub = pubsub
        # The events' channel is confirmed first; the heartbeats' confirmation, when it comes,
        # is one more message the reading loop skips.
        channels = (self.channel, self.beats_channel) if self._on_beat else (self.channel,)
        await pubsub.subscribe(*channels)
        async with asyncio.timeout(self._connect_timeout):
            while True:
                message = await pubsub.get_message(timeout=self._connect_timeout)
                if message is not None and message["type"] == "subscribe":
                    break
        self._up = True

    async def _drop_subscriber(self) -> None:
        self._up = False
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _close_clients(self) -> None:
        await self._drop_subscriber()
        for client in (self._sub, self._pub):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._sub = self._pub = None

    async def _listen(self) -> None:
        while not self._closing:
            try:
                await self._read()
            except (RedisError, OSError, _Lost, TimeoutError) as exc:
                if self._closing:
                    return
                log.warning("the redis bus lost its subscriber connection (%s); reconnecting", exc)
                await self._reconnect()

    async def _read(self) -> None:
        awaiting_pong = False
        while True:
            message = await self._pubsub.get_message(timeout=self._probe_interval)
            if message is None:
                # Quiet for a while: a half-open connection never reports its loss by itself.
                if awaiting_pong:
                    raise _Lost("no answer to PING")
                await self._pubsub.ping()
                awaiting_pong = True
                continue
            awaiting_pong = False
            if message["type"] != "message":
                continue
            if message["channel"] in self._beats_names:
                self._heard_beat(message["data"])
                continue
            try:
                events = decode_message(message["data"])
            except ValueError:
                # We cannot tell what changed: asking the change log is always correct.
                log.warning("ignoring a malformed bus message; resyncing")
                self._resync()
                continue
            self._deliver(events)

    async def _resubscribe(self) -> None:
        try:
            await self._subscribe()
        except BaseException:
            await self._drop_subscriber()
            raise

    async def _reconnect(self) -> None:
        await self._drop_subscriber()
        await self._reconnect_with_backoff(
            self._resubscribe,
            (RedisError, OSError, TimeoutError),
            "the redis bus cannot resubscribe yet",
            "the redis bus is subscribed again; catching subscribers up",
        )
