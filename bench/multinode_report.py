"""``bench/multinode.py``'s targets, the nodes' own counters (``/metrics``) and its section of
RESULTS.md."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import shlex
import sys
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hist import format_ms
from machine import git_commit, machine, versions
from procs import ROOT
from spy import profile_tables
from tables import _histogram, _lost_cell, _pct, kept_analysis

if TYPE_CHECKING:
    from multinode import Bench

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
TARGET_RATE = 500.0  # writes/s at which the p99 target applies
P99_TARGET = 0.050  # seconds: cross-node write→device p99 at TARGET_RATE (issue 13, W5)
STRETCH_RATE = 2000.0  # durable writes/s to sustain
DEFAULT_RATES = "100,250,500,1000,1500,2000"
SECTION_START, SECTION_END = "<!-- multinode:start -->", "<!-- multinode:end -->"
ANALYSIS_START = "<!-- multinode-analysis:start -->"
ANALYSIS_END = "<!-- multinode-analysis:end -->"
WRITE_PATH = {
    "postgres": "PATCH → node → PG commit + NOTIFY → 2 other nodes → WS",
    "redis": "PATCH → node → PG commit → Redis PUBLISH → 2 other nodes → WS",
}
_RUN_OVERHEAD = 20.0  # seconds a run takes beyond warm-up + window (setup, drain, idling)
# With sched_autogroup_enabled=1 the kernel first shares a core fairly between sessions
# (autogroups), and a process's niceness only counts against processes of its own session: a
# negative --nice alone does nothing against another engineer's busy loops. So, with --nice,
# the bench re-runs itself in a session of its own (this variable marks the re-run) and gives
# that session's autogroup the niceness.
_SESSION_ENV = "LSBENCH_OWN_SESSION"

# The parts of one write's life on the PostgreSQL path, by the function containing each.
_KEY_FRAMES = (
    ("HTTP: one request through the ASGI stack", "RequestResponseCycle.run_asgi"),
    ("HTTP: FastAPI dependency solving", "solve_dependencies"),
    ("HTTP: sync dependencies sent to a thread", "run_in_threadpool"),
    ("HTTP: the PATCH endpoint", "patch_settings"),
    ("auth: token verification", "TokenVerifier.verify"),
    ("writer: group commit (event loop side)", "Writer._run"),
    ("store: the PostgreSQL group commit", "PostgresStore.commit"),
    ("store: planning one mutation (merge, seal)", "plan_mutation"),
    ("store: taking a pooled connection", "PostgresStore._connection"),
    ("bus: a NOTIFY arriving", "PostgresBus._on_notify"),
    ("bus: Redis messages arriving", "RedisBus._listen"),
    ("fan-out: hub reading the log and pushing", "Hub._drain"),
    ("fan-out: reading the change log", "PostgresStore.changes_since"),
    ("fan-out: socket sender tasks", "Session._sender"),
    ("fan-out: WebSocket frame writes (uvicorn)", "WebSocketsSansIOProtocol.send"),
    ("asyncpg: protocol callbacks", "data_received"),
)


# -- the nodes' own view (/metrics) ---------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """Every sample of a node's ``/metrics``, by name with labels (empty if unreachable)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def server_side(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, Any]:
    """What the nodes counted over a run (warm-up and drain included), all nodes together."""
    delta: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for name, value in a.items():
            delta[name] = delta.get(name, 0.0) + value - b.get(name, 0.0)
    delta = defaultdict(float, delta)
    p = "livesettings_"
    out: dict[str, Any] = {
        "commits": delta[p + "commits_total"],
        "changes": delta[p + "changes_total"],
        "changelog_reads": delta[p + "changelog_reads_total"],
        "pushes": delta[p + "pushes_total"],
        "pool_waits": delta[p + "db_pool_waits"],
        # Each node's own change-log reads: the target is at most one per change per node,
        # none when the change fits the notification.
        "changelog_reads_each": _each(before, after, p + "changelog_reads_total"),
        # Where the nodes count them apart: reads made to push changes (not the first read of
        # a subscription), and changes a bus message carried so that no read was needed.
        "fanout_counted": any(p + "fanout_reads_total" in a for a in after),
        "fanout_reads_each": _each(before, after, p + "fanout_reads_total"),
        "carried": delta[p + "bus_changes_carried_total"],
    }
    for short, name in (("commit", "write_latency_seconds"), ("push", "push_latency_seconds")):
        count = delta[f"{p}{name}_count"]
        out[f"{short}_mean"] = delta[f"{p}{name}_sum"] / count if count else None
        out[f"{short}_p99_bound"] = _bucket_bound(delta, p + name, 0.99)
    return out


def _each(before: list[dict[str, float]], after: list[dict[str, float]], name: str) -> list[float]:
    """One counter's growth on each node."""
    return [a.get(name, 0.0) - b.get(name, 0.0) for b, a in zip(before, after, strict=True)]


def worst_reads(side: dict[str, Any]) -> float:
    """Change-log reads to push, per change, on the node that read most."""
    key = "fanout_reads_each" if side.get("fanout_counted") else "changelog_reads_each"
    return max(side.get(key) or [0.0]) / side["changes"]


def _bucket_bound(delta: dict[str, float], name: str, q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q`` (inf past the last)."""
    count = delta[f"{name}_count"]
    if not count:
        return None
    prefix = f'{name}_bucket{{le="'
    bounds = sorted(
        (float(key[len(prefix) : -2]), value)
        for key, value in delta.items()
        if key.startswith(prefix) and not key.endswith('"+Inf"}')
    )
    for bound, cumulative in bounds:
        if cumulative >= q * count:
            return bound
    return math.inf


# -- verdicts -----------------------------------------------------------------------------


def meets_target(run: dict[str, Any]) -> bool:
    """p99 within the target and nothing lost."""
    p99 = run["latency"].get("p99")
    return bool(run["nothing_lost"]) and p99 is not None and p99 <= P99_TARGET


def sustained(run: dict[str, Any]) -> bool:
    """Nothing lost, ≥ 95 % answered within the window, and no backlog (ack p99 < 1 s)."""
    ack = run["http_ack"].get("p99")
    return (
        bool(run["nothing_lost"])
        and run["done_rate"] >= 0.95 * run["scheduled_rate"]
        and ack is not None
        and ack < 1.0
    )


def key_frames(raw: Path) -> list[tuple[str, str, int]]:
    """``(label, function, samples)`` of each key frame present (inclusive)."""
    by_function: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            for name in {f.split(" (", 1)[0] for f in stack.split(";") if f}:
                by_function[name] += int(count)
    return [(label, fn, by_function[fn]) for label, fn in _KEY_FRAMES if by_function[fn]]


# -- the report ---------------------------------------------------------------------------


def _ms_per_write(share: float | None, run: dict[str, Any]) -> str:
    done = run["done_rate"]
    return "-" if share is None or not done else f"{share / done * 1000:.2f}"


def _where(core: int | None) -> str:
    return "any core" if core is None else f"c{core}"


def _layout(bench: Bench) -> str:
    if not bench.pin:
        return "no pinning"
    return ", ".join(
        f"{name} {_where(bench.core(which))}"
        for name, which in (("nodes", "node"), ("PG", "pg"), ("gen", "gen"))
    )


def render(bench: Bench, elapsed: float, started: dt.datetime) -> str:
    """Our section of RESULTS.md, markers included."""
    args = bench.args
    runs = [r for r in bench.runs if not r.get("profiled")]
    pg_runs = [r for r in runs if r["bus"] == "postgres"]
    at_target = [r for r in pg_runs if r["plan"]["rate"] == args.target_rate]
    best = max((r["plan"]["rate"] for r in pg_runs if sustained(r)), default=None)
    lines = [
        SECTION_START,
        "# Multi-node benchmark: three nodes on one PostgreSQL",
        "",
        f"Written by `bench/multinode.py` (`make bench-multinode`) on {started:%Y-%m-%d %H:%M} "
        "UTC; this section is regenerated on every run except the hand-written analysis "
        "between its markers. The single-node section above belongs to `bench/run.py`.",
        "",
        ANALYSIS_START,
        kept_analysis(Path(args.results), ANALYSIS_START, ANALYSIS_END),
        ANALYSIS_END,
        "",
        "## Multi-node targets",
        "",
        "| what | target | measured | |",
        "|---|---|---|---|",
    ]
    if at_target:
        run = at_target[0]
        p99 = run["latency"].get("p99")
        verdict = "met" if meets_target(run) else "**missed**"
        lines.append(
            f"| cross-node write→device p99 at {args.target_rate:g} writes/s, "
            f"{args.nodes} nodes, PostgreSQL bus | ≤ {P99_TARGET * 1000:g} ms, nothing lost | "
            f"{format_ms(p99)} ms, lost {_lost_cell(run)} | {verdict} |"
        )
    else:
        lines.append(
            f"| cross-node p99 at {args.target_rate:g} writes/s | ≤ {P99_TARGET * 1000:g} ms | "
            "not run | |"
        )
    reads = _reads_row(at_target[0] if at_target else None)
    if reads:
        lines.append(reads)
    shown = "none" if best is None else f"{best:g} writes/s"
    verdict = "met" if best is not None and best >= STRETCH_RATE else "**missed**"
    lines.append(
        f"| durable writes/s sustained, {args.devices} devices per user (stretch) | "
        f"≥ {STRETCH_RATE:,.0f} | {shown} | {verdict} |"
    )
    redis = [r for r in runs if r["bus"] == "redis"]
    if redis:
        r = redis[0]
        lines.append(
            f"| the same p99 at {r['plan']['rate']:g} writes/s with the Redis bus | (reported) | "
            f"{format_ms(r['latency'].get('p99'))} ms, lost {_lost_cell(r)} | |"
        )
    lines += ["", "## Multi-node runs", ""]
    lines += [
        f"{args.users} users x {args.devices} devices on {args.nodes} nodes. User *u* writes "
        f"by HTTP `PATCH /v1/settings` through node *u* mod {args.nodes}; its devices "
        "(WebSocket subscribers) are spread over the *other* nodes, so every sample is "
        f"cross-node. {args.arrival.capitalize()} arrivals at the target rate (open loop), "
        f"{args.warmup:g} s warm-up, then a {args.duration:g} s measured window; runs in the "
        "order they were made, all on the same nodes of a bus.",
        "",
        "- *cores*: where the nodes, the PostgreSQL backends of the bench database and the "
        "load generator were pinned (c0 = core 0). *write path*: what a write goes through "
        "before it reaches a device; PG commits are durable (`synchronous_commit=on`, fsync).",
        "- *p50 … max*: from the write's **scheduled** send time to the arrival of its "
        "`change` frame at each device of the user, every sample kept, ms. *ack*: scheduled "
        "→ HTTP 200.",
        "- *node CPU*: each node's share of one core over the window; *nodes ms/w*: the three "
        "nodes' CPU per answered write, together. *PG CPU*, *PG ms/w*: the same for the "
        "PostgreSQL backends serving the bench database (the WAL writer and checkpointer are "
        "shared with other databases and not counted).",
        "- *loadgen CPU*: the generator's share of its core. *core 0/1*: everything that ran "
        "on that core, other people's processes included. *load avg*: 1-minute, before the "
        "run.",
        f"- *≤ 50 ms*: p99 ≤ {P99_TARGET * 1000:g} ms and nothing lost. *sustained*: nothing "
        "lost, ≥ 95 % of the scheduled writes answered within the window, ack p99 < 1 s.",
        "",
        "| bus | rate /s | sent /s | done /s | writes | lost | p50 | p90 | p99 | p99.9 | max | "
        "ack p50 | ack p99 | node CPU | nodes ms/w | PG CPU | PG ms/w | loadgen CPU | "
        "core 0 | core 1 | load avg | cores | write path | ≤ 50 ms | sustained |",
        "|" + "---|" * 25,
    ]
    for run in bench.runs:
        lat, ack, measured = run["latency"], run["http_ack"], run["measured"]
        cores = measured["core_busy"] + [None, None]
        each = "/".join(_pct(c) for c in measured.get("server_cpu_each") or [])
        name = f"{run['plan']['rate']:g}" + (" (profiled)" if run.get("profiled") else "")
        lines.append(
            f"| {run['bus']} | {name} | {run['sent_rate']:.0f} | {run['done_rate']:.0f} | "
            f"{run['measured_writes']} | {_lost_cell(run)} | {format_ms(lat.get('p50'))} | "
            f"{format_ms(lat.get('p90'))} | {format_ms(lat.get('p99'))} | "
            f"{format_ms(lat.get('p99.9'))} | {format_ms(lat.get('max'))} | "
            f"{format_ms(ack.get('p50'))} | {format_ms(ack.get('p99'))} | {each} | "
            f"{_ms_per_write(measured['server_cpu'], run)} | {_pct(run.get('pg_cpu'))} | "
            f"{_ms_per_write(run.get('pg_cpu'), run)} | {_pct(measured['loadgen_cpu'])} | "
            f"{_pct(cores[0])} | {_pct(cores[1])} | {run['loadavg_before'][0]:.2f} | "
            f"{run['cores']} | {WRITE_PATH[run['bus']]} | "
            f"{'yes' if meets_target(run) else '**no**'} | "
            f"{'yes' if sustained(run) else '**no**'} |"
        )
    if bench.skipped:
        lines += ["", "Not run: " + "; ".join(bench.skipped) + "."]
    lines += _server_side_lines(bench.runs)
    if at_target:
        lines += ["", f"### Distribution at {args.target_rate:g} writes/s (PostgreSQL bus)", ""]
        lines += _histogram(at_target[0])
    if bench.profile is not None:
        lines += ["", "## Profile of node 1", ""]
        lines += _profile_lines(bench.profile)
    notes = [n for r in bench.runs for n in r.get("notes", [])][:10]
    if notes:
        lines += ["", "## First problems the generator noted", ""]
        lines += [f"- `{n}`" for n in notes]
    lines += ["", "## Multi-node setup", ""]
    lines += [f"- **{k}**: {v}" for k, v in machine().items()]
    lines.append(f"- **date**: {started:%Y-%m-%d %H:%M:%S} UTC; the bench took {elapsed:.0f} s")
    lines.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    lines.append(
        "- **PostgreSQL**: " + ", ".join(f"{k} {v}" for k, v in bench.pg.items()) + " (local, "
        "loopback TCP, shared with other engineers' tests)"
    )
    lines.append(f"- **git commit**: {git_commit()}")
    loop = bench.runs[0].get("event_loop", "?") if bench.runs else "?"
    lines.append(f"- **load generator**: {loop}, minimal HTTP/1.1 keep-alive client, websockets")
    lines.append(f"- **pinning**: {_pinning_text(bench)}")
    lines += ["", "Settings of every node (everything else is the default of `Config`):", ""]
    for key, value in _shown_settings(bench).items():
        lines.append(f"- `LIVESETTINGS_{key.upper()}={value}`")
    lines += ["", "Commands:", "", "```sh"]
    lines.append(shlex.join(["cd", str(ROOT)]))
    lines.append(shlex.join([sys.executable, *sys.argv]))
    lines.append(f"# each of the {args.nodes} nodes:")
    lines.append(_env_prefix() + shlex.join(bench.node_command))
    lines.append("# load generator, once per rate (this is the first):")
    lines.append(shlex.join(bench.load_command))
    lines += ["```", SECTION_END, ""]
    return "\n".join(lines)


def _reads_row(run: dict[str, Any] | None) -> str:
    """Change-log reads per change on the node that read most, at the target rate."""
    if run is None or not (run.get("server_side") or {}).get("changes"):
        return ""
    side = run["server_side"]
    worst = worst_reads(side)
    # Every change of the bench fits a notification: with the reads to push counted apart
    # (livesettings_fanout_reads_total), the target is none at all.
    counted = bool(side.get("fanout_counted"))
    ok = worst == 0.0 if counted else worst <= 1.0
    what = "reads to push" if counted else "all change-log reads (no fan-out counter)"
    return (
        f"| change-log reads per change per node at {run['plan']['rate']:g} writes/s, {what}, "
        "on the node that read most | ≤ 1, and 0 when the change fits the notification | "
        f"{worst:.2f} | {'met' if ok else '**missed**'} |"
    )


def _server_side_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "### What the nodes counted",
        "",
        "From the nodes' `/metrics` before and after each run (warm-up and drain included), "
        "all nodes together. *commit*: a write's submit → durable commit in its node "
        "(`livesettings_write_latency_seconds`: queueing for the writer plus the PostgreSQL "
        "transaction); *push*: commit → frame queued on the node of a device "
        "(`livesettings_push_latency_seconds`: NOTIFY or Redis, then the change-log read). "
        "Means, and the upper bound of the histogram bucket holding the p99. *pool waits*: "
        "times a node had to wait for one of its 10 database connections (the devices' "
        "subscriptions at the start of a run included). *nodes runq*, *PG runq*: time the "
        "nodes' threads and the bench's PostgreSQL backends were runnable but waited for a "
        "CPU, over the measured window, summed over threads and backends (can pass 100 %). "
        "*log reads/write*: `livesettings_changelog_reads_total`, all nodes, per change. "
        "*max reads/change on a node*: the reads made to push changes "
        "(`livesettings_fanout_reads_total` where the nodes count them, else all change-log "
        "reads) on the node that made most, per change: the target is ≤ 1, and 0 when the "
        "bus message carries the change. *carried*: changes a bus message carried "
        "(`livesettings_bus_changes_carried_total`), all nodes.",
        "",
        "| bus | rate /s | commits | writes/commit | log reads/write | max reads/change on a "
        "node | carried | commit mean | commit p99 ≤ | push mean | push p99 ≤ | pool waits | "
        "nodes runq | PG runq |",
        "|" + "---|" * 14,
    ]
    for run in runs:
        side = run.get("server_side")
        if not side or not side["commits"] or not side["changes"]:
            continue
        name = f"{run['plan']['rate']:g}" + (" (profiled)" if run.get("profiled") else "")
        lines.append(
            f"| {run['bus']} | {name} | {side['commits']:.0f} | "
            f"{side['changes'] / side['commits']:.2f} | "
            f"{side['changelog_reads'] / side['changes']:.2f} | "
            f"{worst_reads(side):.2f} | {side.get('carried', 0.0):.0f} | "
            f"{format_ms(side['commit_mean'])} | {_bound(side['commit_p99_bound'])} | "
            f"{format_ms(side['push_mean'])} | {_bound(side['push_p99_bound'])} | "
            f"{side['pool_waits']:.0f} | {_pct(run['measured'].get('server_runq_wait'))} | "
            f"{_pct(run.get('pg_runq_wait'))} |"
        )
    return lines


def _bound(value: float | None) -> str:
    if value is None:
        return "-"
    return "> 5 s" if math.isinf(value) else format_ms(value)


def _pinning_text(bench: Bench) -> str:
    if not bench.pin:
        return "none (taskset missing, fewer than 2 cores, or --no-pin); " + _autogroup_text(bench)
    backends = bench.backends
    seen = len(backends.seen) if backends is not None else 0
    failed = f", {backends.failed} could not be pinned" if backends and backends.failed else ""
    node, gen, pg = (bench.core(w, planned=True) for w in ("node", "gen", "pg"))
    pg_text = (
        "left on any core"
        if pg is None
        else f"pinned to core {pg} (`sched_setaffinity` by pid, rescanned every 0.5 s as the "
        "pools grow)"
    )
    return (
        f"the {bench.args.nodes} nodes: {_taskset(node)}; the load generator and py-spy: "
        f"{_taskset(gen)}; the PostgreSQL backends of the bench database ({seen} over the "
        f"bench{failed}): {pg_text}; the postmaster, WAL writer, checkpointer and background "
        "writer are shared with other databases and were left alone; niceness "
        f"{bench.args.nice} for all of the bench's processes (PostgreSQL backends included); "
        + _autogroup_text(bench)
        + (
            "; for the run marked so, the nodes' threads and the backends were then allowed "
            "on every core"
            if bench.free
            else ""
        )
    )


def _taskset(core: int | None) -> str:
    return "any core" if core is None else f"core {core} (`taskset -c {core}`)"


def _autogroup_text(bench: Bench) -> str:
    if bench.args.autogroup is None:
        return "no autogroup change (kernel autogroups off, or niceness 0)"
    return (
        "the nodes and the generator ran in a session of their own whose autogroup was set to "
        f"the same niceness (`{bench.args.autogroup}`; the PostgreSQL backends stay in the "
        "postmaster's autogroup, whose niceness was left alone)"
    )


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    if "summary" not in profile:
        return ["(py-spy produced no samples)"]
    s = profile["summary"]
    intro = (
        f"py-spy on node {profile['node']} at {profile['rate']:g} writes/s over the measured "
        f"window, sampling the thread that holds the GIL at 250 Hz ({s['samples']} samples; "
        "time waiting for PostgreSQL is not in them). "
        f"`{profile['command']}`"
    )
    return profile_tables(s, intro, profile["key"])


def _shown_settings(bench: Bench) -> dict[str, str]:
    shown = {
        "database_url": "postgresql://<app role>@127.0.0.1:5432/<scratch database>",
        "bus_url": "postgres (or redis://127.0.0.1:6379/0?channel=<random> for the Redis run)",
        "jwt_secret": "*** (random, 32 bytes, per bench run, shared by the nodes)",
        "master_keys": "k1:*** (random, per bench run)",
        "data_dir": "<workdir>/node<i> (deleted afterwards)",
    }
    shown.update(bench.overrides)
    return shown


def _env_prefix() -> str:
    env = {
        "LIVESETTINGS_DATABASE_URL": "…",
        "LIVESETTINGS_BUS_URL": "postgres",
        "LIVESETTINGS_JWT_SECRET": "…",
        "LIVESETTINGS_MASTER_KEYS": "…",
        "PYTHONPATH": str(ROOT / "src"),
    }
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " "


def write_section(path: Path, section: str) -> None:
    """Replace our marked section of ``path`` (or append it), leaving the rest as it is."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    start, end = text.find(SECTION_START), text.rfind(SECTION_END)
    if start >= 0 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(SECTION_END) :]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text if text.endswith("\n") else text + "\n")
