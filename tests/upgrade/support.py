"""What the upgrade tests share: the new release's CLI, a steady writer, a socket recorder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from livesettings.auth import TokenIssuer
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.ws import WsClient

__all__ = ["Ack", "SocketRecorder", "SteadyWriter", "new_cli", "token_for"]


def token_for(user_id: str) -> str:
    """An access token both releases accept (same HS256 secret)."""
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue(user_id)
    return token


def new_cli(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``livesettings ARGS`` of the release under test."""
    return subprocess.run(
        [sys.executable, "-m", "livesettings", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: the revision the server answered, and through which node."""

    revision: int
    mutation_id: str
    value: int
    node: str


@dataclass
class SteadyWriter:
    """PATCHes one user's document in a loop, round-robin over ``nodes`` (which may grow),
    recording every acknowledged write; a failed attempt is retried with the same
    Idempotency-Key, and recorded in ``failures``."""

    token: str
    nodes: list[tuple[str, ServerProcess]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more writes are acknowledged."""
        target = len(self.acks) + count
        deadline = time.monotonic() + timeout
        while len(self.acks) < target:
            assert time.monotonic() < deadline, f"writes stalled: {self.failures[-3:]}"
            time.sleep(0.02)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=30.0) as http:
            i = 0
            while not self._stop.is_set():
                name, node = list(self.nodes)[i % len(self.nodes)]
                mutation_id = f"w-{i}"
                patch = {"preferences": {"n": i, "via": name}}
                for _ in range(5):
                    try:
                        answer = http.patch(
                            f"{node.url}/v1/settings",
                            json=patch,
                            headers={**headers, "Idempotency-Key": mutation_id},
                        )
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{name} {mutation_id}: {exc!r}")
                        continue
                    if answer.status_code == 200:
                        self.acks.append(Ack(answer.json()["revision"], mutation_id, i, name))
                        break
                    self.failures.append(
                        f"{name} {mutation_id}: {answer.status_code} {answer.text}"
                    )
                i += 1
                time.sleep(0.003)


class SocketRecorder:
    """A WebSocket subscriber of one user that keeps reading every frame in a thread (a
    socket left unread would be dropped as a slow consumer)."""

    def __init__(self, node: ServerProcess, token: str) -> None:
        self.ws = WsClient(node.ws_url)
        assert self.ws.auth(token)["type"] == "auth_ok"
        frames = self.ws.subscribe(None)
        assert [f["type"] for f in frames] == ["snapshot", "synced"], frames
        self.start_revision: int = frames[0]["revision"]
        self.frames: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.frames.append(self.ws.recv(timeout=0.2))
            except TimeoutError:
                continue
            except Exception as exc:  # the socket closed: record it as a frame to fail on
                self.frames.append({"type": "closed", "error": repr(exc)})
                return

    def wait_for_revision(self, revision: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(f.get("revision") == revision for f in list(self.frames)):
            assert time.monotonic() < deadline, (
                f"revision {revision} not pushed: {self.frames[-3:]}"
            )
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.ws.close()
