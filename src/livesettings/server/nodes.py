"""Node heartbeats over the bus: every node says who it is every 2 s and keeps the others'.

A heartbeat is a JSON object ``{node_id, version, started_at, connections, bus_lag_ms, at}``
(``at``: the sender's wall clock, Unix seconds; ``stopping: true`` on the last one of a node
that shuts down). It travels on a channel of its own (see ``bus/base.py``: ``NODES_SUFFIX``),
which nodes of 0.1.0 do not listen to.

``bus_lag_ms`` is how long this node's own previous heartbeat took to come back to it over the
bus (publish to receipt, on this node's monotonic clock: no clock skew between nodes enters
it); ``None`` until one came back.

A node not heard for :data:`MISSED_BEATS` beats (or that said it was stopping) is shown
``stale``; after :data:`FORGET_AFTER` seconds it is forgotten. At most :data:`MAX_NODES` are
kept, so a noisy bus cannot grow this node's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..bus import BeatBus, Bus
from ..clock import Clock

__all__ = [
    "BEAT_INTERVAL",
    "FORGET_AFTER",
    "MAX_NODES",
    "MISSED_BEATS",
    "Heartbeats",
    "NodeBeat",
    "new_node_id",
    "parse_beat",
]

log = logging.getLogger("livesettings.server")

BEAT_INTERVAL: Final = 2.0
"""Seconds between two heartbeats of a node."""

MISSED_BEATS: Final = 3
"""Beats a node may miss before it is shown stale."""

FORGET_AFTER: Final = 300.0
"""Seconds after its last heartbeat a node leaves the table."""

MAX_NODES: Final = 256
"""Other nodes kept at most (the oldest heard is dropped first)."""

_MAX_TEXT: Final = 200  # node ids and versions are short; a longer one is not a heartbeat
_MAX_PAYLOAD: Final = 2000


def new_node_id() -> str:
    """``host:pid:xxxx``: readable, and distinct across restarts that reuse a pid (containers
    run as pid 1)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class NodeBeat:
    """One heartbeat, as sent."""

    node_id: str
    version: str
    started_at: float
    connections: int
    bus_lag_ms: float | None
    at: float
    stopping: bool = False

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "node_id": self.node_id,
            "version": self.version,
            "started_at": self.started_at,
            "connections": self.connections,
            "bus_lag_ms": self.bus_lag_ms,
            "at": self.at,
        }
        if self.stopping:
            body["stopping"] = True
        return json.dumps(body, separators=(",", ":"))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_beat(payload: str) -> NodeBeat:
    """The heartbeat in ``payload``; ``ValueError`` when it is not one."""
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError("a heartbeat is a small JSON object")
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("a heartbeat is a JSON object")
    node_id, version = data.get("node_id"), data.get("version")
    started_at: Any = data.get("started_at")
    at: Any = data.get("at")
    lag: Any = data.get("bus_lag_ms")
    connections, stopping = data.get("connections"), data.get("stopping", False)
    if (
        not isinstance(node_id, str)
        or not 0 < len(node_id) <= _MAX_TEXT
        or not isinstance(version, str)
        or len(version) > _MAX_TEXT
        or not _number(started_at)
        or not _number(at)
        or not (lag is None or (_number(lag) and lag >= 0))
        or not isinstance(connections, int)
        or isinstance(connections, bool)
        or connections < 0
        or not isinstance(stopping, bool)
    ):
        raise ValueError("a heartbeat has node_id, version, started_at, connections, at")
    return NodeBeat(
        node_id,
        version,
        float(started_at),
        connections,
        None if lag is None else float(lag),
        float(at),
        stopping,
    )


@dataclass(slots=True)
class _Heard:
    beat: NodeBeat
    heard: float  # this node's monotonic clock when it arrived


class Heartbeats:
    """This node's heartbeats, and the latest heard from every other node."""

    def __init__(
        self,
        bus: Bus,
        *,
        version: str,
        connections: Callable[[], int],
        clock: Clock,
        interval: float = BEAT_INTERVAL,
        node_id: str | None = None,
    ) -> None:
        self.node_id = node_id or new_node_id()
        self.version = version
        self.started_at = clock.time()
        self.interval = interval
        self.bus_lag_ms: float | None = None
        self._bus = bus if isinstance(bus, BeatBus) else None
        self._connections = connections
        self._clock = clock
        self._others: dict[str, _Heard] = {}
        self._sent: dict[float, float] = {}  # `at` of a beat in flight -> monotonic when sent
        self._own_heard: float | None = None
        self._started_mono = clock.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        if self._bus is not None:
            # Before the bus starts: it then listens on the heartbeats' channel too.
            self._bus.listen_beats(self.on_beat)

    @property
    def enabled(self) -> bool:
        """Whether the bus carries heartbeats."""
        return self._bus is not None

    def start(self) -> None:
        """Beat every ``interval`` until :meth:`stop` (the bus has started)."""
        self.started_at = self._clock.time()
        self._started_mono = self._clock.monotonic()
        if self._bus is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="livesettings-heartbeats")

    async def stop(self) -> None:
        """Stop beating, and tell the other nodes (best effort, before the bus closes)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish(stopping=True), 1.0)

    async def _run(self) -> None:
        while True:
            try:
                await self._publish()
                self._warned = False
            except Exception as exc:  # the bus reconnects by itself; keep beating
                if not self._warned:
                    log.warning("cannot send this node's heartbeat: %s", exc)
                    self._warned = True
            await asyncio.sleep(self.interval)

    async def _publish(self, *, stopping: bool = False) -> None:
        assert self._bus is not None
        at = self._clock.time()
        beat = NodeBeat(
            self.node_id,
            self.version,
            self.started_at,
            self._connections(),
            self.bus_lag_ms,
            at,
            stopping,
        )
        self._sent[at] = self._clock.monotonic()
        while len(self._sent) > 8:  # beats that never came back
            del self._sent[next(iter(self._sent))]
        await self._bus.publish_beat(beat.to_json())

    def on_beat(self, payload: str) -> None:
        """A heartbeat heard on the bus (this node's own included)."""
        try:
            beat = parse_beat(payload)
        except ValueError as exc:
            log.debug("ignoring a malformed heartbeat: %s", exc)
            return
        now = self._clock.monotonic()
        if beat.node_id == self.node_id:
            sent = self._sent.pop(beat.at, None)
            if sent is not None:
                self.bus_lag_ms = round((now - sent) * 1000, 3)
                self._own_heard = now
            return
        self._others.pop(beat.node_id, None)  # re-inserted last: the dict stays in heard order
        self._others[beat.node_id] = _Heard(beat, now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        for node_id in [n for n, h in self._others.items() if now - h.heard > FORGET_AFTER]:
            del self._others[node_id]
        while len(self._others) > MAX_NODES:
            del self._others[next(iter(self._others))]

    def nodes(self) -> list[dict[str, Any]]:
        """This node first, then the others heard, by node id; ``stale`` after
        :data:`MISSED_BEATS` missed beats (this node: when its own heartbeat has not come back
        over the bus for that long)."""
        now = self._clock.monotonic()
        self._forget(now)
        late = self.interval * MISSED_BEATS
        own_last = self._own_heard if self._own_heard is not None else self._started_mono
        rows = [
            {
                "node_id": self.node_id,
                "version": self.version,
                "started_at": self.started_at,
                "heartbeat_at": self._clock.time(),
                "connections": self._connections(),
                "bus_lag_ms": self.bus_lag_ms,
                "self": True,
                "stale": self._bus is not None and now - own_last > late + self.interval,
            }
        ]
        for node_id in sorted(self._others):
            heard = self._others[node_id]
            beat = heard.beat
            rows.append(
                {
                    "node_id": beat.node_id,
                    "version": beat.version,
                    "started_at": beat.started_at,
                    "heartbeat_at": beat.at,
                    "connections": beat.connections,
                    "bus_lag_ms": beat.bus_lag_ms,
                    "self": False,
                    "stale": beat.stopping or now - heard.heard > late,
                }
            )
        return rows
