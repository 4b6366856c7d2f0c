"""Token buckets keyed by user or address, with a bounded memory footprint."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["RateLimiter", "WindowCounter"]

_V = TypeVar("_V")


@dataclass(eq=False)
class _PerKey(Generic[_V]):
    """State per key on a monotonic ``clock``. Keys are user ids and addresses an attacker
    chooses freely, so at most ``max_keys`` are remembered; the least recently touched are
    forgotten first."""

    max_keys: int = field(default=100_000, kw_only=True)
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True)
    _state: OrderedDict[str, _V] = field(default_factory=OrderedDict, init=False, repr=False)

    def _keep(self, key: str, value: _V) -> None:
        """Store ``value`` as the most recently touched key's, forgetting the oldest keys."""
        self._state[key] = value
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)


@dataclass(eq=False)
class RateLimiter(_PerKey[tuple[float, float]]):
    """``rate`` tokens per second up to ``burst`` per key; ``take`` says how long to wait."""

    rate: float
    burst: float

    def take(self, key: str, amount: float = 1.0) -> float:
        """0.0 when allowed (and counted); otherwise the seconds until it would be.

        ``amount`` above ``burst`` counts as ``burst``, so the largest request still passes
        once the bucket is full.
        """
        if self.rate <= 0:
            return 0.0
        amount = min(amount, self.burst)
        now = self.clock()
        tokens, stamp = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= amount
        self._keep(key, (tokens - amount if allowed else tokens, now))
        return 0.0 if allowed else (amount - tokens) / self.rate

    def wait_for(self, key: str, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens are there, taking none: a refusal that is cheap
        to make before the request's body is read."""
        bucket = self._state.get(key)
        if self.rate <= 0 or bucket is None:
            return 0.0
        tokens, stamp = bucket
        tokens = min(self.burst, tokens + (self.clock() - stamp) * self.rate)
        return max(0.0, (min(amount, self.burst) - tokens) / self.rate)


@dataclass(eq=False)
class WindowCounter(_PerKey[list[float]]):
    """At most ``limit`` events per key within ``window`` seconds (sign-in failures)."""

    limit: int
    window: float

    def _recent(self, key: str) -> list[float]:
        cutoff = self.clock() - self.window
        events = [t for t in self._state.pop(key, ()) if t > cutoff]
        if events:
            self._state[key] = events
        return events

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0 when it may now)."""
        events = self._recent(key)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self.clock())

    def add(self, key: str) -> None:
        events = self._recent(key)
        events.append(self.clock())
        # Only the last `limit` events decide when the key is free again.
        self._keep(key, events[-self.limit :])

    def reset(self, key: str) -> None:
        self._state.pop(key, None)
