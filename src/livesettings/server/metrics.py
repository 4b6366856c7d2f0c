"""Prometheus metrics on ``prometheus-client``, one registry per :class:`Metrics`.

Only what an operator needs: connections, changes, conflicts, errors, commit batch sizes, and
write and push latency histograms; plus the library's process (CPU, memory, file
descriptors), GC and platform (``python_info``) collectors.

Each :class:`Metrics` has a registry of its own, never the library's global default one:
several apps may run in one process (tests, an app mounted twice), each with its own numbers.

Labels are bounded: each labelled counter takes its values from a fixed set (error codes from
``spec/error_codes.json``, outcomes, whose value a conflict kept); anything else is counted
under ``other``, so no request can grow the number of series. A labelled child is bound once
per value and kept, so the hot path does a dict lookup, not the library's ``labels()``.

:class:`Counter` and :class:`Histogram` read their totals back through the library's public
``collect()`` (for tests and the per-second stats sampler, :mod:`.stats`), never on the hot
path.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from importlib import resources
from typing import Any, Final

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["ERROR_CODES", "Counter", "Gauge", "Histogram", "Metrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

OTHER: Final = "other"
"""The label value a counter records for a value outside its fixed set."""


def _spec_codes() -> frozenset[str]:
    text = resources.files("livesettings").joinpath("spec/error_codes.json").read_text("utf-8")
    codes: dict[str, Any] = json.loads(text)["codes"]
    # The two answers the HTTP layer sends for Starlette's own exceptions (answers.py).
    return frozenset(codes) | {"method_not_allowed", "request_timeout", "http_error"}


ERROR_CODES: Final = _spec_codes()
"""Every error code the server sends (``spec/error_codes.json``): the values of
``livesettings_errors_total{code}``, with :data:`OTHER` for anything else."""

_PRESET: Final = 8  # label sets up to this size are shown at 0 before their first count
_OUTCOMES: Final = frozenset({"committed", "repeated"})
_KEPT: Final = frozenset({"theirs", "yours", "partial"})
_SQL_OUTCOMES: Final = frozenset({"applied", "refused", "lost"})


class Counter:
    """A ``prometheus_client`` counter, with at most one label whose values are bounded.

    ``inc(amount)`` or, labelled, ``inc(amount, label=value)``; a value not in ``values`` is
    counted as :data:`OTHER`. Values of a small set are shown at 0 from the start.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        label: str | None = None,
        values: Collection[str] = (),
    ) -> None:
        self.name = name
        self._metric = prometheus_client.Counter(
            name, help_text, (label,) if label else (), registry=registry
        )
        self._label = label
        self._values = frozenset(values)
        self._children: dict[str, Any] = {}
        if label and len(self._values) <= _PRESET:
            # A few known values start at 0, so that a rate over them is defined from the start.
            for value in sorted(self._values):
                self._bind(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (≥ 0)."""
        if self._label is None:
            self._metric.inc(amount)
            return
        value = labels[self._label]
        child = self._children.get(value)
        if child is None:
            child = self._bind(value)
        child.inc(amount)

    def _bind(self, value: str) -> Any:
        kept = value if value in self._values else OTHER
        child = self._children.get(kept)
        if child is None:
            child = self._metric.labels(kept)
            self._children[kept] = child
        if kept == value:
            self._children[value] = child
        # An unknown value is not remembered (it would grow this dict): it costs a lookup more.
        return child

    def totals(self) -> dict[str, float]:
        """Its value by label value (``""`` for an unlabelled counter)."""
        out: dict[str, float] = {}
        for metric in self._metric.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels.get(self._label, "") if self._label else ""
                    out[key] = sample.value
        return out

    def get(self, **labels: str) -> float:
        """Its value for ``labels`` (all values summed when a labelled counter gets none)."""
        totals = self.totals()
        if self._label is not None and self._label in labels:
            return totals.get(labels[self._label], 0.0)
        return sum(totals.values())


class Histogram:
    """A ``prometheus_client`` histogram; with ``keep`` > 0 it also keeps a sample of the
    values observed since the last :meth:`take` (at most ``keep``, a uniform reservoir), for
    exact per-second quantiles (:mod:`.stats`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        keep: int = 0,
    ) -> None:
        self.name = name
        self._metric = prometheus_client.Histogram(
            name, help_text, buckets=tuple(buckets), registry=registry
        )
        self._observe = self._metric.observe
        self._keep = keep
        self._sample: list[float] = []
        self._seen = 0

    def observe(self, value: float) -> None:
        """Count ``value`` in its bucket (and, with ``keep``, maybe in the sample)."""
        self._observe(value)
        if self._keep:
            self._seen += 1
            if len(self._sample) < self._keep:
                self._sample.append(value)
            else:
                # Reservoir sampling: every value of the second has the same chance to stay.
                slot = random.randrange(self._seen)
                if slot < self._keep:
                    self._sample[slot] = value

    def take(self) -> list[float]:
        """The sample since the last call, and start a new one."""
        sample, self._sample, self._seen = self._sample, [], 0
        return sample

    def _values(self) -> dict[str, float]:
        return {
            sample.name[len(self.name) :]: sample.value
            for metric in self._metric.collect()
            for sample in metric.samples
            if sample.name in (self.name + "_sum", self.name + "_count")
        }

    @property
    def sum(self) -> float:
        """The sum of the values observed."""
        return self._values().get("_sum", 0.0)

    @property
    def count(self) -> int:
        """How many values were observed."""
        return int(self._values().get("_count", 0.0))


class Gauge:
    """A value read when ``/metrics`` is scraped (``read``), e.g. open connections."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> None:
        self.name, self.help = name, help_text
        self.value = 0.0
        self._read = read

    def set(self, value: float) -> None:
        """The value shown when no ``read`` function was given."""
        self.value = value

    def read(self) -> float:
        """The value now."""
        return self._read() if self._read is not None else self.value


class _Gauges:
    """The registry's collector of :class:`Gauge` values: the connections gauge and
    :attr:`Metrics.extra` (pool, bus and hashing gauges the services add), read at scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        for gauge in (self._metrics.connections, *self._metrics.extra):
            try:
                value = float(gauge.read())
            except Exception:  # a gauge of a part that is closing must not break /metrics
                continue
            yield GaugeMetricFamily(gauge.name, gauge.help, value=value)


class Metrics:
    """The server's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        p = "livesettings_"
        self.connections = Gauge(p + "connections", "Open WebSocket and SSE connections.")
        self.extra: list[Gauge] = []
        registry.register(_Gauges(self))
        self.changes = Counter(
            registry, p + "changes_total", "Committed mutations that created a revision."
        )
        self.mutations = Counter(
            registry,
            p + "mutations_total",
            "Mutations answered, by outcome.",
            "outcome",
            _OUTCOMES,
        )
        self.conflicts = Counter(
            registry,
            p + "conflicts_total",
            "Conflicts reported, by which value was kept.",
            "kept",
            _KEPT,
        )
        self.errors = Counter(
            registry,
            p + "errors_total",
            "Errors returned to clients, by code.",
            "code",
            ERROR_CODES,
        )
        self.commits = Counter(registry, p + "commits_total", "Group-commit transactions.")
        self.pushes = Counter(registry, p + "pushes_total", "Change frames queued to subscribers.")
        self.changelog_reads = Counter(
            registry,
            p + "changelog_reads_total",
            "Change-log reads by the hub (first reads included).",
        )
        self.fanout_reads = Counter(
            registry,
            p + "fanout_reads_total",
            "Change-log reads to push changes to subscribers (a change not in its bus message,"
            " a gap, a resync); never once per subscriber.",
        )
        self.carried_changes = Counter(
            registry,
            p + "bus_changes_carried_total",
            "Changes another node's bus message carried, kept to push without a read.",
        )
        self.sql_writes = Counter(
            registry,
            p + "sql_writes_total",
            "Writes made in SQL (PostgreSQL) this node took off the queue, by outcome: applied,"
            " refused (a value the document does not accept), lost (no revision: every edit"
            " lost to a newer one).",
            "outcome",
            _SQL_OUTCOMES,
        )
        self.batch_size = Histogram(
            registry, p + "commit_batch_size", "Mutations per transaction.", _BATCH_BUCKETS
        )
        self.write_latency = Histogram(
            registry, p + "write_latency_seconds", "Submit to durable commit.", _LATENCY_BUCKETS
        )
        self.push_latency = Histogram(
            registry,
            p + "push_latency_seconds",
            "Commit to frame queued for a subscriber.",
            _LATENCY_BUCKETS,
            keep=1024,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)  # CPython only: elsewhere it registers nothing

    def render(self) -> str:
        """The text exposition format (0.0.4) of every metric."""
        return generate_latest(self.registry).decode("utf-8")
