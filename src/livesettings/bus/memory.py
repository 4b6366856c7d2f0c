"""``memory://``: the in-process bus of the embedded default (one process, no network)."""

from __future__ import annotations

from collections.abc import Sequence

from .base import BusEvent, OnEvents, OnResync

__all__ = ["MemoryBus"]


class MemoryBus:
    """Delivers each published batch to the listeners of this process, synchronously."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._listeners: list[OnEvents] = []

    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None:
        self._listeners.append(on_events)

    async def publish(self, events: Sequence[BusEvent]) -> None:
        for listener in list(self._listeners):
            listener(events)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()
