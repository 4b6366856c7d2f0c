"""The Redis pub/sub bus against the real server: fan-out, reconnection, readiness."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from livesettings.bus import BusEvent, open_bus
from livesettings.bus.redis import RedisBus, decode_message, encode_message
from livesettings.errors import StorageError
from tests.bus.conftest import REDIS_URL, Recorder, eventually, short_delays

EVENTS = [BusEvent("alice", 3), BusEvent("b0b-ü", 7)]


def test_one_message_per_group_commit() -> None:
    assert encode_message(EVENTS) == '[["alice",3],["b0b-\\u00fc",7]]'
    assert decode_message(b'[["alice",3],["b0b-\\u00fc",7]]') == EVENTS
    for bad in ("{}", '[["a"]]', '[["a",true]]', "[[1,2]]"):
        with pytest.raises(ValueError):
            decode_message(bad)


def test_the_channel_comes_from_the_url() -> None:
    bus = RedisBus("redis://:pw@cache:6380/2?channel=team-a&socket_timeout=3")
    assert bus.channel == "team-a"
    assert bus.url == "redis://:pw@cache:6380/2?channel=team-a&socket_timeout=3"
    assert RedisBus("redis://cache").channel == "livesettings"
    assert RedisBus("redis://cache?channel=x", channel="y").channel == "y"
    bus = open_bus("redis://cache", database_url="postgresql://app@db/settings")
    assert isinstance(bus, RedisBus)


@pytest.fixture
async def admin(redis_channel: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def _started(url: str, name: str) -> tuple[RedisBus, Recorder]:
    bus = RedisBus(url, client_name=name, reconnect_delays=short_delays, probe_interval=5.0)
    recorder = Recorder()
    await bus.start(recorder.on_events, recorder.on_resync)
    return bus, recorder


async def _kill_subscriber(admin: Any, name: str) -> None:
    """``CLIENT KILL`` the subscriber connection of the bus named ``name`` (and only it)."""
    clients = await admin.client_list()
    ids = [c["id"] for c in clients if c["name"] == name and c["sub"] != "0"]
    assert len(ids) == 1, clients
    assert await admin.execute_command("CLIENT", "KILL", "ID", ids[0]) == 1


@pytest.mark.redis
async def test_publish_reaches_every_node(redis_channel: str) -> None:
    url = f"{REDIS_URL}?channel={redis_channel}"
    name = redis_channel
    a, rec_a = await _started(url, name + "-a")
    b, rec_b = await _started(url, name + "-b")
    try:
        await a.publish(EVENTS)
        await a.publish([BusEvent("alice", 4)])
        await rec_b.wait(lambda: len(rec_b.events) >= 3)
        await rec_a.wait(lambda: len(rec_a.events) >= 6)
        assert rec_b.batches == [EVENTS, [BusEvent("alice", 4)]]
        # The publisher hears its events at once, then their echo through Redis.
        assert rec_a.events.count(BusEvent("alice", 4)) == 2
        assert rec_a.batches[0] == EVENTS
        assert rec_a.resyncs == rec_b.resyncs == 0
        await a.ping()
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_killed_subscriber_reconnects_subscribes_again_and_resyncs(
    redis_channel: str, admin: Any
) -> None:
    url = f"{REDIS_URL}?channel={redis_channel}"
    bus, rec = await _started(url, redis_channel + "-kill")
    other, _ = await _started(url, redis_channel + "-pub")
    try:
        assert bus.connected
        await _kill_subscriber(admin, redis_channel + "-kill")
        await rec.wait(lambda: rec.resyncs == 1)
        assert bus.reconnects == 1
        assert bus.connected
        await bus.ping()
        await other.publish([BusEvent("alice", 5)])
        await rec.wait(lambda: rec.events == [BusEvent("alice", 5)])
        assert rec.resyncs == 1
    finally:
        await other.close()
        await bus.close()


@pytest.mark.redis
async def test_ping_fails_while_redis_refuses_and_recovers_after(
    redis_channel: str, admin: Any
) -> None:
    # A user of our own that can be switched off: Redis then refuses the reconnection.
    user, password = "ls-test-" + uuid.uuid4().hex[:12], uuid.uuid4().hex
    await admin.execute_command("ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all")
    url = f"redis://{user}:{password}@127.0.0.1:6379/0?channel={redis_channel}"
    bus, rec = await _started(url, redis_channel + "-down")
    try:
        await bus.ping()
        await admin.execute_command("ACL", "SETUSER", user, "off")
        await _kill_subscriber(admin, redis_channel + "-down")
        await eventually(lambda: not bus.connected)
        with pytest.raises(StorageError, match="lost its subscriber connection"):
            await bus.ping()
        with pytest.raises(StorageError, match=f"redis://{user}:\\*\\*\\*@127"):
            await RedisBus(url).start(rec.on_events, rec.on_resync)
        assert rec.resyncs == 0
        await admin.execute_command("ACL", "SETUSER", user, "on")
        await rec.wait(lambda: rec.resyncs == 1)
        assert bus.connected
        await bus.ping()
    finally:
        await bus.close()
        await admin.execute_command("ACL", "DELUSER", user)


@pytest.mark.redis
async def test_an_unreachable_server_is_a_clear_error(redis_available: bool) -> None:
    bus = RedisBus("redis://127.0.0.1:1/0", connect_timeout=2.0)
    rec = Recorder()
    with pytest.raises(StorageError, match=r"cannot subscribe on redis://127\.0\.0\.1:1/0"):
        await bus.start(rec.on_events, rec.on_resync)
    with pytest.raises(StorageError):
        await bus.ping()
    await bus.close()


@pytest.mark.redis
async def test_close_releases_both_connections_without_a_resync(
    redis_channel: str, admin: Any
) -> None:
    name = redis_channel + "-close"
    bus, rec = await _started(f"{REDIS_URL}?channel={redis_channel}", name)
    await bus.publish([BusEvent("alice", 1)])  # opens the publishing connection too
    assert sum(c["name"] == name for c in await admin.client_list()) == 2
    await bus.close()
    assert not bus.connected
    async with asyncio.timeout(5.0):  # Redis notices a closed socket on its next event loop turn
        while [c for c in await admin.client_list() if c["name"] == name]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert (rec.resyncs, bus.reconnects) == (0, 0)
