"""The PostgreSQL LISTEN/NOTIFY bus against the real server: fan-out, payloads, reconnection."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from livesettings.bus import BusEvent, open_bus
from livesettings.bus.postgres import (
    NOTIFY_CHANNEL,
    NOTIFY_PAYLOAD_LIMIT,
    PostgresBus,
    decode_events,
    encode_events,
)
from livesettings.errors import ConfigError, StorageError
from tests.bus.conftest import Recorder, eventually, short_delays

EVENTS = [BusEvent("alice", 3), BusEvent("b0b-ü", 7)]


# -- the payload, without a server --------------------------------------------------------
def test_payload_is_a_compact_list_of_id_pairs() -> None:
    assert encode_events(EVENTS) == ['[["alice",3],["b0b-\\u00fc",7]]']
    assert decode_events('[["alice",3],["b0b-\\u00fc",7]]') == EVENTS
    assert encode_events([]) == []


def test_big_batches_split_under_the_limit_in_order() -> None:
    events = [BusEvent(f"user-{i:05d}-" + "x" * 40, i) for i in range(1000)]
    payloads = encode_events(events)
    assert len(payloads) == 9
    assert all(len(p.encode()) <= NOTIFY_PAYLOAD_LIMIT for p in payloads)
    assert [e for p in payloads for e in decode_events(p)] == events


@pytest.mark.parametrize(
    "payload", ["{}", "[1]", '[["a"]]', '[["a","1"]]', '[["a",true]]', "[[1,2]]", "nope"]
)
def test_malformed_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        decode_events(payload)


def test_who_notifies() -> None:
    app = "postgresql://app:pw@db.internal:5432/settings"
    assert PostgresBus("postgres", database_url=app).store_notifies is True
    # Same database under another role: the store's notifications reach it.
    bus = PostgresBus("postgresql://other@db.internal/settings", database_url=app)
    assert bus.store_notifies is True
    elsewhere = PostgresBus("postgresql://db.internal/elsewhere", database_url=app)
    assert elsewhere.store_notifies is False
    not_pg = PostgresBus("postgresql://db.internal/x", database_url="sqlite:///x.db")
    assert not_pg.store_notifies is False
    assert PostgresBus("postgres", database_url=app, store_notifies=False).store_notifies is False
    assert isinstance(open_bus("postgres", database_url=app), PostgresBus)
    with pytest.raises(ConfigError, match="LIVESETTINGS_DATABASE_URL"):
        PostgresBus("postgres", database_url="sqlite:///x.db")


# -- against the server -------------------------------------------------------------------
async def _started(url: str, name: str, **kwargs: Any) -> tuple[PostgresBus, Recorder]:
    bus = PostgresBus(
        url, reconnect_delays=short_delays, application_name=name, probe_interval=5.0, **kwargs
    )
    recorder = Recorder()
    await bus.start(recorder.on_events, recorder.on_resync)
    return bus, recorder


async def _listener_pid(admin: Any, name: str) -> int:
    pid: int | None = await admin.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", name
    )
    assert pid is not None
    return pid


@pytest.mark.postgres
async def test_publish_reaches_every_node(pg_url: str) -> None:
    # The store is not PostgreSQL here, so the bus sends the notification itself.
    a, rec_a = await _started(pg_url, "bus-a", database_url="sqlite:///unused.db")
    b, rec_b = await _started(pg_url, "bus-b", database_url="sqlite:///unused.db")
    try:
        assert a.store_notifies is False
        await a.publish(EVENTS)
        await rec_b.wait(lambda: len(rec_b.events) >= 2)
        # The publisher hears its events at once, then their echo through the server.
        await rec_a.wait(lambda: len(rec_a.events) >= 4)
        assert rec_b.batches == [EVENTS]
        assert rec_a.batches == [EVENTS, EVENTS]
        assert rec_a.resyncs == rec_b.resyncs == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_a_big_batch_arrives_whole_and_in_order(pg_url: str) -> None:
    a, _ = await _started(pg_url, "bus-a", database_url="sqlite:///unused.db")
    b, rec_b = await _started(pg_url, "bus-b", database_url="sqlite:///unused.db")
    events = [BusEvent(f"user-{i:05d}-" + "x" * 40, i) for i in range(1000)]
    try:
        await a.publish(events)
        await rec_b.wait(lambda: len(rec_b.events) >= 1000)
        assert rec_b.events == events
        assert len(rec_b.batches) == 9
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_with_a_postgres_store_only_committed_notifies_are_heard(pg_url: str) -> None:
    a, rec_a = await _started("postgres", "bus-a", database_url=pg_url)
    b, rec_b = await _started("postgres", "bus-b", database_url=pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        assert a.store_notifies is True
        # publish() sends nothing: the store's transaction notifies. Only local delivery.
        await a.publish([BusEvent("alice", 1)])
        assert rec_a.batches == [[BusEvent("alice", 1)]]
        # What the store does in its group commit: one pg_notify, heard only if it commits.
        async with conn.transaction():
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, '[["alice",1]]')
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, '[["rolled",9]]')
                raise RuntimeError("roll back")
        async with conn.transaction():
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, '[["alice",2]]')
        await rec_b.wait(lambda: len(rec_b.events) >= 2)
        await rec_a.wait(lambda: len(rec_a.events) >= 3)
        assert rec_b.events == [BusEvent("alice", 1), BusEvent("alice", 2)]
        assert rec_a.events == [BusEvent("alice", 1), BusEvent("alice", 1), BusEvent("alice", 2)]
    finally:
        await conn.close()
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_a_malformed_payload_makes_the_node_resync(pg_url: str) -> None:
    bus, rec = await _started("postgres", "bus-a", database_url=pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps({"bad": 1}))
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, '[["alice",4]]')
        await rec.wait(lambda: rec.resyncs == 1 and len(rec.events) == 1)
        assert rec.events == [BusEvent("alice", 4)]
    finally:
        await conn.close()
        await bus.close()


@pytest.mark.postgres
async def test_a_killed_listener_reconnects_listens_again_and_resyncs(
    pg_url: str, pg_admin: Any
) -> None:
    bus, rec = await _started("postgres", "bus-kill", database_url=pg_url)
    other, _ = await _started(pg_url, "bus-pub", database_url="sqlite:///unused.db")
    try:
        assert bus.connected
        old_pid = await _listener_pid(pg_admin, "bus-kill")
        assert await pg_admin.fetchval("SELECT pg_terminate_backend($1)", old_pid) is True
        await rec.wait(lambda: rec.resyncs == 1)
        assert bus.reconnects == 1
        assert bus.connected
        assert await _listener_pid(pg_admin, "bus-kill") != old_pid
        await bus.ping()
        # Listening again: the next notification arrives.
        await other.publish([BusEvent("alice", 5)])
        await rec.wait(lambda: rec.events == [BusEvent("alice", 5)])
        assert rec.resyncs == 1
    finally:
        await other.close()
        await bus.close()


@pytest.mark.postgres
async def test_ping_fails_while_the_database_refuses_and_recovers_after(
    pg_url: str, pg_admin: Any
) -> None:
    bus, rec = await _started("postgres", "bus-down", database_url=pg_url)
    name = pg_url.rsplit("/", 1)[1]
    try:
        await bus.ping()
        await pg_admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await pg_admin.fetchval(
            "SELECT pg_terminate_backend($1)", await _listener_pid(pg_admin, "bus-down")
        )
        await eventually(lambda: not bus.connected)
        with pytest.raises(StorageError, match="lost its listening connection"):
            await bus.ping()
        with pytest.raises(StorageError):
            await PostgresBus(pg_url, database_url=pg_url).start(rec.on_events, rec.on_resync)
        assert rec.resyncs == 0
        await pg_admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await rec.wait(lambda: rec.resyncs == 1)
        await bus.ping()
    finally:
        await bus.close()


@pytest.mark.postgres
async def test_an_unreachable_server_is_a_clear_error(postgres_available: bool) -> None:
    bus = PostgresBus("postgresql://app:s3cret@127.0.0.1:1/x", connect_timeout=2.0)
    rec = Recorder()
    with pytest.raises(StorageError, match=r"cannot listen on postgresql://app:\*\*\*@127") as info:
        await bus.start(rec.on_events, rec.on_resync)
    assert "s3cret" not in str(info.value)
    with pytest.raises(StorageError):
        await bus.ping()
    await bus.close()


@pytest.mark.postgres
async def test_close_releases_the_connection_without_a_resync(pg_url: str, pg_admin: Any) -> None:
    bus, rec = await _started("postgres", "bus-close", database_url=pg_url)
    await _listener_pid(pg_admin, "bus-close")
    await bus.close()
    assert not bus.connected
    assert (
        await pg_admin.fetch("SELECT 1 FROM pg_stat_activity WHERE application_name = 'bus-close'")
        == []
    )
    assert (rec.resyncs, bus.reconnects) == (0, 0)
