"""A WebSocket fuzz run on loopback: random and malformed frames, huge frames and floods.

While an attacker throws a bounded number of bad frames at the server, another user keeps
writing and watching on sockets of their own. The server must never crash nor log a traceback,
and that user must see every one of their writes acknowledged and pushed, in order, with
no error — as if nothing were happening.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.server import ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

SEED = 20261128
DEADLINE = 8.0  # seconds of fuzzing at most
MAX_ROUNDS = 8
VICTIM_WRITES = 30


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", connect_burst=100_000, connect_rate=10_000)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Victim(threading.Thread):
    """Writes on one socket and watches on another, recording everything it receives."""

    def __init__(self, node: ServerProcess, user: User) -> None:
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.acks: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self.slowest = 0.0

    def run(self) -> None:
        try:
            with WsClient(self.node.ws_url) as writer, WsClient(self.node.ws_url) as watcher:
                writer.auth(self.user.token, "victim-writer")
                watcher.auth(self.user.token, "victim-watcher")
                watcher.subscribe(None)
                for n in range(VICTIM_WRITES):
                    sent = time.monotonic()
                    writer.update({"preferences": {"n": n}}, mutation_id=f"v-{n}")
                    ack = writer.recv(timeout=10)
                    change = watcher.recv(timeout=10)
                    self.slowest = max(self.slowest, time.monotonic() - sent)
                    self.acks.append(ack)
                    self.changes.append(change)
                    time.sleep(0.1)
        except Exception as exc:  # recorded, asserted by the test
            self.errors.append(repr(exc))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.choice(["auth", "subscribe", "update", "ping", "unsubscribe", "", "\u0000"])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["type", "token", "since", "patch", "mutation_id", "user_id", "x", ""]): (
            _random_json(rng, depth + 1)
        )
        for _ in range(rng.randrange(5))
    }


def _frames(rng: random.Random, token: str, victim: str) -> Iterator[str | bytes]:
    """A bounded stream of hostile frames (for an authenticated socket)."""
    types = ["auth", "subscribe", "unsubscribe", "update", "ping", "pong", "change", None]
    for _ in range(400):
        choice = rng.randrange(10)
        if choice == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif choice == 1:
            yield "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(rng.randrange(64)))
        elif choice == 2:
            yield json.dumps(_random_json(rng))
        elif choice == 3:
            extra = _random_json(rng)
            yield json.dumps({"type": rng.choice(types), "x": extra})
        elif choice == 4:
            yield json.dumps(
                {
                    "type": "update",
                    "mutation_id": rng.choice(["", "m", "x" * 500, None, 5]),
                    "base_revision": rng.choice([None, -1, 2**70, "7", 3.5]),
                    "patch": _random_json(rng),
                    "edited_at": rng.choice([None, -5, 2**80, "now"]),
                    "user_id": rng.choice([None, victim, "", "x" * 300]),
                }
            )
        elif choice == 5:
            yield json.dumps(
                {"type": "subscribe", "since": rng.choice([None, -1, 0, 2**64, "0", []])}
            )
        elif choice == 6:
            yield '{"type": "update", "patch": ' + "[" * 5000 + "]" * 5000 + "}"
        elif choice == 7:
            yield '{"type": "auth", "token": "' + token + '", "client_id": "' + "c" * 200 + '"}'
        elif choice == 8:
            yield "{" * rng.randrange(1, 50) + '"type": "ping"'
        else:
            yield json.dumps({"type": "update", "mutation_id": str(rng.random()), "patch": {}})


def _huge(rng: random.Random) -> list[str | bytes]:
    size = 1024 * 1024 + 4096
    return [
        '{"type": "ping", "pad": "' + "x" * size + '"}',
        bytes(size + 10),
        "[" * (size // 2) + "]" * (size // 2),
    ]


class Attacker:
    """Rounds of hostile traffic from one user, each bounded in frames and by a deadline."""

    def __init__(self, node: ServerProcess, token: str, victim_id: str, deadline: float) -> None:
        self.node, self.token, self.victim_id = node, token, victim_id
        self.deadline = deadline
        self.sent = self.closed = 0

    def fresh(self, authenticate: bool = True) -> WsClient:
        ws = WsClient(self.node.ws_url)
        if authenticate:
            ws.send({"type": "auth", "token": self.token})
        return ws

    def attempt(self, action: Callable[[], object]) -> None:
        try:
            action()
        except (ConnectionClosed, TimeoutError, OSError, InvalidStatus):
            self.closed += 1

    def late(self) -> bool:
        return time.monotonic() > self.deadline

    def round(self, rng: random.Random) -> None:
        # 1. Random and malformed frames on an authenticated socket (reopened when closed).
        ws = self.fresh()
        for frame in _frames(rng, self.token, self.victim_id):
            if self.late():
                break
            try:
                ws.conn.send(frame)  # text or binary, as is
                self.sent += 1
            except ConnectionClosed:
                self.closed += 1
                ws = self.fresh()
        # 2. The same before authentication: each socket is refused and closed (4001).
        for frame in list(_frames(random.Random(rng.random()), "bad", self.victim_id))[:40]:
            if self.late():
                break
            pre = self.fresh(authenticate=False)

            def refused(pre: WsClient = pre, frame: str | bytes = frame) -> None:
                pre.conn.send(frame)
                pre.recv(timeout=2)

            self.attempt(refused)
            pre.conn.close_socket()
        # 3. Huge frames: each closes its socket with 1009.
        for frame in _huge(rng):
            big = self.fresh()
            self.attempt(functools.partial(big.conn.send, frame))
            with pytest.raises(ConnectionClosed):
                while True:
                    big.recv(timeout=5)
            # The server answers with close 1009; a client still writing the rest of its
            # frame may see the TCP connection reset before that close frame arrives (1006).
            received = big.conn.protocol.close_rcvd
            assert received is None or received.code == 1009, received
            assert big.conn.close_code in (1009, 1006)
        # 4. Floods: pings, subscriptions, re-auths and updates as fast as the socket takes.
        flood = self.fresh()
        for n in range(1000):
            if self.late():
                break
            flood_frames: list[dict[str, Any]] = [
                {"type": "ping"},
                {"type": "subscribe", "since": None},
                {"type": "auth", "token": self.token},
                {"type": "update", "mutation_id": uuid.uuid4().hex, "patch": {"theme": "dark"}},
            ]
            message = flood_frames[n % 4]
            try:
                flood.send(message)
            except ConnectionClosed:
                flood = self.fresh()
        # 5. Connection churn: sockets opened and dropped, some idle without auth.
        idle = [WsClient(self.node.ws_url) for _ in range(10)]
        for _ in range(30):
            if self.late():
                break
            self.attempt(lambda: WsClient(self.node.ws_url).conn.close_socket())
        for socket in (*idle, ws, flood):
            # Dropped, not closed: an attacker that never reads its replies would otherwise
            # wait out the close handshake behind them.
            socket.conn.close_socket()


def test_websocket_fuzz_never_crashes_the_server_nor_disturbs_another_user(
    node: ServerProcess,
) -> None:
    rng = random.Random(SEED)
    with node.client() as http:
        victim_user, attacker_user = signup(http), signup(http)
    victim = Victim(node, victim_user)
    attacker = Attacker(node, attacker_user.token, victim_user.user_id, time.monotonic() + DEADLINE)
    victim.start()
    rounds = 0
    while victim.is_alive() and not attacker.late() and rounds < MAX_ROUNDS:
        attacker.round(rng)
        rounds += 1
        time.sleep(0.2)
    victim.join(30)
    assert not victim.is_alive()
    assert victim.errors == []
    assert [a["type"] for a in victim.acks] == ["ack"] * VICTIM_WRITES
    assert [a["mutation_id"] for a in victim.acks] == [f"v-{n}" for n in range(VICTIM_WRITES)]
    assert [c["type"] for c in victim.changes] == ["change"] * VICTIM_WRITES
    revisions = [c["revision"] for c in victim.changes]
    assert revisions == list(range(1, VICTIM_WRITES + 1))
    assert victim.slowest < 3.0, victim.slowest

    assert node.proc is not None and node.proc.poll() is None
    assert httpx.get(node.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(node.url + "/readyz", timeout=5).status_code == 200
    log = node.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert rounds >= 3 and attacker.sent >= 3 * 400, (rounds, attacker.sent)
