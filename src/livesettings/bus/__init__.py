"""Fan-out buses, chosen by URL: ``memory://``, ``postgres`` (LISTEN/NOTIFY), ``redis://…``.

``postgres`` listens on the store's database (``database_url``); ``redis://host:port/db`` takes
an optional ``?channel=NAME`` (default ``livesettings``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import BeatBus, Bus, BusEvent, OnBeat, OnEvents, OnResync, change_events
from .memory import MemoryBus

__all__ = [
    "BeatBus",
    "Bus",
    "BusEvent",
    "MemoryBus",
    "OnBeat",
    "OnEvents",
    "OnResync",
    "change_events",
    "open_bus",
]


def open_bus(url: str, **kwargs: Any) -> Bus:
    """The bus for ``url``; drivers are imported only when their scheme is used."""
    if url.startswith("memory:"):
        return MemoryBus(url)
    if url == "postgres" or url.startswith(("postgres:", "postgresql:")):
        from .postgres import PostgresBus

        bus: Bus = PostgresBus(url, **kwargs)
        return bus
    if url.startswith(("redis:", "rediss:")):
        from .redis import RedisBus

        rbus: Bus = RedisBus(url, **kwargs)
        return rbus
    raise ConfigError(f"unknown bus URL {url!r}: use memory://, postgres or redis://…")
