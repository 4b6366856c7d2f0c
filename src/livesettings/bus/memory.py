"""``memory://``: the in-process bus of the embedded default (one process, no network)."""

from __future__ import annotations

from collections.abc import Sequence

from .base import BusEvent, OnBeat, OnEvents, OnResync

__all__ = ["MemoryBus"]


class MemoryBus:
    """Delivers each published batch to the listeners of this process, synchronously.

    Ids only, as a networked bus delivers a change too big for its message: in a process the
    publishing hub already holds the rows it committed, and tests that share one memory bus
    between several hubs see the fallback read path.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._listeners: list[OnEvents] = []
        self._beats: list[OnBeat] = []

    def listen_beats(self, on_beat: OnBeat) -> None:
        """Hear node heartbeats (in one process: this node's own)."""
        self._beats.append(on_beat)

    async def publish_beat(self, payload: str) -> None:
        """Hand a heartbeat to this process's listeners."""
        for listener in list(self._beats):
            listener(payload)

    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None:
        self._listeners.append(on_events)

    async def publish(self, events: Sequence[BusEvent]) -> None:
        if any(event.changes for event in events):
            events = [BusEvent(event.user_id, event.revision) for event in events]
        for listener in list(self._listeners):
            listener(events)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()
        self._beats.clear()
