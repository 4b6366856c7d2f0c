"""A clock a test can move forward: real time plus an offset, so a running server keeps
going while a test skips past a token's expiry or a refetch interval."""

from __future__ import annotations

import time

from livesettings.clock import Clock


class MovableClock(Clock):
    """Wall and monotonic time, both ``offset`` seconds ahead of the system's."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
