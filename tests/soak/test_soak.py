"""The soak: mixed load for a long time against a real server, with reconnects and a restart.

``make soak`` runs it (``pytest -m slow``); CI does not. It lasts ``LIVESETTINGS_SOAK_SECONDS``
(default 1800: 30 minutes) of load:

- ``USERS`` users, each with ``DEVICES`` WebSocket devices subscribed to its settings, an
  HTTP writer (``PATCH``, retried with the same ``Idempotency-Key`` until answered, so every
  write it makes is acknowledged) and a WebSocket writer (``update`` frames on device 0);
- every few seconds a random device drops its socket and resumes with ``since``;
- half-way through, the server is stopped (SIGTERM) and started again on the same port and
  data: every device resumes, every writer carries on.

At the end, with the writers stopped: nothing acknowledged was lost (each writer's key holds
its last acknowledged value, or a later one it sent but whose ack the restart swallowed; every
acknowledged mutation reached every device that was subscribed across its revision), every
device converged (its state built from the snapshot and the change frames equals ``GET
/v1/settings``, with no gap in revisions), and the server's memory was flat after the warm-up
that followed the restart. The server's RSS over time is printed whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from livesettings.auth import TokenIssuer
from tests.support.server import TEST_JWT_SECRET, ServerProcess

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("LIVESETTINGS_SOAK_SECONDS", "1800"))
USERS, DEVICES = 10, 3
WRITE_PAUSE = 0.25  # seconds between one writer's writes: about 8 writes/s per user
DROP_EVERY = 2.0  # seconds between two dropped device sockets
WARMUP_SHARE = 0.3  # of the time after the restart: memory is judged after this
RSS_SLACK = 1.2, 16 * 1024 * 1024  # the end may exceed the warm level by this factor + bytes


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Device:
    user: int
    index: int
    token: str
    revision: int | None = None
    base: int = 0  # mutations above this revision must all arrive (raised by a snapshot)
    state: dict[str, Any] = field(default_factory=dict)
    mids: set[str] = field(default_factory=set)
    gaps: list[str] = field(default_factory=list)
    ws: ClientConnection | None = None
    acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    reconnects: int = 0
    gap_at: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the last events, to explain a failure

    def note(self, event: str) -> None:
        self.log.append(event)
        del self.log[:-40]

    async def run(self, url: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with connect(url, proxy=None, open_timeout=10) as ws:
                    self.ws = ws
                    client = f"soak-u{self.user}-d{self.index}"
                    await ws.send(
                        json.dumps({"type": "auth", "token": self.token, "client_id": client})
                    )
                    await ws.send(json.dumps({"type": "subscribe", "since": self.revision}))
                    self.note(f"subscribe since={self.revision}")
                    async for raw in ws:
                        self.on_frame(json.loads(raw))
            except (OSError, WebSocketException, TimeoutError):
                pass
            finally:
                self.ws = None
                for waiter in self.acks.values():
                    if not waiter.done():
                        waiter.cancel()
            self.reconnects += 1
            await asyncio.sleep(0.2)

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("snapshot", "change", "synced"):
            self.note(f"{kind} {frame['revision']}")
        if kind == "snapshot":
            self.state = frame["settings"]
            self.revision = self.base = int(frame["revision"])
        elif kind == "change":
            rev = int(frame["revision"])
            if self.revision is not None and rev != self.revision + 1:
                self.gaps.append(
                    f"u{self.user} d{self.index}: {rev} after {self.revision}; last events "
                    f"{self.log[-8:]}"
                )
                self.gap_at.append(self.revision)
            self.state = merge(self.state, frame["patch"])
            self.revision = rev
            self.mids.add(frame["mutation_id"])
        elif kind in ("ack", "error") and frame.get("mutation_id") in self.acks:
            waiter = self.acks.pop(frame["mutation_id"])
            if not waiter.done():
                waiter.set_result(frame)


@dataclass
class Writes:
    """What the writers did: per (user, key), every value sent and the acknowledged ones."""

    sent: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    acked: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    acked_mids: dict[int, list[tuple[str, int]]] = field(default_factory=dict)

    def note_sent(self, user: int, key: str, seq: int) -> None:
        self.sent.setdefault((user, key), []).append(seq)

    def note_ack(self, user: int, key: str, seq: int, mid: str, revision: int) -> None:
        self.acked.setdefault((user, key), []).append(seq)
        self.acked_mids.setdefault(user, []).append((mid, revision))


async def http_writer(
    http: httpx.AsyncClient, user: int, token: str, writes: Writes, stop: asyncio.Event
) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        mid = f"soak-h-{user}-{seq}-{uuid.uuid4().hex[:6]}"
        writes.note_sent(user, "h", seq)
        while True:  # the same key until answered: exactly once, across the restart too
            try:
                response = await http.patch(
                    "/v1/settings",
                    content=json.dumps({"preferences": {"soak": {"h": seq}}}),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/merge-patch+json",
                        "Idempotency-Key": mid,
                        "X-Client-Id": f"soak-http-{user}",
                    },
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            if response.status_code == 200:
                writes.note_ack(user, "h", seq, mid, int(response.json()["revision"]))
                break
            assert response.status_code in (502, 503), response.text
            await asyncio.sleep(0.2)
        await asyncio.sleep(WRITE_PAUSE)


async def ws_writer(device: Device, writes: Writes, stop: asyncio.Event) -> None:
    seq = 0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        ws = device.ws
        if ws is None or device.revision is None:
            await asyncio.sleep(0.1)
            continue
        seq += 1
        mid = f"soak-w-{device.user}-{seq}-{uuid.uuid4().hex[:6]}"
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        device.acks[mid] = waiter
        writes.note_sent(device.user, "w", seq)
        frame = {
            "type": "update",
            "mutation_id": mid,
            "base_revision": None,
            "patch": {"preferences": {"soak": {"w": seq}}},
            "edited_at": int(time.time() * 1000),
        }
        with contextlib.suppress(OSError, WebSocketException, TimeoutError, asyncio.CancelledError):
            await ws.send(json.dumps(frame))
            answer = await asyncio.wait_for(waiter, 10)
            assert answer["type"] == "ack", answer
            writes.note_ack(device.user, "w", seq, mid, int(answer["revision"]))
        await asyncio.sleep(WRITE_PAUSE)


async def dropper(devices: list[Device], stop: asyncio.Event, rng: random.Random) -> None:
    """Drop one random device's socket every few seconds: it resumes with ``since``."""
    while not stop.is_set():
        await asyncio.sleep(DROP_EVERY)
        ws = rng.choice(devices).ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


async def sampler(
    server: ServerProcess, samples: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    """(seconds since the start, server RSS, server generation) every few seconds."""
    started, generation, pid = time.monotonic(), 0, 0
    interval = max(1.0, SECONDS / 90)
    while not stop.is_set():
        proc = server.proc
        if proc is not None and proc.poll() is None:
            if proc.pid != pid:
                generation, pid = generation + (pid != 0), proc.pid
            with contextlib.suppress(OSError):
                samples.append((time.monotonic() - started, rss(pid), generation))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def settle(done: Callable[[], bool], limit: float) -> None:
    """Wait until ``done()`` or ``limit`` seconds (the assertions after it say which)."""
    for _ in range(int(limit / 0.1)):
        if done():
            return
        await asyncio.sleep(0.1)


def report(samples: list[tuple[float, int, int]]) -> str:
    lines = ["", "server RSS over time (s, MiB, server generation):"]
    lines += [f"  {t:8.1f}  {r / 1048576:8.1f}  {g}" for t, r, g in samples]
    return "\n".join(lines)


@pytest.mark.timeout(SECONDS + 600)
async def test_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ServerProcess(
        tmp_path / "data",
        connect_rate=1000,
        connect_burst=1000,
        write_rate=1000,
        write_burst=1000,
        changelog_retain=100_000,
    )
    server.start()
    issuer = TokenIssuer(TEST_JWT_SECRET.encode(), ttl_seconds=int(SECONDS) + 3600)
    tokens = [issuer.issue(f"soak-{uuid.uuid4().hex[:8]}-{u}")[0] for u in range(USERS)]
    devices = [Device(u, d, tokens[u]) for u in range(USERS) for d in range(DEVICES)]
    writes, samples = Writes(), []
    stop_writes, stop_devices, stop_sampling = asyncio.Event(), asyncio.Event(), asyncio.Event()
    rng = random.Random(13)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0, trust_env=False) as http:
            tasks = [asyncio.create_task(d.run(server.ws_url, stop_devices)) for d in devices]
            sampling = asyncio.create_task(sampler(server, samples, stop_sampling))
            await settle(lambda: all(d.revision is not None for d in devices), 30)
            load = [
                asyncio.create_task(http_writer(http, u, tokens[u], writes, stop_writes))
                for u in range(USERS)
            ]
            load += [
                asyncio.create_task(ws_writer(d, writes, stop_writes))
                for d in devices
                if d.index == 0
            ]
            load.append(asyncio.create_task(dropper(devices, stop_writes, rng)))
            await asyncio.sleep(SECONDS / 2)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.restart)
            await asyncio.sleep(SECONDS / 2)
            stop_writes.set()
            await asyncio.wait_for(asyncio.gather(*load), 60)
            stop_sampling.set()
            await sampling
            finals = {}
            for u in range(USERS):
                response = await http.get(
                    "/v1/settings", headers={"Authorization": f"Bearer {tokens[u]}"}
                )
                assert response.status_code == 200, response.text
                finals[u] = response.json()
            await settle(lambda: all(d.revision == finals[d.user]["revision"] for d in devices), 60)
            for d in devices:  # what the change log holds where a device saw a gap
                for at in d.gap_at[:1]:
                    response = await http.get(
                        f"/v1/settings/changes?since={max(0, at - 2)}&limit=6",
                        headers={"Authorization": f"Bearer {d.token}"},
                    )
                    revisions = [c["revision"] for c in response.json().get("changes", [])]
                    d.gaps.append(f"the change log after {max(0, at - 2)}: {revisions}")
            stop_devices.set()
            for d in devices:
                if d.ws is not None:
                    await d.ws.close()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        stop_sampling.set()
        server.stop()
        with capsys.disabled():
            print(report(samples))
            acked = sum(len(v) for v in writes.acked.values())
            print(
                f"acknowledged writes: {acked}; device reconnects: "
                f"{sum(d.reconnects for d in devices)}"
            )

    # Every device converged on the server's state, without a gap.
    gaps = [g for d in devices for g in d.gaps]
    assert gaps == [], gaps[:4]
    for d in devices:
        final = finals[d.user]
        assert d.revision == final["revision"], (d.user, d.index)
        assert d.state == final["settings"], (d.user, d.index)
    # Nothing acknowledged was lost.
    assert sum(len(v) for v in writes.acked.values()) > 0
    for (u, key), acked in writes.acked.items():
        value = finals[u]["settings"]["preferences"]["soak"][key]
        assert value >= acked[-1] and value in writes.sent[(u, key)], (u, key, value, acked[-1])
    for d in devices:
        missing = [
            m for m, rev in writes.acked_mids.get(d.user, []) if rev > d.base and m not in d.mids
        ]
        assert missing == [], (d.user, d.index, missing[:5])
    # Memory flat after the warm-up that followed the restart.
    after = [(t, r) for t, r, g in samples if g == 1]
    assert len(after) >= 4, samples
    start = after[0][0]
    span = after[-1][0] - start
    warm = [r for t, r in after if t - start <= WARMUP_SHARE * span]
    late = [r for t, r in after if t - start >= (1 - WARMUP_SHARE) * span]
    factor, slack = RSS_SLACK
    assert max(late) <= max(warm) * factor + slack, report(samples)
