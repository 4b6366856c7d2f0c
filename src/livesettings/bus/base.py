"""The fan-out bus: after a commit a node publishes ``(user_id, revision)``; every node hears it.

Events carry ids only — the pushed frames are read from the change log — so a bus message stays
far under any transport's size limit and no secret ever crosses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Bus", "BusEvent", "OnEvents", "OnResync"]


@dataclass(frozen=True, slots=True)
class BusEvent:
    """A user's document reached ``revision``."""

    user_id: str
    revision: int


OnEvents = Callable[[Sequence[BusEvent]], None]
"""Called on the event loop with the events of one published batch."""

OnResync = Callable[[], None]
"""Called after the bus reconnected: events may have been missed, catch up from the log."""


@runtime_checkable
class Bus(Protocol):
    url: str

    async def start(self, on_events: OnEvents, on_resync: OnResync) -> None: ...

    async def publish(self, events: Sequence[BusEvent]) -> None:
        """One message for the whole group commit."""

    async def ping(self) -> None:
        """Raise ``StorageError`` when the bus is unreachable."""

    async def close(self) -> None: ...
