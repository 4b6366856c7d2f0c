"""Prometheus metrics in the text exposition format, with no dependency.

Only what an operator needs: connections, changes, conflicts, errors, commit batch sizes, and
write and push latency histograms.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = ["Counter", "Gauge", "Histogram", "Metrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[tuple[tuple[str, str], ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.values:
            lines.append(f"{self.name} 0")
        for key, value in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(dict(key))} {value:g}")
        return lines


class Gauge:
    def __init__(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> None:
        self.name, self.help = name, help_text
        self.value = 0.0
        self._read = read

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def render(self) -> list[str]:
        value = self._read() if self._read else self.value
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {value:g}",
        ]


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum:.6f}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    """The server's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        p = "livesettings_"
        self.connections = Gauge(p + "connections", "Open WebSocket and SSE connections.")
        self.changes = Counter(p + "changes_total", "Committed mutations that created a revision.")
        self.mutations = Counter(p + "mutations_total", "Mutations answered, by outcome.")
        self.conflicts = Counter(
            p + "conflicts_total", "Conflicts reported, by which value was kept."
        )
        self.errors = Counter(p + "errors_total", "Errors returned to clients, by code.")
        self.commits = Counter(p + "commits_total", "Group-commit transactions.")
        self.pushes = Counter(p + "pushes_total", "Change frames queued to subscribers.")
        self.changelog_reads = Counter(
            p + "changelog_reads_total", "Change-log reads by the hub (first reads included)."
        )
        self.fanout_reads = Counter(
            p + "fanout_reads_total",
            "Change-log reads to push changes to subscribers (a change not in its bus message,"
            " a gap, a resync); never once per subscriber.",
        )
        self.carried_changes = Counter(
            p + "bus_changes_carried_total",
            "Changes another node's bus message carried, kept to push without a read.",
        )
        self.sql_writes = Counter(
            p + "sql_writes_total",
            "Writes made in SQL (PostgreSQL) this node took off the queue, by outcome: applied,"
            " refused (a value the document does not accept), lost (no revision: every edit"
            " lost to a newer one).",
        )
        self.batch_size = Histogram(
            p + "commit_batch_size", "Mutations per transaction.", _BATCH_BUCKETS
        )
        self.write_latency = Histogram(
            p + "write_latency_seconds", "Submit to durable commit.", _LATENCY_BUCKETS
        )
        self.push_latency = Histogram(
            p + "push_latency_seconds", "Commit to frame queued for a subscriber.", _LATENCY_BUCKETS
        )
        self.extra: list[Gauge] = []

    def render(self) -> str:
        lines: list[str] = []
        metrics: tuple[Counter | Gauge | Histogram, ...] = (
            self.connections,
            self.changes,
            self.mutations,
            self.conflicts,
            self.errors,
            self.commits,
            self.pushes,
            self.changelog_reads,
            self.fanout_reads,
            self.carried_changes,
            self.sql_writes,
            self.batch_size,
            self.write_latency,
            self.push_latency,
            *self.extra,
        )
        for metric in metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
