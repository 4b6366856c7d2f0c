"""The workloads of ``make bench`` besides the HTTP sweep of ``bench/run.py`` (W2/W3 there).

Each runs on a server of its own (fresh data dir, pinned like the others) so one workload's
leftovers (sockets, memory, a backlog) never weigh on the next:

- **W3 over WebSockets**: the same sweep as W3, writes as ``update`` frames (``load.py
  --writes ws``).
- **W4 hot user**: one user, ``--hot-devices`` devices, writes by HTTP at each of
  ``--hot-rates``; frames pushed per second = devices x changes delivered per second.
- **W1 idle sockets** and **W6 reconnect storm**: ``bench/workloads.py``.
- **PocketBase** for W2/W3, when its binary is installed: ``bench/pocketbase.py``.
- **W5** (three nodes on PostgreSQL): ``bench/multinode.py``, a shorter run, which writes its
  own section of the same results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from procs import (
    BENCH,
    SPIN_MAX_RATE,
    Bench,
    Server,
    _pinned,
    _python_env,
    run_load,
    start_server,
    stop_server,
)
from tables import passed, say

__all__ = ["WORKLOADS", "run_hot", "run_idle", "run_multinode", "run_storm", "run_ws_sweep"]

#: Every workload ``--workloads`` accepts, in the order they run.
WORKLOADS = ("W2", "W3", "W3WS", "PB", "W4", "W1", "W6", "W5")
WORKLOADS_PY = BENCH / "workloads.py"


def sweep(bench: Bench, server: Server, rates: list[float], writes: str) -> list[dict[str, Any]]:
    """Rising rates until ``--max-failures`` fail in a row; each run's results."""
    args = bench.args
    runs: list[dict[str, Any]] = []
    failures = 0
    for rate in rates:
        if server.proc.poll() is not None:
            raise SystemExit("the server died; see " + str(server.log))
        run = run_load(
            bench,
            server,
            rate,
            duration=args.duration,
            spin=rate <= SPIN_MAX_RATE,
            profile=False,
            writes=writes,
        )
        runs.append(run)
        say(run)
        failures = 0 if passed(run) else failures + 1
        if failures >= args.max_failures:
            break
    return runs


def run_ws_sweep(bench: Bench, rates: list[float]) -> None:
    """W3 with WebSocket ``update`` frames."""
    print("W3 over WebSockets", flush=True)
    server = start_server(bench)
    try:
        bench.extra["W3WS"] = sweep(bench, server, rates, "ws")
    finally:
        stop_server(server.proc)


def run_hot(bench: Bench) -> None:
    """W4: one user, many devices."""
    args = bench.args
    print(f"W4 hot user: 1 user x {args.hot_devices} devices", flush=True)
    server = start_server(bench)
    runs: list[dict[str, Any]] = []
    try:
        for rate in [float(r) for r in args.hot_rates.split(",") if r.strip()]:
            run = run_load(
                bench,
                server,
                rate,
                duration=args.duration,
                spin=False,
                profile=False,
                users=1,
                devices=args.hot_devices,
                raw_devices=True,
            )
            run["frames_per_s"] = _frames_per_second(run)
            runs.append(run)
            say(run)
            print(f"        frames pushed {run['frames_per_s']:.0f}/s", flush=True)
    finally:
        stop_server(server.proc)
    bench.extra["W4"] = runs


def _frames_per_second(run: dict[str, Any]) -> float:
    """Change frames that reached a device per second of the measured window."""
    return float(run["delivery_rate"])


def _generator(bench: Bench, args: list[str], out: Path) -> subprocess.Popen[str]:
    command = _pinned(1, [sys.executable, str(WORKLOADS_PY), *args, "--out", str(out)], bench.pin)
    env = _python_env()
    env["LIVESETTINGS_JWT_SECRET"] = bench.secret
    return subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], out: Path, limit: float, what: str) -> dict[str, Any]:
    watchdog = threading.Timer(limit, proc.kill)  # the backstop: the generator bounds itself
    watchdog.start()
    try:
        code = proc.wait()
    finally:
        watchdog.cancel()
    if code != 0 or not out.exists():
        raise SystemExit(f"the {what} generator failed (exit {code})")
    result: dict[str, Any] = json.loads(out.read_text())
    result["loadavg_before"] = os.getloadavg()
    return result


def run_idle(bench: Bench) -> None:
    """W1: idle authenticated sockets in one server process."""
    args = bench.args
    print(f"W1 idle sockets: {args.idle_sockets}", flush=True)
    server = start_server(bench)
    out = bench.workdir / "w1-idle.json"
    try:
        load = os.getloadavg()
        proc = _generator(
            bench,
            [
                "idle",
                "--url",
                server.url,
                "--server-pid",
                str(server.proc.pid),
                "--sockets",
                str(args.idle_sockets),
                "--hold",
                f"{args.idle_hold:g}",
            ],
            out,
        )
        result = _finish(proc, out, 120 + args.idle_sockets / 50 + args.idle_hold, "W1")
        result["loadavg_before"] = load
    finally:
        stop_server(server.proc)
    print(
        f"        {result['opened']} open, {result['bytes_per_socket'] / 1024:.1f} KiB each",
        flush=True,
    )
    bench.extra["W1"] = result


def run_storm(bench: Bench) -> None:
    """W6: every client resumes with ``since`` after a server restart."""
    args = bench.args
    users, devices = args.storm_users, args.storm_devices
    print(f"W6 reconnect storm: {users * devices} clients", flush=True)
    server = start_server(bench)
    out = bench.workdir / "w6-storm.json"
    load = os.getloadavg()
    proc = _generator(
        bench,
        ["storm", "--url", server.url, "--users", str(users), "--devices", str(devices)],
        out,
    )
    restarted: Server | None = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()  # READY, once every client is subscribed
        if line.strip() != "READY":
            raise SystemExit("the W6 generator did not get ready")
        port = int(server.url.rsplit(":", 1)[1])
        stop_server(server.proc)
        began = time.monotonic()
        restarted = start_server(bench, port=port)
        restart_s = time.monotonic() - began
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        result = _finish(proc, out, 180, "W6")
        result["restart_s"] = restart_s
        result["loadavg_before"] = load
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_server(server.proc)
        if restarted is not None:
            stop_server(restarted.proc)
    took = result["all_caught_up_s"]
    print(
        f"        all caught up in {'-' if took is None else f'{took:.2f} s'}, "
        f"wrong {result['wrong']}",
        flush=True,
    )
    bench.extra["W6"] = result


def run_multinode(bench: Bench, results: Path) -> int:
    """W5 through ``bench/multinode.py``; it writes its own section of ``results``."""
    args = bench.args
    command = [
        sys.executable,
        str(BENCH / "multinode.py"),
        f"--rates={args.multinode_rates}",
        f"--duration={args.duration:g}",
        f"--warmup={args.warmup:g}",
        f"--budget={args.multinode_budget:g}",
        f"--results={results}",
        f"--workdir={args.workdir}",
        f"--nice={args.nice}",
        *(["--no-pin"] if not bench.pin else []),
        *([] if args.profile == "auto" else ["--profile=off"]),
        *(["--redis=off", "--free-run=off"] if args.quick else []),
    ]
    print("W5 three nodes on PostgreSQL: " + " ".join(command[2:]), flush=True)
    return subprocess.run(command, check=False, timeout=args.multinode_budget + 300).returncode
