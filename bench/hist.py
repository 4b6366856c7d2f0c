"""Latency samples kept in full, so every percentile is exact (no bucketing, no averaging).

A benchmark run keeps at most a few hundred thousand samples; storing each one as a C double
costs a few MB and lets p99.9 and the max be read off the sorted data instead of estimated.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

__all__ = ["QUANTILES", "Samples", "format_ms", "log_buckets", "quantile_name"]

#: The percentiles every report shows, as fractions.
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)


class Samples:
    """Every recorded value (seconds); percentiles by the nearest-rank method."""

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._values = array("d", values)
        self._sorted = False

    def add(self, value: float) -> None:
        """Record one value."""
        self._values.append(value)
        self._sorted = False

    def extend(self, values: Iterable[float]) -> None:
        """Record many values."""
        self._values.extend(values)
        self._sorted = False

    def __len__(self) -> int:
        return len(self._values)

    def _data(self) -> array[float]:
        if not self._sorted:
            self._values = array("d", sorted(self._values))
            self._sorted = True
        return self._values

    def values(self) -> array[float]:
        """Every sample, sorted ascending (the array itself: do not modify it)."""
        return self._data()

    def percentile(self, q: float) -> float:
        """The smallest value with at least ``q`` of the samples at or below it (``0 < q ≤ 1``).

        Nearest rank, not interpolation: the answer is always a latency that was observed.
        """
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {q}")
        data = self._data()
        if not data:
            return math.nan
        return data[max(0, math.ceil(q * len(data)) - 1)]

    def summary(self) -> dict[str, float | int]:
        """``count``, ``min``, ``mean``, ``p50``, ``p90``, ``p99``, ``p99.9`` and ``max``, in s."""
        data = self._data()
        out: dict[str, float | int] = {"count": len(data)}
        if not data:
            return out
        out["min"] = data[0]
        out["mean"] = math.fsum(data) / len(data)
        for q in QUANTILES:
            out[quantile_name(q)] = self.percentile(q)
        out["max"] = data[-1]
        return out


def quantile_name(q: float) -> str:
    """``0.5`` → ``"p50"``, ``0.999`` → ``"p99.9"``."""
    return "p" + f"{q * 100:.3f}".rstrip("0").rstrip(".")


def format_ms(seconds: float | int | None) -> str:
    """A latency in milliseconds with sensible precision; ``"-"`` when unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    ms = seconds * 1000.0
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def log_buckets(values: Sequence[float], *, per_decade: int = 4) -> list[tuple[float, int]]:
    """A compact log-scale histogram: ``(upper bound in s, count)`` for each non-empty bucket.

    Bounds grow by a factor of ``10 ** (1 / per_decade)`` from 10 µs, which is enough to show
    the shape of a distribution (one mode or two, how long the tail is) in a few lines.
    """
    counts: dict[int, int] = {}
    base = 10e-6
    for v in values:
        k = 0 if v <= base else math.ceil(math.log10(v / base) * per_decade)
        counts[k] = counts.get(k, 0) + 1
    return [(base * 10 ** (k / per_decade), counts[k]) for k in sorted(counts)]
