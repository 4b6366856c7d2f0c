"""The time a server node reads, in one object passed in, so tests can move it.

Token lifetimes, revocation times and edit times are wall-clock (Unix seconds); intervals
(rate limits, JWKS refetch throttling) are monotonic. Code that takes a ``Clock`` reads both
through it instead of calling :mod:`time` itself.
"""

from __future__ import annotations

import time

__all__ = ["SYSTEM_CLOCK", "Clock"]


class Clock:
    """The system's clocks. A test passes a subclass whose time it can move."""

    def time(self) -> float:
        """Wall-clock time, Unix seconds."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        return time.monotonic()

    def time_ms(self) -> int:
        """Wall-clock time, integer milliseconds since the epoch."""
        return int(self.time() * 1000)


SYSTEM_CLOCK = Clock()
