"""Three real server processes on one PostgreSQL database, kept in sync by the bus (DESIGN §7)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.multinode.conftest import Database, cluster, sql, token_for
from tests.support.server import ServerProcess, wait_for
from tests.support.ws import WsClient

pytestmark = pytest.mark.postgres


def _patch(node: ServerProcess, token: str, patch: dict[str, Any], mutation_id: str) -> int:
    with node.client() as http:
        response = http.patch(
            "/v1/settings",
            json=patch,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": mutation_id},
        )
    assert response.status_code == 200, response.text
    revision: int = response.json()["revision"]
    return revision


def _changes(ws: WsClient, count: int) -> list[dict[str, Any]]:
    frames = [ws.recv(timeout=5.0) for _ in range(count)]
    assert [f["type"] for f in frames] == ["change"] * count, frames
    return frames


def _metric(node: ServerProcess, name: str) -> float:
    with node.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _listener_pid(db: Database, node: ServerProcess) -> int:
    assert node.proc is not None
    rows = sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2",
        db.name,
        f"livesettings-bus/{node.proc.pid}@%",
    )
    assert len(rows) == 1, rows
    pid: int = rows[0]["pid"]
    return pid


@pytest.mark.parametrize("bus", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def test_changes_written_on_two_nodes_reach_a_third_in_order_once(
    bus: str, database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bus_url = "postgres" if bus == "postgres" else request.getfixturevalue("redis_bus_url")
    user = "u-" + uuid.uuid4().hex[:10]
    token = token_for(user)
    with cluster(tmp_path, 3, **database.settings(bus_url=bus_url)) as (node1, node2, node3):
        with WsClient(node1.ws_url) as ws:
            assert ws.auth(token)["type"] == "auth_ok"
            assert [(f["type"], f["revision"]) for f in ws.subscribe(None)] == [
                ("snapshot", 0),
                ("synced", 0),
            ]
            # One at a time, alternating nodes: revisions follow the order of writing.
            sent: list[tuple[str, dict[str, Any]]] = []
            for i in range(10):
                mid, patch = f"seq-{i}", {"preferences": {"n": i, f"from{2 + i % 2}": i}}
                assert _patch((node2, node3)[i % 2], token, patch, mid) == i + 1
                sent.append((mid, patch))
            frames = _changes(ws, 10)
            assert [f["revision"] for f in frames] == list(range(1, 11))
            assert [(f["mutation_id"], f["patch"]) for f in frames] == sent

            # Both nodes at once: the revision order is the commit order; each arrives once.
            def writer(node: ServerProcess, tag: str) -> None:
                for i in range(10):
                    _patch(node, token, {"preferences": {tag: i}}, f"{tag}-{i}")

            threads = [
                threading.Thread(target=writer, args=(node, tag))
                for node, tag in ((node2, "two"), (node3, "three"))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            frames = _changes(ws, 20)
            assert [f["revision"] for f in frames] == list(range(11, 31))
            mids = [f["mutation_id"] for f in frames]
            for tag in ("two", "three"):  # each node's writes, once each, in their order
                assert [m for m in mids if m.startswith(tag + "-")] == [
                    f"{tag}-{i}" for i in range(10)
                ]
            assert ws.no_frame(0.3)

        # Every connection the nodes opened is the app role's, never the owner's.
        rows = sql(
            "SELECT usename, application_name FROM pg_stat_activity WHERE datname = $1",
            database.name,
        )
        assert rows and {r["usename"] for r in rows} == {database.app_role}
        names = sorted(r["application_name"] for r in rows)
        listeners = [n.partition("@")[0] for n in names if n.startswith("livesettings-bus/")]
        expected = sorted(
            f"livesettings-bus/{n.proc.pid}" for n in (node1, node2, node3) if n.proc is not None
        )
        assert listeners == (expected if bus == "postgres" else [])


def test_fifty_subscribers_of_a_user_cost_one_change_log_read(
    database: Database, tmp_path: Path
) -> None:
    user = "u-" + uuid.uuid4().hex[:10]
    token = token_for(user)
    with cluster(tmp_path, 2, **database.settings(bus_url="postgres")) as (node1, node2):
        sockets = [WsClient(node1.ws_url) for _ in range(50)]
        try:
            for ws in sockets:
                ws.auth(token)
                assert ws.subscribe(None)[-1] == {"type": "synced", "revision": 0}
            reads = "livesettings_changelog_reads_total"
            before = _metric(node1, reads)
            assert before == 50  # one per subscribe (its snapshot)
            assert _patch(node2, token, {"theme": "dark"}, "the-write") == 1
            for ws in sockets:
                frame = ws.recv()
                assert (frame["type"], frame["revision"], frame["patch"]) == (
                    "change",
                    1,
                    {"theme": "dark"},
                )
            time.sleep(0.2)  # a read would come right after the notification
            # The change rode in the notification: node1 pushed it without reading the log.
            assert _metric(node1, reads) - before == 0
            assert all(ws.no_frame(0.01) for ws in sockets)
        finally:
            for ws in sockets:
                ws.close()


def test_a_node_whose_listener_is_killed_recovers_and_its_clients_miss_nothing(
    database: Database, tmp_path: Path
) -> None:
    user = "u-" + uuid.uuid4().hex[:10]
    token = token_for(user)
    with cluster(tmp_path, 2, **database.settings(bus_url="postgres")) as (node1, node2):
        assert node1.proc is not None
        with WsClient(node1.ws_url) as ws:
            ws.auth(token)
            ws.subscribe(None)
            assert _patch(node2, token, {"preferences": {"n": 0}}, "m-0") == 1
            assert _changes(ws, 1)[0]["revision"] == 1

            old_pid = _listener_pid(database, node1)
            # Freeze node 1 so the notifications of the next writes are certainly lost to it:
            # its listening backend is gone before they are sent.
            os.kill(node1.proc.pid, signal.SIGSTOP)
            try:
                assert sql("SELECT pg_terminate_backend($1) AS ok", old_pid) == [{"ok": True}]
                wait_for(
                    lambda: not sql("SELECT 1 FROM pg_stat_activity WHERE pid = $1", old_pid),
                    timeout=5.0,
                )
                for i in range(1, 4):
                    assert _patch(node2, token, {"preferences": {"n": i}}, f"m-{i}") == i + 1
            finally:
                os.kill(node1.proc.pid, signal.SIGCONT)

            # Node 1 notices, listens again, and catches its subscriber up from the change log.
            frames = _changes(ws, 3)
            assert [(f["revision"], f["mutation_id"]) for f in frames] == [
                (2, "m-1"),
                (3, "m-2"),
                (4, "m-3"),
            ]
            assert wait_for(lambda: _listener_pid(database, node1) != old_pid)
            # And it hears live changes again.
            assert _patch(node2, token, {"preferences": {"n": 4}}, "m-4") == 5
            assert [(f["revision"], f["mutation_id"]) for f in _changes(ws, 1)] == [(5, "m-4")]
            assert ws.no_frame(0.3)
            with httpx.Client(base_url=node1.url) as http:
                assert http.get("/readyz").status_code == 200
        assert "listening again" in node1.log_text()
