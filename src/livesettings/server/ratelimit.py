"""Token buckets keyed by user or address, with a bounded memory footprint."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter", "WindowCounter"]


class RateLimiter:
    """``rate`` tokens per second up to ``burst`` per key; ``take`` says how long to wait."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, amount: float = 1.0) -> float:
        """0.0 when allowed (and counted); otherwise the seconds until it would be.

        ``amount`` above ``burst`` counts as ``burst``, so the largest request still passes
        once the bucket is full.
        """
        if self.rate <= 0:
            return 0.0
        amount = min(amount, self.burst)
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens >= amount:
            self._buckets[key] = (tokens - amount, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (amount - tokens) / self.rate
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait

    def wait_for(self, key: str, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens are there, taking none: a refusal that is cheap
        to make before the request's body is read."""
        bucket = self._buckets.get(key)
        if self.rate <= 0 or bucket is None:
            return 0.0
        tokens, stamp = bucket
        tokens = min(self.burst, tokens + (self._clock() - stamp) * self.rate)
        return max(0.0, (min(amount, self.burst) - tokens) / self.rate)


class WindowCounter:
    """At most ``limit`` events per key within ``window`` seconds (sign-in failures).

    Keys are usernames and addresses an attacker chooses freely, so at most ``max_keys`` are
    remembered; the least recently touched are forgotten first.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window = limit, window
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str) -> list[float]:
        cutoff = self._clock() - self.window
        events = [t for t in self._events.pop(key, ()) if t > cutoff]
        if events:
            self._events[key] = events
        return events

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0 when it may now)."""
        events = self._recent(key)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self._clock())

    def add(self, key: str) -> None:
        events = self._recent(key)
        events.append(self._clock())
        # Only the last `limit` events decide when the key is free again.
        self._events[key] = events[-self.limit :]
        while len(self._events) > self._max_keys:
            self._events.popitem(last=False)

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
