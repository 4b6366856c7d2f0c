"""Markdown pieces shared by the bench reports: the runs table, cells, histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hist import format_ms

__all__ = ["RUN_TABLE_HEAD", "histogram_lines", "passed", "pct", "run_row", "say"]

P99_LIMIT = 0.050  # seconds: a rate passes at or below this write→device p99

RUN_TABLE_HEAD = [
    "| rate /s | sent /s | done /s | writes | lost | p50 | p90 | p99 | p99.9 | max | "
    "ack p50 | ack p99 | lag p99 | server CPU | CPU ms/write | server runq | loadgen CPU | "
    "core 0 | core 1 | load avg | pass |",
    "|" + "---|" * 21,
]


def passed(run: dict[str, Any]) -> bool:
    """Nothing lost and write→device p99 within 50 ms."""
    p99 = run["latency"].get("p99")
    return bool(run["nothing_lost"]) and p99 is not None and p99 <= P99_LIMIT


def run_row(run: dict[str, Any], ok: bool) -> str:
    """One line of the runs table (see ``RUN_TABLE_HEAD``)."""
    lat, ack, lag, measured = run["latency"], run["http_ack"], run["dispatch_lag"], run["measured"]
    cores = measured["core_busy"] + [None, None]
    name = f"{run['plan']['rate']:g}" + (" (profiled)" if run.get("profiled") else "")
    return (
        f"| {name} | {run['sent_rate']:.0f} | {run['done_rate']:.0f} | "
        f"{run['measured_writes']} | "
        f"{_lost_cell(run)} | {format_ms(lat.get('p50'))} | {format_ms(lat.get('p90'))} | "
        f"{format_ms(lat.get('p99'))} | {format_ms(lat.get('p99.9'))} | "
        f"{format_ms(lat.get('max'))} | {format_ms(ack.get('p50'))} | "
        f"{format_ms(ack.get('p99'))} | {format_ms(lag.get('p99'))} | "
        f"{_pct(measured['server_cpu'])} | {_per_write(run)} | "
        f"{_pct(measured.get('server_runq_wait'))} | "
        f"{_pct(measured['loadgen_cpu'])} | "
        f"{_pct(cores[0])} | {_pct(cores[1])} | {run['loadavg_before'][0]:.2f} | "
        f"{'yes' if ok else '**no**'} |"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _per_write(run: dict[str, Any]) -> str:
    """Server CPU per completed write: the capacity of one core is about 1 / this."""
    cpu, done = run["measured"]["server_cpu"], run["done_rate"]
    return "-" if cpu is None or not done else f"{cpu / done * 1000:.2f}"


def _lost_cell(run: dict[str, Any]) -> str:
    parts = []
    if run["http_errors"]:
        parts.append(
            "HTTP " + ", ".join(f"{k} x{v}" for k, v in sorted(run["http_errors"].items()))
        )
    for key in ("unanswered", "missing", "duplicates", "gaps", "misrouted", "ws_closed"):
        if run.get(key):
            parts.append(f"{key} {run[key]}")
    return "; ".join(parts) if parts else "0"


pct = _pct


def histogram_lines(run: dict[str, Any]) -> list[str]:
    buckets = run.get("histogram") or []
    if not buckets:
        return ["(no samples)"]
    peak = max(c for _, c in buckets)
    out = ["```", "   ≤ ms   samples"]
    for upper, count in buckets:
        bar = "#" * max(1, round(40 * count / peak))
        out.append(f"{upper * 1000:7.2f}  {count:7d}  {bar}")
    out.append("```")
    return out


_histogram = histogram_lines


def say(run: dict[str, Any]) -> None:
    lat = run["latency"]
    print(
        f"{run['plan']['rate']:>6g}/s  sent {run['sent_rate']:5.0f}/s  "
        f"done {run['done_rate']:5.0f}/s  "
        f"p50 {format_ms(lat.get('p50'))} ms  p99 {format_ms(lat.get('p99'))} ms  "
        f"lost {run['lost']}  unanswered {run['unanswered']}  "
        f"server CPU {_pct(run['measured']['server_cpu'])}  "
        f"loadgen CPU {_pct(run['measured']['loadgen_cpu'])}  "
        f"{'pass' if passed(run) else 'FAIL'}",
        flush=True,
    )


def kept_analysis(path: Path, start_marker: str, end_marker: str) -> str:
    """The hand-written analysis between the markers of a results file, kept on a rewrite."""
    try:
        text = path.read_text()
    except OSError:
        return "_(no analysis yet)_"
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        return "_(no analysis yet)_"
    return text[start + len(start_marker) : end].strip("\n")
