"""The fan-out bus: after a commit a node publishes ``(user_id, revision)``; every node hears it.

Events carry ids only — the pushed frames are read from the change log — so a bus message stays
far under any transport's size limit and no secret ever crosses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Bus", "BusEvent", "Listeners", "OnEvents", "OnResync"]

log = logging.getLogger("livesettings.bus")


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


class Listeners:
    """The hub's two callbacks as a networked bus holds them; a failing one is logged, never
    allowed to stop the bus's listening loop."""

    _on_events: OnEvents | None = None
    _on_resync: OnResync | None = None

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
