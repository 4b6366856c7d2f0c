"""The processes of a single-node bench: the server under test (pinned to core 0) and each
generator run (pinned to core 1), started, watched and stopped. Used by ``bench/run.py``,
``bench/suite.py`` and ``bench/multinode.py``."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOAD = BENCH / "load.py"
FAKE = BENCH / "fake_server.py"

P99_LIMIT = 0.050  # seconds: a rate passes at or below this write→device p99
P50_TARGET = 0.001  # the p50 target at the baseline rate
RATE_TARGET = 2000.0  # writes/s that must pass
# Up to this rate the generator yield-spins the last ms before each send, so that a
# sub-millisecond p50 is measurable; above it timer lateness (~1 ms) is noise next to 50 ms.
SPIN_MAX_RATE = 150.0
DEFAULT_RATES = "250,500,1000,1500,2000,2500,3000,3500,4000"
ANALYSIS_START, ANALYSIS_END = "<!-- analysis:start -->", "<!-- analysis:end -->"
# Up to this rate the generator yield-spins the last ms before each send, so that a
# sub-millisecond p50 is measurable; above it timer lateness (~1 ms) is noise next to 50 ms.
SPIN_MAX_RATE = 150.0
_URL = re.compile(r"livesettings is running: open (http://\S+)")


@dataclass
class Server:
    """The server process under test."""

    proc: subprocess.Popen[bytes]
    url: str
    command: list[str]
    env: dict[str, str]
    log: Path


@dataclass
class Bench:
    """Settings of this invocation and what it has found so far."""

    args: argparse.Namespace
    workdir: Path
    pin: bool
    nice: int = 0
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    overrides: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    load_command: list[str] = field(default_factory=list)
    serial: int = 0  # generator runs so far, to name their files
    extra: dict[str, Any] = field(default_factory=dict)  # results of the other workloads


# -- processes ----------------------------------------------------------------------------


def _pinned(core: int, command: list[str], pin: bool, nice: int = 0) -> list[str]:
    if nice:
        command = ["nice", "-n", str(nice), *command]
    return ["taskset", "-c", str(core), *command] if pin else command


def _python_env() -> dict[str, str]:
    """The parent's environment minus any LIVESETTINGS_*, so only what we set applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESETTINGS_")}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)  # traffic goes to 127.0.0.1 only
    return env


def start_server(bench: Bench, *, port: int = 0) -> Server:
    """A server on a fresh data dir; with ``port``, a restart on the same port and data."""
    data = bench.workdir / "data"
    if data.exists() and not port:
        shutil.rmtree(data)
    env = _python_env()
    env.update({f"LIVESETTINGS_{k.upper()}": v for k, v in bench.overrides.items()})
    if port:
        env["LIVESETTINGS_PORT"] = str(port)
    env["LIVESETTINGS_DATA_DIR"] = str(data)
    env["LIVESETTINGS_JWT_SECRET"] = bench.secret
    serve = (
        [sys.executable, str(FAKE)]
        if bench.args.fake_server
        else [sys.executable, "-m", "livesettings", "serve"]
    )
    command = _pinned(0, serve, bench.pin, bench.nice)
    log = bench.workdir / "server.log"
    with open(log, "wb") as out:
        # The log goes to a file, never a pipe nobody reads, which would stall the server.
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = _URL.search(log.read_text(errors="replace"))
        if match:
            return Server(proc, match.group(1).rstrip("/"), command, env, log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_server(proc)
    raise SystemExit("the server did not start:\n" + log.read_text(errors="replace")[-4000:])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, limit: float = 30.0) -> float:
    """Wait until the server uses under 5% CPU (it may still be pushing a backlog)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = _cpu_seconds(pid)
        time.sleep(0.25)
        if _cpu_seconds(pid) - before < 0.0125:
            break
    return time.monotonic() - started


def run_load(
    bench: Bench,
    server: Server,
    rate: float,
    *,
    duration: float,
    spin: bool,
    profile: bool,
    users: int | None = None,
    devices: int | None = None,
    writes: str = "http",
    raw_devices: bool = False,
) -> dict[str, Any]:
    """One generator process at one rate; its JSON results plus the machine's load."""
    args = bench.args
    users = args.users if users is None else users
    devices = args.devices if devices is None else devices
    bench.serial += 1
    out = bench.workdir / f"run-{bench.serial:02d}-{writes}-{rate:g}.json"
    command = [
        sys.executable,
        str(LOAD),
        "--url",
        server.url,
        "--rate",
        f"{rate:g}",
        "--users",
        str(users),
        "--devices",
        str(devices),
        "--writes",
        writes,
        "--warmup",
        f"{args.warmup:g}",
        "--duration",
        f"{duration:g}",
        "--arrival",
        args.arrival,
        "--seed",
        str(args.seed),
        "--max-conns",
        str(args.max_conns),
        "--drain-timeout",
        f"{args.drain_timeout:g}",
        "--server-pid",
        str(server.proc.pid),
        "--out",
        str(out),
        *(["--spin"] if spin else []),
        *(["--raw-devices"] if raw_devices else []),
    ]
    command = _pinned(1, command, bench.pin, bench.nice)
    if not bench.load_command:
        bench.load_command = command
    env = _python_env()
    env["LIVESETTINGS_JWT_SECRET"] = bench.secret
    load_before = os.getloadavg()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    # The generator bounds itself; this is the backstop should it hang anyway.
    watchdog = threading.Timer(60 + args.warmup + duration + args.drain_timeout, proc.kill)
    watchdog.start()
    spy: subprocess.Popen[bytes] | None = None
    raw = bench.workdir / f"profile-{rate:g}.txt"
    assert proc.stdout is not None
    for line in proc.stdout:  # the generator prints one line: when the window opens
        if profile and line.strip() == "MEASURE_START" and spy is None:
            spy = _start_profiler(bench, server, raw, duration)
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
    result["loadavg_before"] = load_before
    result["server_alive"] = server.proc.poll() is None
    result["idle_wait_s"] = wait_idle(server.proc.pid) if result["server_alive"] else 0.0
    if profile and raw.exists():
        result["profile_raw"] = str(raw)
    return result


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _start_profiler(
    bench: Bench, server: Server, raw: Path, duration: float
) -> subprocess.Popen[bytes] | None:
    spy = _py_spy()
    if spy is None:
        return None
    command = [
        spy,
        "record",
        "--pid",
        str(server.proc.pid),
        "--duration",
        # A little shorter than the window, so the drain and the teardown are not in it.
        str(max(1, int(duration) - 1)),
        "--rate",
        "250",
        "--format",
        "raw",
        # Only the thread holding the GIL: on one core that is where Python's time goes,
        # including the cost of handing work to other threads.
        "--gil",
        "--nonblocking",  # sample without pausing the server
        "--output",
        str(raw),
    ]
    bench.profile = {"command": shlex.join(command)}
    return subprocess.Popen(
        _pinned(1, command, bench.pin), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
