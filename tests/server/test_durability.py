"""Durability, group commit and graceful shutdown — against real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Backend
from tests.support.server import ServerProcess
from tests.support.users import signup
from tests.support.ws import WsClient


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_no_ack_before_the_commit_is_durable(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data", commit_delay_ms=1500)
    server.start()
    try:
        with server.client() as http, WsClient(server.ws_url) as ws:
            user = signup(http)
            ws.auth(user.token)
            sent = time.monotonic()
            mid = ws.update({"theme": "dark"})
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.0)  # the commit is still open: no ack yet
            assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 0
            ack = ws.recv(timeout=5)
            assert ack["type"] == "ack" and ack["mutation_id"] == mid and ack["revision"] == 1
            assert time.monotonic() - sent >= 1.5
            assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 1
    finally:
        server.stop()


def test_kill_9_loses_no_acknowledged_write(backend: Backend, tmp_path: Path) -> None:
    # PostgreSQL: the killed node's backends end with it; the restarted one finds every ack.
    server = backend.server(tmp_path / "data")
    server.start()
    acked: list[int] = []
    with server.client() as http:
        user = signup(http)
    ws = WsClient(server.ws_url)
    ws.auth(user.token)
    ids: dict[str, int] = {}
    try:
        for i in range(400):
            ids[ws.update({"preferences": {f"k{i}": i}})] = i
            if i % 8 == 7:  # keep a window of writes in flight
                while len(acked) < i - 8:
                    frame = ws.recv()
                    if frame["type"] == "ack":
                        acked.append(ids[frame["mutation_id"]])
            if i == 200:
                server.kill()  # SIGKILL in the middle of the stream
                break
        try:
            while True:
                frame = ws.recv(timeout=2)
                if frame["type"] == "ack":
                    acked.append(ids[frame["mutation_id"]])
        except (ConnectionClosed, TimeoutError):
            pass
    finally:
        ws.close()
    assert len(acked) > 50
    server.restart()
    try:
        with server.client() as http:
            doc = http.get("/v1/settings", headers=user.headers).json()
            prefs = doc["settings"]["preferences"]
            missing = [i for i in acked if prefs.get(f"k{i}") != i]
            assert missing == []
            assert doc["revision"] >= len(acked)
    finally:
        server.stop()


def test_verify_reports_durable_commits(server: ServerProcess, backend_name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "livesettings", "verify"],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    if backend_name == "sqlite":
        out = result.stdout.lower()
        assert "wal" in out and "full" in out
    else:
        # An ack waits for the WAL flush, and the role serve uses cannot see past RLS.
        assert "ok   synchronous commit: on" in lines
        assert any(line.startswith("ok   row-level security: enabled and forced") for line in lines)
    assert lines[-1].startswith("verify: ") and lines[-1].endswith("checks passed")


def test_concurrent_writes_share_transactions(server: ServerProcess) -> None:
    with server.client() as http:
        users = [signup(http) for _ in range(10)]
        before = http.get("/metrics").text
    commits_before = _metric(before, "livesettings_commits_total")
    changes_before = _metric(before, "livesettings_changes_total")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            requests = [
                client.patch(
                    "/v1/settings",
                    json={"preferences": {f"n{i}": i}},
                    headers=users[i % 10].headers,
                )
                for i in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*requests)]

    statuses = asyncio.run(burst())
    assert statuses == [200] * 200
    with server.client() as http:
        after = http.get("/metrics").text
    commits = _metric(after, "livesettings_commits_total") - commits_before
    assert _metric(after, "livesettings_changes_total") - changes_before == 200
    assert 0 < commits < 200, commits


def test_sigterm_closes_sockets_with_1001_and_exits(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data")
    server.start()
    with server.client() as http:
        user = signup(http)
    ws = WsClient(server.ws_url)
    ws.auth(user.token)
    ws.subscribe(None)
    assert server.proc is not None
    proc = server.proc
    proc.terminate()
    with pytest.raises(ConnectionClosed):
        while True:
            ws.conn.recv(timeout=10)
    assert ws.conn.close_code == 1001
    ws.close()
    # uvicorn re-raises the signal once shutdown is complete, so the status is -SIGTERM.
    assert proc.wait(timeout=15) in (0, -15)
    assert "Application shutdown complete" in server.log_text()
    server.stop()
