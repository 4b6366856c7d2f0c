"""This node's numbers, sampled every second into ring buffers of 15 minutes, for ``/admin``.

Each point holds, over the second that ended at its time ``t``:

- ``ws_connections``, ``sse_connections``: the open WebSockets (``/v1/realtime`` and the
  Supabase-compatible one) and SSE streams at ``t``;
- ``writes_per_s``: committed mutations that created a revision (``livesettings_changes_total``);
- ``conflicts_per_s``: conflicts reported to writers (``livesettings_conflicts_total``);
- ``push_p50_ms``, ``push_p99_ms``: commit to change frame queued for a subscriber, the median
  and 99th percentile of that second's pushes (``None`` without pushes). Exact over a uniform
  sample of at most 1,024 pushes a second kept by the push-latency histogram, not from its
  buckets (whose bounds would round 3 ms up to 5 ms);
- ``commit_size``: mean mutations per group commit (``None`` without commits);
- ``errors_per_s``: errors answered, by code (codes of ``spec/error_codes.json`` and ``other``).

Rates are counts over the interval divided by it. Every buffer is a ``deque`` of at most
:data:`POINTS` points: memory stays bounded however long the node runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..clock import Clock
from .metrics import Metrics

__all__ = ["INTERVAL", "POINTS", "Point", "StatsSampler", "quantile"]

log = logging.getLogger("livesettings.server")

INTERVAL: Final = 1.0
"""Seconds between two points."""

POINTS: Final = 900
"""Points kept: 15 minutes at one a second."""


def quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of a non-empty sorted list."""
    rank = math.ceil(q * len(ordered) - 1e-9)  # ceil(q·n); 0.29 · 100 is 28.999…
    return ordered[min(len(ordered), max(1, rank)) - 1]


@dataclass(frozen=True, slots=True)
class Point:
    """One second of this node."""

    t: float
    ws_connections: int
    sse_connections: int
    writes_per_s: float
    conflicts_per_s: float
    push_p50_ms: float | None
    push_p99_ms: float | None
    commit_size: float | None
    errors: tuple[tuple[str, float], ...]  # (code, per second), only codes seen


class _Totals:
    """The counters' values at one instant."""

    def __init__(self, metrics: Metrics) -> None:
        self.writes = metrics.changes.get()
        self.conflicts = metrics.conflicts.get()
        self.errors = metrics.errors.totals()
        self.batch_sum = metrics.batch_size.sum
        self.commits = metrics.batch_size.count


class StatsSampler:
    """Samples ``metrics`` and the connection counts every ``interval`` seconds.

    ``connections`` gives ``{"ws": n, "sse": m}``; ``clock`` gives the points' times and the
    ticks (tests call :meth:`sample` themselves instead of :meth:`start`).
    """

    def __init__(
        self,
        metrics: Metrics,
        connections: Callable[[], dict[str, int]],
        *,
        clock: Clock,
        interval: float = INTERVAL,
        points: int = POINTS,
    ) -> None:
        self.interval = interval
        self.points: deque[Point] = deque(maxlen=points)
        self._metrics = metrics
        self._connections = connections
        self._clock = clock
        self._last: _Totals | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Take the counters' values now, then a point every ``interval``."""
        self.reset()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="livesettings-stats")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reset(self) -> None:
        """Start counting from the counters' values now (the next point counts from here)."""
        self._last = _Totals(self._metrics)
        self._metrics.push_latency.take()

    async def _run(self) -> None:
        # Ticks at start + k·interval, on the monotonic clock: a slow tick does not shift
        # the ones after it, so the points stay `interval` apart on average.
        next_tick = self._clock.monotonic()
        while True:
            next_tick += self.interval
            await asyncio.sleep(max(0.0, next_tick - self._clock.monotonic()))
            try:
                self.sample()
            except Exception:  # a bug here must not stop the sampling, nor the server
                log.exception("sampling this node's stats failed")

    def sample(self) -> Point:
        """Add the point of the interval that ends now, and return it."""
        metrics = self._metrics
        now = _Totals(metrics)
        last = self._last or now
        self._last = now
        per = 1.0 / self.interval
        latencies = sorted(metrics.push_latency.take())
        p50 = p99 = None
        if latencies:
            p50 = round(quantile(latencies, 0.50) * 1000, 3)
            p99 = round(quantile(latencies, 0.99) * 1000, 3)
        commits = now.commits - last.commits
        errors = tuple(
            (code, (value - last.errors.get(code, 0.0)) * per)
            for code, value in sorted(now.errors.items())
            if value > last.errors.get(code, 0.0)
        )
        counts = self._connections()
        point = Point(
            t=round(self._clock.time(), 3),
            ws_connections=counts.get("ws", 0),
            sse_connections=counts.get("sse", 0),
            writes_per_s=(now.writes - last.writes) * per,
            conflicts_per_s=(now.conflicts - last.conflicts) * per,
            push_p50_ms=p50,
            push_p99_ms=p99,
            commit_size=round((now.batch_sum - last.batch_sum) / commits, 3) if commits else None,
            errors=errors,
        )
        self.points.append(point)
        return point

    def series(self, since: float | None = None) -> dict[str, Any]:
        """The points newer than ``since`` (all without it), one list per number, all as long
        as ``t``; ``errors_per_s`` has a list for each code seen in those points only."""
        points = [p for p in self.points if since is None or p.t > since]
        codes = sorted({code for p in points for code, _ in p.errors})
        errors: dict[str, list[float]] = {code: [] for code in codes}
        for p in points:
            seen = dict(p.errors)
            for code in codes:
                errors[code].append(seen.get(code, 0.0))
        return {
            "t": [p.t for p in points],
            "ws_connections": [p.ws_connections for p in points],
            "sse_connections": [p.sse_connections for p in points],
            "writes_per_s": [p.writes_per_s for p in points],
            "conflicts_per_s": [p.conflicts_per_s for p in points],
            "push_p50_ms": [p.push_p50_ms for p in points],
            "push_p99_ms": [p.push_p99_ms for p in points],
            "commit_size": [p.commit_size for p in points],
            "errors_per_s": errors,
        }
