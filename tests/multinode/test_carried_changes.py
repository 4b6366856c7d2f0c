"""Changes carried in the bus message between real server processes (PostgreSQL, Redis).

A node pushes a change committed on another node without reading the change log when the
change fits the NOTIFY (or the Redis message), reads it once for all its subscribers when it
does not, and no plaintext secret is ever in a notification.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from livesettings.bus.notify import NOTIFY_CHANNEL
from tests.multinode.conftest import REDIS_URL, Database, cluster, token_for
from tests.support.postgres import SUPERUSER, url
from tests.support.server import ServerProcess
from tests.support.users import signup
from tests.support.ws import WsClient
from tests.teams.helpers import add_member, create_team

pytestmark = pytest.mark.postgres

FANOUT_READS = "livesettings_fanout_reads_total"
CARRIED = "livesettings_bus_changes_carried_total"
SECRET = "sk-live-0123456789abcdefNOTINBUS"
BUSES = ["postgres", pytest.param("redis", marks=pytest.mark.redis)]


def _metric(node: ServerProcess, name: str) -> float:
    with node.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _patch(node: ServerProcess, token: str, patch: dict[str, Any]) -> int:
    with node.client() as http:
        response = http.patch(
            "/v1/settings", json=patch, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    revision: int = response.json()["revision"]
    return revision


def _bus_url(bus: str, request: pytest.FixtureRequest) -> str:
    return "postgres" if bus == "postgres" else str(request.getfixturevalue("redis_bus_url"))


@pytest.mark.parametrize("bus", BUSES)
def test_a_change_that_fits_is_pushed_with_no_read_one_too_big_is_read_once(
    bus: str, database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    token = token_for("u-" + uuid.uuid4().hex[:10])
    settings = database.settings(bus_url=_bus_url(bus, request))
    with cluster(tmp_path, 2, **settings) as (node1, node2):
        sockets = [WsClient(node1.ws_url) for _ in range(20)]
        try:
            for ws in sockets:
                ws.auth(token)
                assert ws.subscribe(None)[-1] == {"type": "synced", "revision": 0}
            reads, carried = _metric(node1, FANOUT_READS), _metric(node1, CARRIED)

            def pushed(revision: int, patch: dict[str, Any]) -> None:
                for ws in sockets:
                    frame = ws.recv()
                    assert (frame["type"], frame["revision"], frame["patch"]) == (
                        "change",
                        revision,
                        patch,
                    )
                time.sleep(0.2)  # a read would come right after the frames
                assert all(ws.no_frame(0.01) for ws in sockets)

            assert _patch(node2, token, {"theme": "dark"}) == 1
            pushed(1, {"theme": "dark"})
            assert _metric(node1, FANOUT_READS) == reads  # no change-log read at all
            assert _metric(node1, CARRIED) == carried + 1

            big = {"preferences": {"blob": "é" * 12_000}}  # 72 KB as JSON: fits neither
            assert _patch(node2, token, big) == 2
            pushed(2, big)
            assert _metric(node1, FANOUT_READS) == reads + 1  # once, for 20 subscribers

            assert _patch(node2, token, {"theme": "light"}) == 3
            pushed(3, {"theme": "light"})
            assert _metric(node1, FANOUT_READS) == reads + 1
            assert _metric(node2, FANOUT_READS) == 0  # the writing node never reads
        finally:
            for ws in sockets:
                ws.close()


@pytest.mark.parametrize("bus", BUSES)
def test_team_documents_and_memberships_cross_nodes(
    bus: str, database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = database.settings(bus_url=_bus_url(bus, request), allow_signup="true")
    with cluster(tmp_path, 2, **settings) as (node1, node2), node2.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        doc = f"team:{team_id}"
        with WsClient(node1.ws_url) as ws:
            ws.auth(member.token)
            assert ws.subscribe(None, doc=doc)[-1] == {"type": "synced", "revision": 0, "doc": doc}
            reads = _metric(node1, FANOUT_READS)
            response = http.patch(
                f"/v1/teams/{team_id}/settings", json={"theme": "dark"}, headers=owner.headers
            )
            assert response.status_code == 200, response.text
            frame = ws.recv()
            assert (frame["type"], frame["doc"], frame["revision"], frame["patch"]) == (
                "change",
                doc,
                1,
                {"theme": "dark"},
            )
            assert _metric(node1, FANOUT_READS) == reads
            add_member(http, team_id, owner, member, "viewer")
            assert ws.recv() == {"type": "membership", "doc": doc, "role": "viewer"}


@asynccontextmanager
async def _heard(bus: str, database: Database, bus_url: str) -> AsyncIterator[list[str]]:
    """Every payload the bus carries while inside, heard by a plain client of the transport."""
    payloads: list[str] = []

    def add(data: str | bytes) -> None:
        payloads.append(data.decode() if isinstance(data, bytes) else data)

    if bus == "postgres":
        conn = await asyncpg.connect(url(SUPERUSER, database.name))
        await conn.add_listener(NOTIFY_CHANNEL, lambda *args: add(args[3]))
        try:
            yield payloads
        finally:
            await conn.close()
        return
    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(bus_url.split("channel=")[1])

    async def pump() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                add(message["data"])

    task = asyncio.create_task(pump())
    try:
        yield payloads
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the listener's callbacks set no event
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("bus", BUSES)
async def test_no_plaintext_secret_is_ever_in_a_notification(
    bus: str, database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bus_url = _bus_url(bus, request)
    user = "u-" + uuid.uuid4().hex[:10]
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    with cluster(tmp_path, 2, **database.settings(bus_url=bus_url)) as (_, node2):
        async with _heard(bus, database, bus_url) as payloads:
            async with httpx.AsyncClient(base_url=node2.url) as http:
                for patch in (
                    {"api_keys": {"openai": SECRET}, "theme": "dark"},
                    {"api_keys": {"openai": SECRET + "2", "other": SECRET + "3"}},
                    {"api_keys": {"openai": None}},
                ):
                    response = await http.patch("/v1/settings", json=patch, headers=headers)
                    assert response.status_code == 200, response.text
            await _until(lambda: len([p for p in payloads if user in p]) >= 3)
        mine = [json.loads(p) for p in payloads if user in p]
        text = json.dumps(mine)
        assert SECRET not in text and SECRET[-8:] not in text
        # The changes were carried, masked: what the change frames show.
        carried = [entry[2][0]["patch"] for p in mine for entry in p if entry[0] == user]
        assert carried[0]["api_keys"]["openai"] == {
            "set": True,
            "last4": SECRET[-4:],
            "updated_at": carried[0]["api_keys"]["openai"]["updated_at"],
        }
        assert carried[2] == {"api_keys": {"openai": None}}
