"""The fan-out bus: after a commit a node publishes ``(user_id, revision)``; every node hears it.

An event may also carry the committed change (its effective, masked patch: what a ``change``
frame shows, never a plaintext secret) when it fits the transport's message
(:mod:`livesettings.bus.notify`); other nodes then push it without reading the change log. An
event without it (too big, a membership event, an older node) makes them read the log once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..backoff import backoff
from ..store.base import ChangeRow

__all__ = [
    "NODES_SUFFIX",
    "BeatBus",
    "Bus",
    "BusEvent",
    "Listeners",
    "OnBeat",
    "OnEvents",
    "OnResync",
    "ReconnectingBus",
    "backoff_delays",
    "change_events",
    "default_name",
]

log = logging.getLogger("livesettings.bus")


@dataclass(frozen=True, slots=True)
class BusEvent:
    """A user's document reached ``revision``; ``changes`` are the change rows that led there
    in one group commit, in order, when the message carried them (masked patches, no
    ``inverse``). Events compare by their ids."""

    user_id: str
    revision: int
    changes: tuple[ChangeRow, ...] = field(default=(), compare=False, repr=False)


def change_events(changes: Sequence[ChangeRow]) -> list[BusEvent]:
    """The events of one group commit's changes: one per user, at its newest revision, with
    that user's rows in order."""
    rows: dict[str, list[ChangeRow]] = {}
    for change in changes:
        rows.setdefault(change.user_id, []).append(change)  # a user's revisions ascend
    return [BusEvent(user_id, own[-1].revision, tuple(own)) for user_id, own in rows.items()]


OnEvents = Callable[[Sequence[BusEvent]], None]
"""Called on the event loop with the events of one published batch."""

OnResync = Callable[[], None]
"""Called after the bus reconnected: events may have been missed, catch up from the log."""


OnBeat = Callable[[str], None]
"""Called on the event loop with one node heartbeat (its JSON text, see ``server/nodes.py``)."""

NODES_SUFFIX = ".nodes"
"""The heartbeats' channel is the events' channel and this: a channel of their own, so that a
node of 0.1.0 on the same bus, which takes any entry it does not know for a malformed payload
(and resyncs every subscriber), never hears them."""


@runtime_checkable
class BeatBus(Protocol):
    """A bus that also carries node heartbeats, on a channel of their own."""

    def listen_beats(self, on_beat: OnBeat) -> None:
        """Hear heartbeats from :meth:`start` on (this node's own included)."""

    async def publish_beat(self, payload: str) -> None:
        """Send one heartbeat to every node; ``StorageError`` when the bus cannot."""


@runtime_checkable
class Bus(Protocol):
    url: str

    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None: ...

    async def publish(self, events: Sequence[BusEvent]) -> None:
        """One message for the whole group commit."""

    async def ping(self) -> None:
        """Raise ``StorageError`` when the bus is unreachable."""

    async def close(self) -> None: ...


class Listeners:
    """The hub's two callbacks as a networked bus holds them; a failing one is logged, never
    allowed to stop the bus's listening loop."""

    _on_events: OnEvents | None = None
    _on_resync: OnResync | None = None
    _on_beat: OnBeat | None = None

    def listen_beats(self, on_beat: OnBeat) -> None:
        """Hear node heartbeats too (call before ``start``)."""
        self._on_beat = on_beat

    def _heard_beat(self, payload: str | bytes) -> None:
        if self._on_beat is None:
            return
        try:
            self._on_beat(payload.decode() if isinstance(payload, bytes) else payload)
        except Exception:
            log.exception("a heartbeat listener failed")

    def _deliver(self, events: Sequence[BusEvent]) -> None:
        if self._on_events is None:
            return
        try:
            self._on_events(events)
        except Exception:
            log.exception("a bus listener failed")

    def _resync(self) -> None:
        if self._on_resync is None:
            return
        try:
            self._on_resync()
        except Exception:
            log.exception("a bus resync listener failed")


def backoff_delays(first: float = 0.05, cap: float = 5.0) -> Iterator[float]:
    """A networked bus's default reconnection delays: :func:`livesettings.backoff.backoff`
    from ``first`` doubling up to ``cap``, each drawn from ``[d/2, d]`` so that nodes that lost
    the same server do not come back in lockstep."""
    return backoff(first, 2.0, cap, jitter=0.5)


def default_name() -> str:
    """``livesettings-bus/<process id>@<host>``: what the server lists for a node's connection.

    Process id first: PostgreSQL cuts names at 63 bytes, and the pid tells nodes apart.
    """
    return f"livesettings-bus/{os.getpid()}@{socket.gethostname()}"[:63]


class ReconnectingBus(Listeners):
    """What the PostgreSQL and Redis buses share: one supervising task, a probe, and a
    reconnection loop that sleeps the backoff's delays and resyncs only once listening again."""

    def __init__(
        self,
        url: str,
        reconnect_delays: Callable[[], Iterable[float]],
        probe_interval: float,
        probe_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.url = url
        self.reconnects = 0
        """How many times the listening connection was re-established (for tests, metrics)."""
        self._delays = reconnect_delays
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def publish(self, events: Sequence[BusEvent]) -> None:
        """Deliver to this node's own listener at once, then send to the other nodes."""
        if not events:
            return
        self._deliver(events)
        await self._send(events)

    async def _send(self, events: Sequence[BusEvent]) -> None:
        raise NotImplementedError

    async def _stop_task(self) -> None:
        """Mark the bus closing and end its supervising task."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _reconnect_with_backoff(
        self,
        attempt: Callable[[], Awaitable[None]],
        errors: tuple[type[BaseException], ...],
        retrying: str,
        back: str,
    ) -> None:
        """Call ``attempt`` until it succeeds (or the bus closes), then resync the hub.

        ``retrying`` and ``back`` are the log lines of a failed attempt and of success.
        """
        delays = iter(self._delays())
        delay = 1.0
        while True:
            if self._closing:
                return
            try:
                await attempt()
                break
            except errors as exc:
                log.warning("%s: %s", retrying, exc)
                delay = next(delays, delay)  # a finite schedule repeats its last delay
                await asyncio.sleep(delay)
        if self._closing:
            return
        self.reconnects += 1
        log.info(back)
        # Listening again before resyncing: whatever is published from now on arrives,
        # whatever committed before is in the change log the hub now reads.
        self._resync()
