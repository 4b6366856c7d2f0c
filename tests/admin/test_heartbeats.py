"""Node heartbeats over the bus: every node sees the others in ``/v1/admin/stats``.

Real server processes on the PostgreSQL bus and on Redis; a listener of the events' channel
(what a node of 0.1.0 listens to during a rolling upgrade) must hear none of them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from livesettings.bus import MemoryBus
from livesettings.bus.notify import NOTIFY_CHANNEL
from livesettings.server.nodes import FORGET_AFTER, MAX_NODES, Heartbeats, NodeBeat, parse_beat
from tests.conftest import require_service
from tests.multinode.conftest import cluster
from tests.support.admins import admin_user
from tests.support.clock import MovableClock
from tests.support.postgres import Database
from tests.support.server import ServerProcess, wait_for
from tests.support.users import User

# -- the heartbeats of one node, on the memory bus --------------------------------------------


def _beat(node_id: str, at: float, **extra: Any) -> str:
    body = {
        "node_id": node_id,
        "version": "9.9.9",
        "started_at": at - 60,
        "connections": 4,
        "bus_lag_ms": 1.5,
        "at": at,
        **extra,
    }
    return json.dumps(body)


def test_a_heartbeat_is_parsed_strictly() -> None:
    beat = parse_beat(_beat("n1", 100.0))
    assert beat == NodeBeat("n1", "9.9.9", 40.0, 4, 1.5, 100.0)
    assert parse_beat(NodeBeat("n2", "1", 1.0, 0, None, 2.0, True).to_json()).stopping
    for bad in (
        "[]",
        "{}",
        _beat("", 1.0),
        _beat("n" * 201, 1.0),
        _beat("n1", 1.0, connections=-1),
        _beat("n1", 1.0, connections=True),
        _beat("n1", 1.0, bus_lag_ms="fast"),
        _beat("n1", 1.0, stopping="yes"),
        json.dumps({"node_id": "n1", "version": "1", "started_at": 1, "connections": 0}),
        '{"node_id": "n1", "at": NaN}',
        "x" * 5000,
    ):
        with pytest.raises(ValueError):
            parse_beat(bad)


async def test_the_table_marks_missed_beats_stale_and_forgets_old_nodes() -> None:
    clock, bus = MovableClock(), MemoryBus()
    beats = Heartbeats(bus, version="1.2.3", connections=lambda: 7, clock=clock, interval=0.05)
    await bus.start(lambda events: None, lambda: None)
    beats.start()
    try:
        # Its own beat comes back over the bus: the lag is measured.
        await asyncio.sleep(0.1)
        assert beats.bus_lag_ms is not None and beats.bus_lag_ms >= 0
        (own,) = beats.nodes()
        assert own["self"] and not own["stale"]
        assert (own["version"], own["connections"]) == ("1.2.3", 7)

        beats.on_beat(_beat("other", clock.time()))
        beats.on_beat("not json")  # ignored, never raised
        rows = {row["node_id"]: row for row in beats.nodes()}
        assert rows["other"]["stale"] is False and rows["other"]["connections"] == 4
        clock.advance(0.05 * 3 + 0.01)  # three beats missed
        rows = {row["node_id"]: row for row in beats.nodes()}
        assert rows["other"]["stale"] is True
        beats.on_beat(_beat("other", clock.time()))  # back
        assert {r["node_id"]: r["stale"] for r in beats.nodes()}["other"] is False
        beats.on_beat(_beat("other", clock.time(), stopping=True))  # said goodbye
        assert {r["node_id"]: r["stale"] for r in beats.nodes()}["other"] is True
        clock.advance(FORGET_AFTER + 1)
        assert [r["node_id"] for r in beats.nodes()] == [beats.node_id]

        for i in range(MAX_NODES + 50):
            beats.on_beat(_beat(f"n{i:04}", clock.time()))
        rows = beats.nodes()
        assert len(rows) == MAX_NODES + 1  # the oldest heard were dropped
        assert rows[1]["node_id"] == "n0050"
    finally:
        await beats.stop()
        await bus.close()


# -- two real nodes on each networked bus -----------------------------------------------------


def _nodes(node: ServerProcess, admin: User) -> dict[str, dict[str, Any]]:
    with node.client() as http:
        r = http.get("/v1/admin/stats", headers=admin.headers)
    assert r.status_code == 200, r.text
    return {row["node_id"]: row for row in r.json()["nodes"]}


def _see_each_other(first: ServerProcess, second: ServerProcess, admin: User) -> str:
    """Wait until ``first`` shows ``second`` fresh with a measured bus lag; its node id."""

    def other() -> dict[str, Any] | None:
        rows = [row for row in _nodes(first, admin).values() if not row["self"]]
        ok = len(rows) == 1 and not rows[0]["stale"] and rows[0]["bus_lag_ms"] is not None
        return rows[0] if ok else None

    row = wait_for(other, timeout=10)
    assert row["version"] and row["started_at"] <= row["heartbeat_at"]
    assert row["connections"] == 0
    (own,) = [r for r in _nodes(first, admin).values() if r["self"]]
    assert own["node_id"] != row["node_id"] and not own["stale"]
    assert own["bus_lag_ms"] is not None and 0 <= own["bus_lag_ms"] < 1000
    node_id: str = row["node_id"]
    return node_id


def _second_admin(node: ServerProcess, admin: User) -> User:
    """The same admin signed in on another node of the same database."""
    with node.client() as http:
        r = http.post(
            "/v1/auth/token", json={"username": admin.username, "password": admin.password}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    return User(admin.user_id, admin.username, admin.password, body["access_token"], "")


async def _listen_quietly(url: str, seconds: float) -> list[str]:
    """What a node of 0.1.0 would hear on the events' channel meanwhile."""
    heard: list[str] = []
    conn = await asyncpg.connect(url)
    try:
        await conn.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(args[-1]))
        await asyncio.sleep(seconds)
    finally:
        await conn.close()
    return heard


_FAST_BEATS = {"heartbeat_interval": "0.5"}
"""Servers beating four times as often as by default, so a missing node is seen sooner."""


@pytest.mark.postgres
def test_nodes_on_the_postgres_bus_see_each_other(pg_database: Database, tmp_path: Path) -> None:
    settings = pg_database.settings(bus_url="postgres", allow_signup="true", **_FAST_BEATS)
    with cluster(tmp_path, 2, **settings) as (node1, node2):
        admin = admin_user(node1)
        two = _see_each_other(node1, node2, admin)
        one = _see_each_other(node2, node1, _second_admin(node2, admin))
        assert one != two
        # A heartbeat of each node goes by; the events' channel stays silent.
        assert asyncio.run(_listen_quietly(pg_database.app_url, 1.2)) == []
        node2.stop()  # its last heartbeat says it is stopping
        wait_for(lambda: _nodes(node1, admin)[two]["stale"], timeout=3)


@pytest.mark.redis
def test_nodes_on_redis_see_each_other_and_a_dead_one_goes_stale(
    redis_available: bool, tmp_path: Path
) -> None:
    require_service("Redis (127.0.0.1:6379)", redis_available)
    channel = f"ls-test-{uuid.uuid4().hex[:12]}"
    bus_url = f"redis://127.0.0.1:6379/0?channel={channel}"
    with cluster(tmp_path, 2, bus_url=bus_url, allow_signup="true", **_FAST_BEATS) as (
        node1,
        node2,
    ):
        admin = admin_user(node1)  # each node has a SQLite store of its own
        listener = redis.Redis(host="127.0.0.1", port=6379)
        pubsub = listener.pubsub()
        pubsub.subscribe(channel)
        try:
            two = _see_each_other(node1, node2, admin)
            heard = []
            for _ in range(12):  # 1.2 s: a heartbeat of each node at least
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "message":
                    heard.append(message["data"])
            assert heard == []
        finally:
            pubsub.close()
            listener.close()
        node2.kill()  # no goodbye: three missed beats make it stale
        row = wait_for(lambda: (r := _nodes(node1, admin)[two])["stale"] and r, timeout=10)
        assert row["self"] is False
        with node1.client() as http:
            assert "Traceback" not in node1.log_text()
            assert http.get("/readyz").status_code == 200


def test_a_node_alone_lists_itself(tmp_path: Path) -> None:
    node = ServerProcess(tmp_path / "data", allow_signup="true")
    node.start()
    try:
        admin = admin_user(node)
        rows = wait_for(
            lambda: (r := list(_nodes(node, admin).values()))[0]["bus_lag_ms"] is not None and r,
            timeout=5,
        )
        assert len(rows) == 1 and rows[0]["self"] and not rows[0]["stale"]
        with httpx.Client(base_url=node.url) as http:
            assert http.get("/v1/admin/stats").status_code == 401
    finally:
        node.stop()
