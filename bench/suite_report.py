"""The RESULTS.md sections of the workloads in ``bench/suite.py`` (and PocketBase's)."""

from __future__ import annotations

from typing import Any

from hist import format_ms
from tables import RUN_TABLE_HEAD, histogram_lines, passed, pct, run_row

__all__ = ["distributions", "extra_sections", "extra_targets"]

W1_TARGET_SOCKETS, W1_TARGET_BYTES = 10_000, 20 * 1024
W3_WS_TARGET = 4000.0  # writes/s with p99 ≤ 50 ms
W4_TARGET = 50_000.0  # frames/s pushed
W6_TARGET = 2.0  # seconds until every client caught up


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def extra_targets(extra: dict[str, Any]) -> list[str]:
    """Rows of the targets table for the workloads that ran."""
    rows: list[str] = []
    ws = extra.get("W3WS")
    if ws is not None:
        best = max((r["plan"]["rate"] for r in ws if passed(r)), default=None)
        shown = "none" if best is None else f"{best:g} writes/s"
        rows.append(
            f"| W3 by WebSocket `update` frames: highest rate with p99 ≤ 50 ms, nothing lost "
            f"| ≥ {W3_WS_TARGET:,.0f} writes/s | {shown} | "
            f"{_met(best is not None and best >= W3_WS_TARGET)} |"
        )
    hot = extra.get("W4")
    if hot:
        good = [r for r in hot if r["nothing_lost"]]
        top = max((r["frames_per_s"] for r in good), default=0.0)
        rows.append(
            f"| W4 hot user (1 user, {hot[0]['plan']['devices']} devices): frames pushed/s, "
            f"nothing lost | ≥ {W4_TARGET:,.0f} | {top:,.0f} | {_met(top >= W4_TARGET)} |"
        )
    idle = extra.get("W1")
    if idle is not None:
        per = idle["bytes_per_socket"]
        ok = idle["opened"] >= W1_TARGET_SOCKETS and per <= W1_TARGET_BYTES
        rows.append(
            f"| W1 idle authenticated sockets in one process | {W1_TARGET_SOCKETS:,} at ≤ 20 KiB "
            f"each | {idle['opened']:,} at {per / 1024:.1f} KiB each | {_met(ok)} |"
        )
    storm = extra.get("W6")
    if storm is not None:
        took = storm["all_caught_up_s"]
        ok = took is not None and took <= W6_TARGET and storm["clients"] >= 1000
        rows.append(
            f"| W6 reconnect storm: {storm['clients']:,} clients resume with `since` after a "
            f"restart, all caught up | ≤ {W6_TARGET:g} s (1,000 clients) | "
            f"{'not all' if took is None else f'{took:.2f} s'} | {_met(ok)} |"
        )
    return rows


def extra_sections(extra: dict[str, Any]) -> list[str]:
    """The sections of the other workloads, in the order they ran."""
    lines: list[str] = []
    ws = extra.get("W3WS")
    if ws is not None:
        lines += [
            "",
            "## W3 by WebSocket `update` frames",
            "",
            "The same sweep as the HTTP one, on a fresh server, with each user's writes sent as "
            "`update` frames on one more socket of that user (authenticated, not subscribed): "
            "*ack* is scheduled time → the `ack` frame. Columns as above.",
            "",
            *RUN_TABLE_HEAD,
        ]
        lines += [run_row(run, passed(run)) for run in ws]
    hot = extra.get("W4")
    if hot:
        lines += [
            "",
            "## W4 hot user",
            "",
            f"One user with {hot[0]['plan']['devices']} WebSocket devices, writes by HTTP "
            "`PATCH`, on a fresh server; *frames/s*: change frames that reached a device "
            "within the measured window, per second (every device got every change: see "
            "*lost*). Columns as above.",
            "",
            RUN_TABLE_HEAD[0].replace("| pass |", "| frames/s |"),
            RUN_TABLE_HEAD[1],
        ]
        for run in hot:
            row = run_row(run, run["nothing_lost"])
            cut = row.rsplit("|", 2)[0]
            lines.append(f"{cut}| {run['frames_per_s']:,.0f} |")
    idle = extra.get("W1")
    if idle is not None:
        lines += [
            "",
            "## W1 idle sockets",
            "",
            f"{idle['sockets']:,} WebSockets asked for, one user each, authenticated and "
            f"subscribed, on a fresh server. The server's resident memory (VmRSS) after the "
            f"first {idle['warm']}, after all of them, and after {idle['hold_s']:g} s idle; per "
            "socket = growth / sockets opened after the first ones.",
            "",
            "| opened | alive after the hold | failures | connect rate | RSS warm | RSS all | "
            "RSS held | per socket | load avg |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {idle['opened']:,} | {idle['alive_after_hold']:,} | {idle['failures']} | "
            f"{_rate(idle['connect_rate'])} | {_mib(idle['rss_warm'])} | "
            f"{_mib(idle['rss_all'])} | {_mib(idle['rss_held'])} | "
            f"{idle['bytes_per_socket'] / 1024:.1f} KiB | {idle['loadavg_before'][0]:.2f} |",
        ]
        lines += [f"- `{n}`" for n in idle.get("notes", [])[:5]]
    storm = extra.get("W6")
    if storm is not None:
        c = storm["catch_up"]
        lines += [
            "",
            "## W6 reconnect storm",
            "",
            f"{storm['users']} users x {storm['devices']} devices subscribed; the server is "
            f"stopped and started again on the same port and data ({storm['restart_s']:.1f} s); "
            f"{storm['missed_per_user']} changes per user are written while the clients are "
            "away; then every client reconnects at once with `since` = the last revision it "
            "saw. Caught up = `synced` after exactly the missed `change` frames, in order. "
            "Times from the start of the reconnects.",
            "",
            "| clients | caught up | wrong | all caught up | p50 | p99 | max | load avg |",
            "|---|---|---|---|---|---|---|---|",
            f"| {storm['clients']:,} | {storm['caught_up']:,} | {storm['wrong']} | "
            f"{_seconds(storm['all_caught_up_s'])} | {format_ms(c.get('p50'))} ms | "
            f"{format_ms(c.get('p99'))} ms | {format_ms(c.get('max'))} ms | "
            f"{storm['loadavg_before'][0]:.2f} |",
        ]
        lines += [f"- `{n}`" for n in storm.get("notes", [])[:5]]
    pb = extra.get("PB")
    if pb is not None:
        lines += pocketbase_lines(pb)
    return lines


def pocketbase_lines(pb: dict[str, Any]) -> list[str]:
    """PocketBase side by side: the same users, devices and rates."""
    lines = [
        "",
        "## PocketBase, same invocation",
        "",
        f"PocketBase {pb.get('version', '?')} (`pocketbase serve`, SQLite, its defaults) "
        "pinned to core 0 like livesettings, the generator on core 1. One record per user in "
        "a `settings` collection whose API rules let a user view and update only their own; "
        "devices subscribe to it through the realtime SSE API (`/api/realtime`), writes are "
        "HTTP `PATCH` of the record. Latency: scheduled send → the SSE event at each device. "
        "*CPU ms/write* as above (the PocketBase process).",
        "",
        "| rate /s | users x devices | sent /s | done /s | writes | lost | p50 | p90 | p99 | "
        "max | ack p99 | server CPU | CPU ms/write | load avg | pass |",
        "|" + "---|" * 15,
    ]
    for run in pb.get("runs", []):
        lat, ack = run["latency"], run["http_ack"]
        cpu = run["measured"]["server_cpu"]
        per = "-" if cpu is None or not run["done_rate"] else f"{cpu / run['done_rate'] * 1e3:.2f}"
        lines.append(
            f"| {run['plan']['rate']:g} | {run['plan']['users']} x {run['plan']['devices']} | "
            f"{run['sent_rate']:.0f} | {run['done_rate']:.0f} | {run['measured_writes']} | "
            f"{run['lost'] + run['unanswered']} | {format_ms(lat.get('p50'))} | "
            f"{format_ms(lat.get('p90'))} | {format_ms(lat.get('p99'))} | "
            f"{format_ms(lat.get('max'))} | {format_ms(ack.get('p99'))} | {pct(cpu)} | {per} | "
            f"{run['loadavg_before'][0]:.2f} | {'yes' if passed(run) else '**no**'} |"
        )
    if pb.get("skipped"):
        lines.append(f"\n_{pb['skipped']}_")
    return lines


def distributions(sets: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """A histogram of write→device latency for every run, folded away."""
    lines = ["", "## Distributions of every run", ""]
    for title, runs in sets:
        for run in runs:
            if not run.get("histogram"):
                continue
            lines += [
                "<details>",
                f"<summary>{title} at {run['plan']['rate']:g} writes/s "
                f"(load avg {run['loadavg_before'][0]:.2f})</summary>",
                "",
                *histogram_lines(run),
                "",
                "</details>",
            ]
    return lines


def _mib(value: int) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _seconds(value: float | None) -> str:
    return "not all" if value is None else f"{value:.2f} s"
