"""Waiting on the running event loop for something a background task does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def settle(predicate: Callable[[], object], within: float = 5.0) -> None:
    """Poll ``predicate`` on the running loop until it holds (``TimeoutError`` after
    ``within`` seconds)."""
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)
