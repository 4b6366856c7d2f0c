"""``make bench-multinode``: three livesettings nodes on one PostgreSQL, driven by ``load.py``.

What it does, in order, every step bounded in count and time (all traffic on loopback):

1. Makes a scratch database on the local PostgreSQL (127.0.0.1:5432, superuser ``postgres``,
   trust authentication) owned by a scratch owner role, and runs ``python -m livesettings
   setup`` as that owner, which creates the app role. Every name carries a random tag;
   the database and both roles are dropped at the end, whatever happens.
2. Starts ``--nodes`` (3) ``python -m livesettings serve`` processes as the app role with the
   PostgreSQL bus (``LIVESETTINGS_BUS_URL=postgres``), one shared random JWT secret and one set
   of master keys, each pinned with ``taskset`` to ``--node-core``.
3. Pins the PostgreSQL backends that serve the scratch database (found by their process
   title, rescanned every 0.5 s as pools grow) to ``--pg-core`` and gives them the bench's
   niceness. The postmaster and the cluster's shared processes (WAL writer, checkpointer,
   background writer) also serve other people's databases and are left alone.
4. Runs ``bench/load.py`` once per rate of ``--rates`` (ascending; after ``--max-failures``
   rates in a row that are not sustained only the target rate is still run), pinned to
   ``--gen-core``, with every node's URL: each user writes through one node and its devices
   listen on the other two, so every latency sample is cross-node. The 1-minute load average
   before each run, the generator's CPU, every node's CPU, the CPU of the PostgreSQL backends
   and how long both waited for a CPU over the measured window are recorded with it, and the
   nodes' own ``/metrics`` (commit and push latency, batch sizes, change-log reads) around it.
   With a ``--nice`` (default -10 as root) and kernel autogroups on, the bench first re-runs
   itself in a session of its own so that the niceness counts (see ``_SESSION_ENV``).
5. Profiles node 1 with py-spy (when installed in the venv) during one more run at the target
   rate; runs the target rate once more with the nodes and the backends allowed on every core
   (how far the whole machine goes); then, if Redis answers on 127.0.0.1:6379, restarts the
   nodes on the Redis bus (a channel of their own, pinned again) and runs the target rate.
6. Writes its own marked section of ``bench/RESULTS.md`` (the single-node section of
   ``bench/run.py`` is left as it is), keeping the hand-written analysis between the
   ``<!-- multinode-analysis -->`` markers, and stops once ``--budget`` seconds would be
   exceeded by the next run.

The target (issue 13, W5): cross-node write→device p99 ≤ 50 ms at 500 writes/s, nothing
lost; no change-log read when the change fits the notification, and never more than one per
change per node (from each node's ``livesettings_changelog_reads_total``).
Stretch: ≥ 2,000 durable writes/s sustained with 3 devices per user — *sustained* meaning
nothing lost, writes answered at ≥ 95 % of the scheduled rate within the window, and the
200s' p99 under one second (no backlog building up).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from hist import format_ms
from machine import portable
from multinode_pg import (
    PG_HOST,
    PG_PORT,
    Backends,
    Database,
    create_database,
    drop_database,
    pg_settings,
)
from multinode_report import (
    _RUN_OVERHEAD,
    _SESSION_ENV,
    DEFAULT_RATES,
    P99_TARGET,
    REDIS_HOST,
    REDIS_PORT,
    TARGET_RATE,
    _layout,
    key_frames,
    meets_target,
    render,
    scrape,
    server_side,
    sustained,
    write_section,
)

# The single-node harness's helpers, reused so both benches measure and report alike.
from procs import _URL, LOAD, _cpu_seconds, _pinned, _py_spy, _python_env, stop_server
from spy import summarise_profile
from tables import _pct

__all__ = ["main"]

# -- the nodes ----------------------------------------------------------------------------


@dataclass
class Node:
    """One ``livesettings serve`` process."""

    index: int
    proc: subprocess.Popen[bytes]
    url: str
    command: list[str]
    log: Path


@dataclass
class Bench:
    """Settings of this invocation and what it has found so far."""

    args: argparse.Namespace
    workdir: Path
    db: Database
    pin: bool
    started: float
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    overrides: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    load_command: list[str] = field(default_factory=list)
    node_command: list[str] = field(default_factory=list)
    backends: Backends | None = None
    pg: dict[str, str] = field(default_factory=dict)
    free: bool = False  # the nodes and the backends have been unpinned

    def core(self, which: str, *, planned: bool = False) -> int | None:
        """The core ``node``, ``pg`` or ``gen`` is pinned to (``planned``: before the run
        with the nodes unpinned); ``None``: any core."""
        core: int | None = getattr(self.args, f"{which}_core")
        if self.free and not planned and which != "gen":
            return None
        return core if self.pin else None

    def pinned(self, which: str, command: list[str], nice: int = 0) -> list[str]:
        """``command`` wrapped in ``taskset`` (and ``nice``) for where ``which`` runs."""
        core = self.core(which)
        return _pinned(core or 0, command, core is not None, nice)

    def left(self) -> float:
        """Seconds left of the time budget."""
        return float(self.args.budget) - (time.monotonic() - self.started)


def node_env(bench: Bench, index: int, bus_url: str) -> dict[str, str]:
    """The environment of node ``index``: the app role, the bus, the shared secret and keys."""
    env = _python_env()
    env.update({f"LIVESETTINGS_{k.upper()}": v for k, v in bench.overrides.items()})
    env.update(
        {
            "LIVESETTINGS_DATA_DIR": str(bench.workdir / f"node{index}"),
            "LIVESETTINGS_DATABASE_URL": bench.db.app_url,
            "LIVESETTINGS_BUS_URL": bus_url,
            "LIVESETTINGS_JWT_SECRET": bench.secret,
            "LIVESETTINGS_MASTER_KEYS": bench.db.master_keys,
        }
    )
    return env


def run_setup(bench: Bench) -> str:
    """``python -m livesettings setup`` as the owner, which also creates the app role."""
    env = _python_env()
    env.update(
        {
            "LIVESETTINGS_DATA_DIR": str(bench.workdir / "setup"),
            "LIVESETTINGS_ADMIN_DATABASE_URL": bench.db.owner_url,
            "LIVESETTINGS_DATABASE_URL": bench.db.app_url,
            "LIVESETTINGS_MASTER_KEYS": bench.db.master_keys,
            "LIVESETTINGS_JWT_SECRET": bench.secret,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "livesettings", "setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"livesettings setup failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_nodes(bench: Bench, bus_url: str) -> list[Node]:
    """Start every node side by side; return once each has printed its URL."""
    serve = [sys.executable, "-m", "livesettings", "serve"]
    command = bench.pinned("node", serve, bench.args.nice)
    bench.node_command = command
    started: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(1, bench.args.nodes + 1):
            log = bench.workdir / f"node{index}-{bus_url.partition(':')[0]}.log"
            with open(log, "wb") as out:
                # A file, never a pipe nobody reads, which would stall the node.
                proc = subprocess.Popen(
                    command,
                    env=node_env(bench, index, bus_url),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append((index, proc, log))
        nodes: list[Node] = []
        deadline = time.monotonic() + 40
        for index, proc, log in started:
            while True:
                match = _URL.search(log.read_text(errors="replace"))
                if match:
                    nodes.append(Node(index, proc, match.group(1).rstrip("/"), command, log))
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"node {index} did not start:\n" + log.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.05)
        return nodes
    except BaseException:
        for _, proc, _ in started:
            stop_server(proc)
        raise


def stop_nodes(nodes: list[Node]) -> None:
    """SIGTERM to every node at once, then wait for each (killed after 20 s)."""
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)  # all at once: they drain in parallel
    for node in nodes:
        stop_server(node.proc)


def wait_idle(nodes: list[Node], limit: float = 20.0) -> float:
    """Wait until the nodes together use under 5 % of a core (a backlog may still drain)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = sum(_cpu_seconds(n.proc.pid) for n in nodes)
        time.sleep(0.25)
        if sum(_cpu_seconds(n.proc.pid) for n in nodes) - before < 0.0125:
            break
    return time.monotonic() - started


# -- one run ------------------------------------------------------------------------------


def run_load(
    bench: Bench, nodes: list[Node], rate: float, *, bus: str, profile: bool
) -> dict[str, Any]:
    """One generator process at one rate; its JSON results plus what was measured around it."""
    args = bench.args
    out = bench.workdir / f"mn-run-{len(bench.runs) + 1:02d}-{bus}-{rate:g}.json"
    command = [sys.executable, str(LOAD)]
    for node in nodes:
        command += ["--url", node.url, "--server-pid", str(node.proc.pid)]
    command += [
        "--rate",
        f"{rate:g}",
        "--users",
        str(args.users),
        "--devices",
        str(args.devices),
        "--warmup",
        f"{args.warmup:g}",
        "--duration",
        f"{args.duration:g}",
        "--arrival",
        args.arrival,
        "--seed",
        str(args.seed),
        "--max-conns",
        str(args.max_conns),
        "--drain-timeout",
        f"{args.drain_timeout:g}",
        "--out",
        str(out),
    ]
    command = bench.pinned("gen", command, args.nice)
    if not bench.load_command:
        bench.load_command = command
    env = _python_env()
    env["LIVESETTINGS_JWT_SECRET"] = bench.secret
    load_before = os.getloadavg()
    metrics_before = [scrape(node.url) for node in nodes]
    backends = bench.backends
    assert backends is not None
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    # The generator bounds itself; this is the backstop should it hang anyway.
    watchdog = threading.Timer(60 + args.warmup + args.duration + args.drain_timeout, proc.kill)
    watchdog.start()
    spy: subprocess.Popen[bytes] | None = None
    raw = bench.workdir / f"mn-profile-{bus}-{rate:g}.txt"
    pg_start: tuple[float, dict[int, tuple[float, float]]] | None = None
    pg_end: tuple[float, dict[int, tuple[float, float]]] | None = None
    assert proc.stdout is not None
    for line in proc.stdout:  # the generator prints when the window opens and closes
        if line.strip() == "MEASURE_START":
            backends.pin_new()
            pg_start = (time.monotonic(), backends.cpu())
            if profile and spy is None:
                spy = start_profiler(bench, nodes[0], raw)
        elif line.strip() == "MEASURE_END":
            pg_end = (time.monotonic(), backends.cpu())
    code = proc.wait()
    watchdog.cancel()
    if spy is not None:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if code != 0 or not out.exists():
        raise SystemExit(f"the load generator failed at {rate:g}/s (exit {code})")
    result: dict[str, Any] = json.loads(out.read_text())
    result["bus"] = bus
    result["cores"] = _layout(bench)
    result["loadavg_before"] = load_before
    result["nodes_alive"] = all(n.proc.poll() is None for n in nodes)
    if pg_start is not None and pg_end is not None:
        (t0, before), (t1, after) = pg_start, pg_end
        # A backend born inside the window counts from zero: its whole life is in it.
        wall = max(1e-9, t1 - t0)
        for index, key in ((0, "pg_cpu"), (1, "pg_runq_wait")):
            grown = sum(
                now[index] - before.get(pid, (0.0, 0.0))[index] for pid, now in after.items()
            )
            result[key] = grown / wall
        result["pg_backends"] = len(after)
    result["idle_wait_s"] = wait_idle(nodes) if result["nodes_alive"] else 0.0
    if result["nodes_alive"]:  # after the drain: every write of the run is in the counts
        metrics_after = [scrape(node.url) for node in nodes]
        result["server_side"] = server_side(metrics_before, metrics_after)
    if profile and raw.exists():
        result["profile_raw"] = str(raw)
    return result


def start_profiler(bench: Bench, node: Node, raw: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on ``node`` for the measured window, in raw (folded) format; ``None`` if absent."""
    spy = _py_spy()
    if spy is None:
        return None
    command = [
        spy,
        "record",
        "--pid",
        str(node.proc.pid),
        "--duration",
        str(max(1, int(bench.args.duration) - 1)),  # the window, not the drain or teardown
        "--rate",
        "250",
        "--format",
        "raw",
        "--gil",  # the thread holding the GIL: where a node's one core goes
        "--nonblocking",  # sample without pausing the node
        "--output",
        str(raw),
    ]
    bench.profile = {"command": shlex.join(command), "node": node.index}
    return subprocess.Popen(
        bench.pinned("gen", command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- main ---------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--rates", default=DEFAULT_RATES, help="comma list, ascending (PG bus)")
    p.add_argument("--target-rate", type=float, default=TARGET_RATE)
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--arrival", choices=("poisson", "uniform"), default="poisson")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-conns", type=int, default=256, help="HTTP connections per node")
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument(
        "--max-failures", type=int, default=1, help="stop after this many unsustained rates"
    )
    p.add_argument("--profile", choices=("auto", "off"), default="auto")
    p.add_argument("--redis", choices=("auto", "off"), default="auto")
    p.add_argument(
        "--free-run",
        choices=("auto", "off"),
        default="auto",
        help="one more run at the target rate with the nodes and PostgreSQL on any core",
    )
    for name, core, what in (
        ("node", 0, "the nodes"),
        ("pg", 1, "the PostgreSQL backends of the bench database"),
        ("gen", 1, "the load generator (and py-spy)"),
    ):
        p.add_argument(
            f"--{name}-core", type=_core, default=core, help=f"where {what} run: N or 'any'"
        )
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of the nodes, the generator and the bench's PostgreSQL backends",
    )
    p.add_argument("--budget", type=float, default=280.0, help="seconds; skip runs past it")
    p.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out"))
    p.add_argument("--results", default=str(Path(__file__).resolve().parent / "RESULTS.md"))
    p.add_argument("--json", help="also write every run's results (and the database) here")
    args = p.parse_args(argv)
    args.autogroup = None
    if args.nodes < 2:
        p.error("--nodes must be at least 2 (devices listen on nodes other than the writer's)")
    return args


def _core(text: str) -> int | None:
    return None if text == "any" else int(text)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the cleanup in `finally` runs


def _autogroups() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _in_own_session(argv: list[str] | None, limit: float) -> int:
    """Run this bench again in a session of its own and wait for it (see ``_SESSION_ENV``).

    This process stays in the terminal's process group, so Ctrl-C still reaches it; it passes
    SIGINT and SIGTERM on, and the child cleans up as it would itself.
    """
    command = [sys.executable, str(Path(__file__).resolve())]
    command += sys.argv[1:] if argv is None else argv
    child = subprocess.Popen(command, env={**os.environ, _SESSION_ENV: "1"}, start_new_session=True)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        return child.wait(limit)
    except subprocess.TimeoutExpired:  # the bench bounds itself; this is the backstop
        child.terminate()
        try:
            return child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return 1


def _set_autogroup_nice(nice: int) -> str:
    """Give this session's autogroup ``nice``; what was done, for the report."""
    try:
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(nice))
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError as exc:
        return f"could not set its niceness: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Run the whole bench (see the module docstring); 0 once the section is written."""
    args = _parse(argv)
    if not _reachable(PG_HOST, PG_PORT):
        raise SystemExit(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    if args.nice and _autogroups():
        if os.environ.get(_SESSION_ENV) != "1":
            return _in_own_session(argv, args.budget + 180)
        args.autogroup = _set_autogroup_nice(args.nice)
    signal.signal(signal.SIGTERM, _terminate)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.target_rate not in rates:
        rates = sorted([*rates, args.target_rate])
    db = create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="multinode-", dir=workdir) as tmp:
            bench = Bench(args, Path(tmp), db, pin, started)
            bench.pg = pg_settings()
            bench.overrides = _overrides(args, max(rates))
            run_setup(bench)
            bench.backends = Backends(db.name, bench.core("pg"), args.nice)
            bench.backends.watch()
            try:
                _measure(bench, rates)
            finally:
                bench.backends.close()
            elapsed = time.monotonic() - started
            section = render(bench, elapsed, started_at)
            for extra in Path(tmp).glob("*"):  # keep the raw files of the last bench
                if extra.is_file():
                    shutil.copy2(extra, workdir / extra.name)
            section = section.replace(f"{tmp}/", f"{workdir}/")
    finally:
        failed = drop_database(db)
        if failed:
            print("cleanup failed:\n" + "\n".join(failed), file=sys.stderr)
    write_section(Path(args.results), portable(section))
    if args.json:
        dump = {"database": db.name, "roles": [db.owner, db.app_role], "runs": bench.runs}
        Path(args.json).write_text(json.dumps(dump, indent=1))
    print(f"wrote {args.results} ({time.monotonic() - started:.0f} s)")
    return 0


def _overrides(args: argparse.Namespace, highest: float) -> dict[str, str]:
    # Hundreds of sockets from one address: the per-address connect limit exists against
    # abuse and would make the setup, not the nodes, the subject.
    out = {
        "host": "127.0.0.1",
        "port": "0",
        "connect_rate": "100000",
        "connect_burst": "100000",
    }
    if highest / args.users > 0.8 * 50.0:
        # The default per-user write limit (50/s) would refuse writes at this rate.
        out["write_rate"] = f"{2 * highest / args.users:g}"
        out["write_burst"] = str(max(200, int(2 * highest / args.users)))
    return out


def _measure(bench: Bench, rates: list[float]) -> None:
    args = bench.args
    per_run = args.warmup + args.duration + _RUN_OVERHEAD
    nodes = start_nodes(bench, "postgres")
    try:
        failures = 0
        for rate in rates:
            if bench.left() < per_run:
                bench.skipped.append(f"postgres {rate:g}/s (time budget)")
                continue
            if failures >= args.max_failures and rate != args.target_rate:
                bench.skipped.append(f"postgres {rate:g}/s (after {failures} unsustained)")
                continue
            _check_alive(nodes)
            run = run_load(bench, nodes, rate, bus="postgres", profile=False)
            bench.runs.append(run)
            _say(run)
            failures = 0 if sustained(run) else failures + 1
        if args.profile == "auto" and _py_spy() is not None:
            if bench.left() < per_run:
                bench.skipped.append("the profiled run (time budget)")
            else:
                _check_alive(nodes)
                run = run_load(bench, nodes, args.target_rate, bus="postgres", profile=True)
                run["profiled"] = True
                bench.runs.append(run)
                _say(run)
                if bench.profile is not None and run.get("profile_raw"):
                    raw = Path(run["profile_raw"])
                    bench.profile["rate"] = args.target_rate
                    bench.profile["summary"] = summarise_profile(raw)
                    bench.profile["key"] = key_frames(raw)
        if args.free_run == "auto" and bench.pin:
            if bench.left() < per_run:
                bench.skipped.append("the run with nodes and PostgreSQL on any core (budget)")
            else:
                _check_alive(nodes)
                _unpin(bench, nodes)  # the last run on these nodes: no need to pin them again
                run = run_load(bench, nodes, args.target_rate, bus="postgres", profile=False)
                bench.runs.append(run)
                _say(run)
    finally:
        stop_nodes(nodes)
        if bench.free:  # the next nodes and their backends are pinned again
            bench.free = False
            assert bench.backends is not None
            bench.backends.core = bench.core("pg")
    if args.redis == "off":
        return
    if not _reachable(REDIS_HOST, REDIS_PORT):
        bench.skipped.append(f"the Redis run (nothing on {REDIS_HOST}:{REDIS_PORT})")
        return
    if bench.left() < per_run + 10:
        bench.skipped.append("the Redis run (time budget)")
        return
    channel = f"ls-bench-{uuid.uuid4().hex[:12]}"  # nobody else's nodes hear this bench
    nodes = start_nodes(bench, f"redis://{REDIS_HOST}:{REDIS_PORT}/0?channel={channel}")
    try:
        run = run_load(bench, nodes, args.target_rate, bus="redis", profile=False)
        bench.runs.append(run)
        _say(run)
    finally:
        stop_nodes(nodes)


def _unpin(bench: Bench, nodes: list[Node]) -> None:
    """Let the nodes (every thread) and the PostgreSQL backends run on any core from now on."""
    every = set(range(os.cpu_count() or 1))
    bench.free = True
    for node in nodes:
        for tid in os.listdir(f"/proc/{node.proc.pid}/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), every)
    backends = bench.backends
    assert backends is not None
    backends.core = None
    for pid in backends.pids():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, every)


def _check_alive(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is not None:
            raise SystemExit(f"node {node.index} died; see {node.log}")


def _say(run: dict[str, Any]) -> None:
    lat = run["latency"]
    measured = run["measured"]
    each = "/".join(_pct(c) for c in measured.get("server_cpu_each") or [])
    print(
        f"{run['bus']:>8} {run['plan']['rate']:>6g}/s  sent {run['sent_rate']:5.0f}/s  "
        f"done {run['done_rate']:5.0f}/s  p50 {format_ms(lat.get('p50'))} ms  "
        f"p99 {format_ms(lat.get('p99'))} ms  lost {run['lost']}  "
        f"nodes runq {_pct(measured.get('server_runq_wait'))}  "
        f"PG runq {_pct(run.get('pg_runq_wait'))}  "
        f"unanswered {run['unanswered']}  nodes CPU {each}  PG CPU {_pct(run.get('pg_cpu'))}  "
        f"loadgen CPU {_pct(measured['loadgen_cpu'])}  load {run['loadavg_before'][0]:.2f}  "
        f"{'≤' if meets_target(run) else '>'}{P99_TARGET * 1000:g}ms "
        f"{'sustained' if sustained(run) else 'NOT sustained'}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
