"""Generators for the workloads that are not a rate: W1 idle sockets and W6 reconnect storm.

Each is one process (``bench/run.py`` pins it to the generator's core) that writes one JSON
document of results (``--out``). Tokens are minted with the server's secret, as in
``bench/load.py``. Everything is bounded in count and in time, and goes to the URL given.

- ``idle`` (W1): opens ``--sockets`` WebSockets, each authenticated and subscribed to a user
  of its own (one socket per user: the per-user connection limit stays out of it), and reads
  the server's resident memory (``VmRSS``) after the first ``--warm`` sockets and after all
  of them, then again after holding them ``--hold`` seconds: memory per idle socket is the
  growth over the sockets opened after the warm-up.
- ``storm`` (W6): ``--users`` x ``--devices`` sockets subscribed; prints ``READY`` and waits
  for a line on stdin, while ``bench/run.py`` restarts the server on the same port and data.
  Then it writes ``--missed`` changes per user over HTTP (the clients are still away), and
  all the clients reconnect at once and resume with ``since`` = the last revision each saw.
  Caught up = the ``synced`` frame after every missed ``change``, in order, exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from hist import Samples, log_buckets
from rawws import RawSocket, open_socket

from livesettings.auth import TokenIssuer

__all__ = ["main"]

_PERF = time.perf_counter


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (``VmRSS``), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _tokens(prefix: str, users: int) -> list[str]:
    issuer = TokenIssuer(os.environ.get("LIVESETTINGS_JWT_SECRET", "").encode(), ttl_seconds=3600)
    return [issuer.issue(f"{prefix}-user-{u:05d}")[0] for u in range(users)]


@dataclass
class Device:
    """One subscribed client and what it has seen."""

    user: int
    index: int
    revision: int = -1
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    changes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    caught_up_at: float = 0.0
    sock: RawSocket | None = None

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "snapshot":
            self.revision = int(frame["revision"])
        elif kind == "change":
            self.changes.append(int(frame["revision"]))
            self.revision = int(frame["revision"])
        elif kind == "synced":
            self.revision = max(self.revision, int(frame["revision"]))
            self.caught_up_at = _PERF()
            self.synced.set()
        elif kind == "error":
            self.errors.append(str(frame.get("code")))


async def _subscribe(
    host: str, port: int, device: Device, token: str, since: int | None, limit: float
) -> None:
    device.synced = asyncio.Event()
    device.sock = await open_socket(host, port, device.on_frame, limit)
    client_id = f"bench-u{device.user}-d{device.index}"
    device.sock.send({"type": "auth", "token": token, "client_id": client_id})
    device.sock.send({"type": "subscribe", "since": since})
    await asyncio.wait_for(device.synced.wait(), limit)


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    host, port = _address(args.url)
    limit = _raise_fd_limit()
    tokens = _tokens(args.prefix, args.sockets)
    devices = [Device(u, 0) for u in range(args.sockets)]
    gate = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []

    async def one(d: Device) -> None:
        async with gate:
            try:
                await _subscribe(host, port, d, tokens[d.user], None, args.timeout)
            except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
                failures.append(f"socket {d.user}: {exc!r}")

    warm = min(args.warm, args.sockets)
    await asyncio.gather(*(one(d) for d in devices[:warm]))
    await asyncio.sleep(1.0)
    rss_warm = rss_bytes(args.server_pid)
    started = _PERF()
    await asyncio.gather(*(one(d) for d in devices[warm:]))
    connect_s = _PERF() - started
    await asyncio.sleep(1.0)
    rss_all = rss_bytes(args.server_pid)
    await asyncio.sleep(args.hold)
    rss_held = rss_bytes(args.server_pid)
    alive = sum(1 for d in devices if d.sock is not None and not d.sock.closed.done())
    opened = sum(1 for d in devices if d.synced.is_set())
    grown = max(0, max(rss_all, rss_held) - rss_warm)
    for d in devices:
        if d.sock is not None:
            d.sock.abort()
    return {
        "workload": "W1",
        "sockets": args.sockets,
        "warm": warm,
        "opened": opened,
        "alive_after_hold": alive,
        "failures": len(failures),
        "notes": failures[:10],
        "fd_limit": limit,
        "connect_s": connect_s,
        "connect_rate": (opened - warm) / connect_s if connect_s else None,
        "hold_s": args.hold,
        "rss_warm": rss_warm,
        "rss_all": rss_all,
        "rss_held": rss_held,
        "bytes_per_socket": grown / max(1, opened - warm),
    }


async def storm(args: argparse.Namespace) -> dict[str, Any]:
    host, port = _address(args.url)
    _raise_fd_limit()
    tokens = _tokens(args.prefix, args.users)
    devices = [Device(u, d) for u in range(args.users) for d in range(args.devices)]
    gate = asyncio.Semaphore(args.concurrency)

    async def first(d: Device) -> None:
        async with gate:
            await _subscribe(host, port, d, tokens[d.user], None, args.timeout)

    await asyncio.gather(*(first(d) for d in devices))
    before = {(d.user, d.index): d.revision for d in devices}
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.strip():
        raise SystemExit("no go from bench/run.py")
    for d in devices:  # the old sockets died with the old server
        if d.sock is not None:
            d.sock.abort()
        d.changes.clear()
    writes_started = _PERF()
    expected = await _write_missed(args.url, tokens, args.missed)
    writes_s = _PERF() - writes_started
    started = _PERF()
    errors: list[str] = []

    async def back(d: Device) -> None:
        try:
            await _subscribe(host, port, d, tokens[d.user], before[(d.user, d.index)], args.timeout)
        except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if len(errors) < 10:
                errors.append(f"u{d.user} d{d.index}: {exc!r}")

    await asyncio.wait_for(asyncio.gather(*(back(d) for d in devices)), args.timeout * 2)
    all_s = _PERF() - started
    times, wrong = Samples(), 0
    for d in devices:
        want = list(range(before[(d.user, d.index)] + 1, expected[d.user] + 1))
        if not d.synced.is_set() or d.changes != want or d.errors:
            wrong += 1
            if len(errors) < 10:
                errors.append(f"u{d.user} d{d.index}: got {d.changes[:5]}… want {want[:5]}…")
        else:
            times.add(d.caught_up_at - started)
        if d.sock is not None:
            d.sock.abort()
    return {
        "workload": "W6",
        "clients": len(devices),
        "users": args.users,
        "devices": args.devices,
        "missed_per_user": args.missed,
        "writes_s": writes_s,
        "caught_up": len(times),
        "wrong": wrong,
        "all_caught_up_s": all_s if not wrong else None,
        "catch_up": times.summary(),
        "histogram": log_buckets(times.values()),
        "notes": errors,
    }


async def _write_missed(url: str, tokens: list[str], missed: int) -> list[int]:
    """``missed`` PATCHes per user, a few users at a time; each user's revision after them."""
    revisions = [0] * len(tokens)
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, timeout=20.0, trust_env=False) as client:

        async def one(u: int) -> None:
            async with gate:
                for i in range(missed):
                    response = await client.patch(
                        "/v1/settings",
                        content=json.dumps({"preferences": {"storm": {"seq": i}}}),
                        headers={
                            "Authorization": f"Bearer {tokens[u]}",
                            "Content-Type": "application/merge-patch+json",
                            "X-Client-Id": f"storm-writer-{u}",
                        },
                    )
                    response.raise_for_status()
                    revisions[u] = int(response.json()["revision"])

        await asyncio.gather(*(one(u) for u in range(len(tokens))))
    return revisions


def _address(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    return split.hostname or "127.0.0.1", split.port or 80


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    sub = p.add_subparsers(dest="workload", required=True)
    for name in ("idle", "storm"):
        s = sub.add_parser(name)
        s.add_argument("--url", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--prefix", default="bench")
        s.add_argument("--concurrency", type=int, default=100, help="connects at a time")
        s.add_argument("--timeout", type=float, default=30.0, help="seconds per socket step")
    i = sub.choices["idle"]
    i.add_argument("--server-pid", type=int, required=True)
    i.add_argument("--sockets", type=int, default=10_000)
    i.add_argument("--warm", type=int, default=200, help="sockets opened before the baseline")
    i.add_argument("--hold", type=float, default=5.0, help="seconds the sockets stay idle")
    s = sub.choices["storm"]
    s.add_argument("--users", type=int, default=100)
    s.add_argument("--devices", type=int, default=10)
    s.add_argument("--missed", type=int, default=2, help="changes per user while away")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    go = idle if args.workload == "idle" else storm
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(go(args))
    else:
        result = uvloop.run(go(args))
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
