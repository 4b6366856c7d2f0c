"""The load generator: one run at one target rate, in its own process (``bench/run.py`` pins it).

What it does, in order:

1. Mints an access token per user (``TokenIssuer`` with the server's secret: any ``sub`` is a
   valid user, so no sign-up) and opens ``devices`` WebSockets per user, each authenticated
   and subscribed (``since: null`` → snapshot → ``synced``).
2. Fixes the whole schedule of send times in advance — open loop, Poisson or uniform
   arrivals at the target rate — and sends each write as an HTTP ``PATCH /v1/settings`` at its
   time, whatever happened to the writes before it. Latency is measured from the *scheduled*
   time, so a slow server or a late generator shows up in the numbers instead of silently
   slowing the arrivals down (coordinated omission).
3. Records when each write's ``change`` frame reaches each of its user's devices (matched by
   mutation id, which is the ``Idempotency-Key``), checks every device saw every change exactly
   once and in revision order, and every ``PATCH`` was answered 200.
4. Writes one JSON document of results (``--out``) and exits.

Several nodes (``--url`` given once per node, as ``bench/multinode.py`` does): users are dealt
to the nodes round-robin, user *u* writing through node *u* mod *n*, and each of its devices
connects to one of the *other* nodes (device *d* to the *(1 + d mod (n - 1))*-th node after the
writer's), so every delivery measured is cross-node: written on one server, pushed by another.
With one ``--url`` everything goes to that server, as before.

Everything is bounded: the schedule has a fixed count, the drain after it has a deadline, and
all traffic goes to the URLs given (127.0.0.1 in the benchmark).

The HTTP client is a deliberately minimal keep-alive HTTP/1.1 ``asyncio.Protocol`` (one
request in flight per connection, a pool that grows to ``--max-conns``): it costs a fraction of
what a general-purpose client does, so the generator is not what limits the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, cast
from urllib.parse import urlsplit

from hist import Samples, log_buckets
from httppool import Counters, HttpPool
from rawdevices import open_raw_device
from rawws import RawSocket
from websockets.asyncio.client import ClientConnection, connect
from wswriters import WsWriters

from livesettings.auth import TokenIssuer

__all__ = ["Plan", "main", "run"]

# Below this many seconds before a send time the generator stops sleeping (the event loop's
# timers have about 1 ms resolution) and yields to the loop until the time comes. Only used at
# low rates, where it is what makes a sub-millisecond p50 measurable at all.
_SPIN_WINDOW = 0.0012
_CONNECT_CONCURRENCY = 50
_PERF = time.perf_counter


@dataclass(frozen=True)
class Plan:
    """What one run does."""

    urls: tuple[str, ...]  # one per node; a single one for a single server
    users: int
    devices: int
    rate: float
    warmup: float
    duration: float
    arrival: str = "poisson"
    seed: int = 1
    max_conns: int = 256
    drain_timeout: float = 10.0
    server_pids: tuple[int, ...] = ()  # whose CPU to report (every node's)
    prefix: str = "bench"
    spin: bool = False
    timeline: str | None = None
    writes: str = "http"  # or "ws": WebSocket ``update`` frames on a socket of their own
    raw_devices: bool = False  # devices on bench/rawws.py's bare client (cheaper per frame)


@dataclass
class _Snapshot:
    """CPU counters at one instant: this process, the server(s), and each core of the machine."""

    wall: float
    own_cpu: float
    server_cpus: list[float | None]  # one per server process
    server_runq: dict[str, int] | None
    cores: list[tuple[int, int]]

    @classmethod
    def take(cls, server_pids: tuple[int, ...]) -> _Snapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        runq: dict[str, int] | None = None
        for pid in server_pids:  # thread ids are unique machine-wide: one dict holds them all
            waits = _runq_wait(pid)
            if waits is not None:
                runq = {**(runq or {}), **waits}
        return cls(
            _PERF(),
            usage.ru_utime + usage.ru_stime,
            [_proc_cpu(pid) for pid in server_pids],
            runq,
            _cores(),
        )


def _proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, every thread included."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _runq_wait(pid: int | None) -> dict[str, int] | None:
    """Per thread: nanoseconds spent runnable but waiting for a CPU (schedstat)."""
    if pid is None:
        return None
    out: dict[str, int] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                out[tid] = int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return out


def _cores() -> list[tuple[int, int]]:
    """``(busy, total)`` jiffies for each core, from /proc/stat."""
    out: list[tuple[int, int]] = []
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu":
                    numbers = [int(v) for v in values[:8]]
                    idle = numbers[3] + numbers[4]
                    out.append((sum(numbers) - idle, sum(numbers)))
    except OSError:
        pass
    return out


def _usage(start: _Snapshot, end: _Snapshot) -> dict[str, Any]:
    wall = max(1e-9, end.wall - start.wall)
    server = runq = None
    each = [
        None if a is None or b is None else (b - a) / wall
        for a, b in zip(start.server_cpus, end.server_cpus, strict=True)
    ]
    if each and None not in each:
        server = sum(cast(list[float], each))
    if start.server_runq is not None and end.server_runq is not None:
        # Threads come and go (thread pools retire idle workers): count each thread's own
        # growth, from zero for one born in the window.
        before = start.server_runq
        grown = sum(v - before.get(tid, 0) for tid, v in end.server_runq.items())
        runq = grown / 1e9 / wall
    cores = [
        (b1 - b0) / max(1, t1 - t0)
        for (b0, t0), (b1, t1) in zip(start.cores, end.cores, strict=False)
    ]
    return {
        "wall_s": wall,
        "loadgen_cpu": (end.own_cpu - start.own_cpu) / wall,
        "server_cpu": server,  # summed over the server processes: can pass 100%
        "server_cpu_each": each,
        "server_runq_wait": runq,
        "core_busy": cores,
    }


# -- schedule -----------------------------------------------------------------------------


def make_schedule(plan: Plan) -> tuple[array[float], array[int]]:
    """Send offsets (s from the start) and the user of each write, fixed before the run."""
    rng = random.Random(plan.seed)
    total = plan.warmup + plan.duration
    times: array[float] = array("d")
    users: array[int] = array("i")
    cap = int(plan.rate * total * 1.5) + 16  # a Poisson count never gets near this; a bound
    t = 0.0
    while len(times) < cap:
        t = t + rng.expovariate(plan.rate) if plan.arrival == "poisson" else len(times) / plan.rate
        if t >= total:
            break
        times.append(t)
        users.append(rng.randrange(plan.users))
    return times, users


# -- the run ------------------------------------------------------------------------------


class Run:
    """State of one run; see the module docstring for what it measures."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.offsets, self.user_of = make_schedule(plan)
        n = len(self.offsets)
        self.n = n
        self.sched: array[float] = array("d", bytes(8 * n))
        self.sent: array[float] = array("d", bytes(8 * n))
        self.answered_at: array[float] = array("d", bytes(8 * n))
        self.status: array[int] = array("h", bytes(2 * n))
        self.arrivals: array[float] = array("d", bytes(8 * n * plan.devices))
        self.counters = Counters()
        self.errors: list[str] = []
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.raw_sockets: list[RawSocket] = []
        self.mid_prefix = f"{plan.prefix}-{os.getpid()}-{int(time.time())}-"
        self.measure_start: _Snapshot | None = None
        self.measure_end: _Snapshot | None = None
        self.done = asyncio.Event()
        self.dispatched = False
        self.closing = False  # set once the run is over: closed sockets are then expected
        self.nodes = [_address(url) for url in plan.urls]

    # -- which node: see the module docstring --
    def writer_node(self, u: int) -> int:
        """The node user ``u`` writes through."""
        return u % len(self.nodes)

    def device_node(self, u: int, d: int) -> int:
        """The node device ``d`` of user ``u`` listens on: never the writer's, if others exist."""
        count, writer = len(self.nodes), self.writer_node(u)
        return writer if count == 1 else (writer + 1 + d % (count - 1)) % count

    # -- setup --
    def tokens(self) -> list[str]:
        secret = os.environ.get("LIVESETTINGS_JWT_SECRET", "")
        issuer = TokenIssuer(secret.encode(), ttl_seconds=3600)
        return [issuer.issue(self.user_id(u))[0] for u in range(self.plan.users)]

    def user_id(self, u: int) -> str:
        return f"{self.plan.prefix}-user-{u:04d}"

    async def open_devices(self, tokens: list[str]) -> None:
        gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

        async def one(u: int, d: int) -> None:
            async with gate:
                host, port = self.nodes[self.device_node(u, d)]
                if self.plan.raw_devices:
                    raw = await open_raw_device(self, host, port, u, d, tokens[u])
                    self.raw_sockets.append(raw)
                    return
                ws = await connect(
                    f"ws://{host}:{port}/v1/realtime",
                    compression=None,
                    proxy=None,
                    ping_interval=None,  # the server pings; the library answers
                    max_size=4 * 1024 * 1024,
                    max_queue=4096,
                    open_timeout=20,
                    close_timeout=2,
                )
                self.sockets.append(ws)
                client_id = f"{self.plan.prefix}-u{u}-d{d}"
                await ws.send(
                    json.dumps({"type": "auth", "token": tokens[u], "client_id": client_id})
                )
                await ws.send(json.dumps({"type": "subscribe", "since": None}))
                revision = -1
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    kind = frame.get("type")
                    if kind in ("snapshot", "change"):
                        revision = int(frame["revision"])
                    elif kind == "synced":
                        break
                    elif kind == "error":
                        raise RuntimeError(f"device u{u} d{d} refused: {frame}")
                self.readers.append(asyncio.create_task(self.read_device(ws, u, d, revision)))

        await asyncio.gather(
            *(one(u, d) for u in range(self.plan.users) for d in range(self.plan.devices))
        )

    async def read_device(self, ws: ClientConnection, u: int, d: int, revision: int) -> None:
        """Timestamp every ``change`` frame of one device; check order and exactly-once."""
        counters = self.counters
        arrivals = self.arrivals
        user_of = self.user_of
        devices = self.plan.devices
        prefix = self.mid_prefix
        cut = len(prefix)
        loads = json.loads
        perf = _PERF
        try:
            async for raw in ws:
                now = perf()
                frame = loads(raw)
                if frame.get("type") != "change":
                    if frame.get("type") == "error":
                        counters.ws_errors += 1
                        self.note(f"device u{u} d{d} got an error frame: {frame}")
                    continue
                rev = frame["revision"]
                if rev != revision + 1:
                    counters.gaps += 1
                    self.note(f"device u{u} d{d}: revision {rev} after {revision}")
                revision = rev
                mid = frame["mutation_id"]
                if not mid.startswith(prefix):
                    counters.foreign += 1
                    continue
                job = int(mid[cut:])
                if user_of[job] != u:
                    counters.misrouted += 1
                    continue
                slot = job * devices + d
                if arrivals[slot]:
                    counters.duplicates += 1
                else:
                    arrivals[slot] = now
                    counters.received += 1
                    if self.dispatched:
                        self.check_done()
        except Exception as exc:  # a closed socket ends the reader; count it, don't crash
            self.note(f"device u{u} d{d} reader: {exc!r}")
        finally:
            if not self.closing:
                counters.ws_closed += 1

    def note(self, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(message)

    # -- the writes --
    def requests(self, tokens: list[str]) -> Callable[[int], bytes]:
        hosts = [self.nodes[self.writer_node(u)] for u in range(self.plan.users)]
        heads = [
            (
                f"PATCH /v1/settings HTTP/1.1\r\nHost: {hosts[u][0]}:{hosts[u][1]}\r\n"
                f"Authorization: Bearer {tokens[u]}\r\n"
                "Content-Type: application/merge-patch+json\r\n"
                f"X-Client-Id: {self.plan.prefix}-http-{u}\r\n"
                f"Idempotency-Key: {self.mid_prefix}"
            ).encode()
            for u in range(self.plan.users)
        ]
        user_of = self.user_of

        def request(job: int) -> bytes:
            body = b'{"preferences":{"bench":{"seq":%d,"device":"http"}}}' % job
            return b"%s%d\r\nContent-Length: %d\r\n\r\n%s" % (
                heads[user_of[job]],
                job,
                len(body),
                body,
            )

        return request

    def on_answer(self, job: int, status: int, body: bytes) -> None:
        counters = self.counters
        if self.answered_at[job]:
            return
        self.answered_at[job] = _PERF()
        self.status[job] = status
        counters.answered += 1
        if status == 200:
            counters.ok += 1
        else:
            key = str(status)
            counters.statuses[key] = counters.statuses.get(key, 0) + 1
            self.note(f"write {job}: HTTP {status} {body[:200]!r}")
        if self.dispatched:
            self.check_done()

    async def dispatch(self, pools: list[Any], start: float) -> None:
        plan = self.plan
        # The pool of each user's node, looked up once per user rather than once per write.
        pool_of = [pools[self.writer_node(u)] for u in range(plan.users)]
        user_of = self.user_of
        spin = plan.spin
        sleep = asyncio.sleep
        perf = _PERF
        offsets, sched = self.offsets, self.sched
        measure_at = start + plan.warmup
        for job in range(self.n):
            t = start + offsets[job]
            sched[job] = t
            if self.measure_start is None and t >= measure_at:
                self.measure_start = _Snapshot.take(plan.server_pids)
                print("MEASURE_START", flush=True)  # run.py starts the profiler on this
            now = perf()
            if t > now:
                wait = t - now - (_SPIN_WINDOW if spin else 0.0)
                if wait > 0:
                    await sleep(wait)
                if spin:
                    while perf() < t:
                        await sleep(0)
            elif job % 32 == 0:
                await sleep(0)  # behind schedule: still let responses and frames in
            pool_of[user_of[job]].submit(job)
        end_at = start + plan.warmup + plan.duration
        if perf() < end_at:
            await sleep(end_at - perf())
        self.measure_end = _Snapshot.take(plan.server_pids)
        print("MEASURE_END", flush=True)  # multinode.py samples PostgreSQL's CPU on these two
        if self.measure_start is None:
            self.measure_start = self.measure_end

    def check_done(self) -> None:
        """Set ``done`` once every write is sent and answered and every change delivered."""
        c = self.counters
        if self.dispatched and c.answered >= self.n and c.received >= c.ok * self.plan.devices:
            self.done.set()

    async def execute(self) -> dict[str, Any]:
        plan = self.plan
        setup_started = _PERF()
        tokens = self.tokens()
        await self.open_devices(tokens)
        pools: list[Any]
        if plan.writes == "ws":
            pools = [
                WsWriters(
                    host, port, self.mid_prefix, _ws_body, self.user_of, self.on_answer, self.sent
                )
                for host, port in self.nodes
            ]
            await asyncio.gather(
                *(
                    w.open(
                        {u: tokens[u] for u in range(plan.users) if self.writer_node(u) == i},
                        plan.prefix,
                    )
                    for i, w in enumerate(pools)
                )
            )
        else:
            request = self.requests(tokens)
            pools = [
                HttpPool(
                    host, port, plan.max_conns, request, self.on_answer, self.sent, self.counters
                )
                for host, port in self.nodes
            ]
            # Each node's pool starts with its share of the connections the rate will need.
            warm = min(plan.max_conns, 8 + int(plan.rate / 100 / len(pools)))
            await asyncio.gather(*(pool.open(warm) for pool in pools))
        setup_s = _PERF() - setup_started
        before = _Snapshot.take(plan.server_pids)
        start = _PERF() + 0.2
        await self.dispatch(pools, start)
        self.dispatched = True
        self.check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), plan.drain_timeout)
        finished = _Snapshot.take(plan.server_pids)
        self.closing = True
        for pool in pools:
            if isinstance(pool, WsWriters):
                await pool.aclose()
            else:
                pool.close()
        await self.close_devices()
        assert self.measure_start is not None and self.measure_end is not None
        return self.report(
            setup_s,
            _usage(self.measure_start, self.measure_end),
            _usage(before, finished),
            queued_at_end=sum(len(pool.queue) for pool in pools),
        )

    async def close_devices(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for raw in self.raw_sockets:
            raw.abort()

    # -- results --
    def report(
        self,
        setup_s: float,
        measured: dict[str, Any],
        whole: dict[str, Any],
        *,
        queued_at_end: int,
    ) -> dict[str, Any]:
        plan = self.plan
        devices = plan.devices
        start = self.sched[0] - self.offsets[0] if self.n else 0.0
        lo, hi = start + plan.warmup, start + plan.warmup + plan.duration
        e2e, from_send, ack, lag = Samples(), Samples(), Samples(), Samples()
        missing = 0
        measured_writes = sent_in_window = done_in_window = 0
        for job in range(self.n):
            t = self.sched[job]
            in_window = lo <= t < hi
            measured_writes += in_window
            sent_in_window += lo <= self.sent[job] < hi
            if self.status[job] != 200:
                continue
            done_in_window += lo <= self.answered_at[job] < hi
            for d in range(devices):
                arrived = self.arrivals[job * devices + d]
                if not arrived:
                    missing += 1
                elif in_window:
                    e2e.add(arrived - t)
                    from_send.add(arrived - self.sent[job])
            if in_window:
                ack.add(self.answered_at[job] - t)
                lag.add(self.sent[job] - t)
        if plan.timeline:
            self.write_timeline(plan.timeline, start)
        c = self.counters
        unanswered = self.n - c.answered
        lost = (
            sum(c.statuses.values())
            + missing
            + c.duplicates
            + c.gaps
            + c.misrouted
            + c.ws_errors
            + c.ws_closed
        )
        return {
            "plan": {
                "rate": plan.rate,
                "nodes": len(plan.urls),
                "users": plan.users,
                "devices": plan.devices,
                "warmup_s": plan.warmup,
                "duration_s": plan.duration,
                "arrival": plan.arrival,
                "seed": plan.seed,
                "max_conns": plan.max_conns,
                "spin": plan.spin,
                "writes": plan.writes,
                "raw_devices": plan.raw_devices,
            },
            "writes": self.n,
            "measured_writes": measured_writes,
            "scheduled_rate": measured_writes / plan.duration,
            "sent_rate": sent_in_window / plan.duration,
            "done_rate": done_in_window / plan.duration,
            # change frames that reached a device within the window, per second
            "delivery_rate": sum(1 for a in self.arrivals if lo <= a < hi) / plan.duration,
            "ok": c.ok,
            "http_errors": dict(c.statuses),
            "unanswered": unanswered,
            "queued_at_end": queued_at_end,
            "retries": c.retries,
            "expected_deliveries": c.ok * devices,
            "received": c.received,
            "missing": missing,
            "duplicates": c.duplicates,
            "gaps": c.gaps,
            "foreign": c.foreign,
            "misrouted": c.misrouted,
            "ws_errors": c.ws_errors,
            "ws_closed": c.ws_closed,
            "lost": lost,
            "nothing_lost": lost == 0 and unanswered == 0,
            "latency": e2e.summary(),
            "latency_from_send": from_send.summary(),
            "http_ack": ack.summary(),
            "dispatch_lag": lag.summary(),
            "histogram": log_buckets(e2e.values()),
            "layout": self.layout(),
            "max_in_flight": c.max_in_flight,
            "max_queued": c.max_queued,
            "setup_s": setup_s,
            "measured": measured,
            "whole": whole,
            "notes": self.errors,
        }

    def layout(self) -> dict[str, Any]:
        """Which node took which writes and devices, and how many devices shared their
        writer's node (0 with several nodes: every delivery is cross-node)."""
        users, devices = self.plan.users, self.plan.devices
        writes = [0] * len(self.nodes)
        for u in self.user_of:
            writes[self.writer_node(u)] += 1
        placed = [0] * len(self.nodes)
        for u in range(users):
            for d in range(devices):
                placed[self.device_node(u, d)] += 1
        same = sum(
            self.device_node(u, d) == self.writer_node(u)
            for u in range(users)
            for d in range(devices)
        )
        return {"writes_per_node": writes, "devices_per_node": placed, "same_node_devices": same}

    def write_timeline(self, path: str, start: float) -> None:
        """One CSV line per write, in ms from the start: to find stalls and what they hit."""
        devices = self.plan.devices
        with open(path, "w") as fh:
            fh.write("job,user,scheduled_ms,lag_ms,ack_ms,slowest_device_ms,status\n")
            for job in range(self.n):
                t = self.sched[job]
                arrived = [self.arrivals[job * devices + d] for d in range(devices)]
                slowest = (max(arrived) - t) * 1000 if all(arrived) else -1.0
                ack = (self.answered_at[job] - t) * 1000 if self.answered_at[job] else -1.0
                fh.write(
                    f"{job},{self.user_of[job]},{(t - start) * 1000:.3f},"
                    f"{(self.sent[job] - t) * 1000:.3f},{ack:.3f},{slowest:.3f},"
                    f"{self.status[job]}\n"
                )


def _ws_body(job: int) -> bytes:
    return b'{"preferences":{"bench":{"seq":%d,"device":"ws"}}}' % job


def _address(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    return split.hostname or "127.0.0.1", split.port or 80


async def run(plan: Plan) -> dict[str, Any]:
    """Carry out one run and return its results."""
    return await Run(plan).execute()


def _parse(argv: list[str] | None) -> tuple[Plan, str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    p.add_argument(
        "--url",
        action="append",
        required=True,
        help="the server, e.g. http://127.0.0.1:8000; once per node for several (cross-node)",
    )
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--devices", type=int, default=3, help="WebSocket subscribers per user")
    p.add_argument("--rate", type=float, required=True, help="target writes per second")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not measured")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    p.add_argument("--arrival", choices=("poisson", "uniform"), default="poisson")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-conns", type=int, default=256, help="HTTP connections at most")
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="to report the server's CPU use; once per node",
    )
    p.add_argument("--prefix", default="bench", help="user ids and mutation ids start with it")
    p.add_argument("--spin", action="store_true", help="yield-spin the last ms before a send")
    p.add_argument("--out", required=True, help="where to write the JSON results")
    p.add_argument("--timeline", help="also write one CSV line per write here")
    p.add_argument(
        "--raw-devices",
        action="store_true",
        help="devices on a bare WebSocket client: for many frames a second (W4)",
    )
    p.add_argument(
        "--writes",
        choices=("http", "ws"),
        default="http",
        help="http: PATCH /v1/settings; ws: update frames on one more socket per user",
    )
    a = p.parse_args(argv)
    if not (a.rate > 0 and a.users > 0 and a.devices > 0 and a.duration > 0 and a.warmup >= 0):
        p.error("rate, users, devices and duration must be positive")
    plan = Plan(
        urls=tuple(a.url),
        users=a.users,
        devices=a.devices,
        rate=a.rate,
        warmup=a.warmup,
        duration=a.duration,
        arrival=a.arrival,
        seed=a.seed,
        max_conns=a.max_conns,
        drain_timeout=a.drain_timeout,
        server_pids=tuple(a.server_pid),
        prefix=a.prefix,
        spin=a.spin,
        timeline=a.timeline,
        writes=a.writes,
        raw_devices=a.raw_devices,
    )
    return plan, a.out


def main(argv: list[str] | None = None) -> int:
    """Run once and write the results; exit 0 when the run completed (lost or not)."""
    plan, out = _parse(argv)
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, with a little more overhead
        result = asyncio.run(run(plan))
        result["event_loop"] = "asyncio"
    else:
        result = uvloop.run(run(plan))
        result["event_loop"] = f"uvloop {metadata.version('uvloop')}"
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
