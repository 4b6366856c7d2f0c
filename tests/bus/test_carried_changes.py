"""Changes carried by the bus: a node pushes another node's change without reading the log
when it fits the message, reads once when it does not (or at a gap), and no plaintext secret
ever crosses the bus.

Real parts only: a SQLite store on disk, the hub, and the real PostgreSQL and Redis buses. The
commits go straight to the store and are published as the writer does (``change_events``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from livesettings.bus import Bus, BusEvent, change_events
from livesettings.bus.notify import (
    NOTIFY_CHANNEL,
    NOTIFY_PAYLOAD_LIMIT,
    ORIGIN,
    change_payloads,
    decode_events,
    encode_events,
    parse_notify_payload,
)
from livesettings.bus.postgres import PostgresBus
from livesettings.bus.redis import RedisBus, encode_message
from livesettings.crypto import Keyring, generate_master_key
from livesettings.server.hub import Hub, Subscriber
from livesettings.server.metrics import Metrics
from livesettings.store.base import ChangeRow
from livesettings.store.sqlite import SqliteStore
from tests.bus.conftest import PG_ADMIN_URL, REDIS_URL, eventually, short_delays
from tests.conftest import require_service
from tests.support.writes import pending

SECRET = "sk-live-0123456789abcdefSECRET"
_SENT = ("user_id", "revision", "patch", "mutation_id", "client_id", "committed_at", "conflicts")


def _row(revision: int, patch: dict[str, Any], user_id: str = "alice") -> ChangeRow:
    return ChangeRow(
        user_id,
        revision,
        patch,
        f"m-{revision}",
        "c-1",
        1_764_349_200_000 + revision,
        ({"path": "/theme", "kept": "server"},),
        inverse={"theme": "inverse-only"},
    )


# -- the payload, without a server --------------------------------------------------------


def test_changes_that_fit_are_carried_and_the_rest_named_by_revision() -> None:
    small = [_row(1, {"theme": "dark"}), _row(2, {"language": "fr"}), _row(5, {}, "b0b-ü")]
    # The writer publishes the newest revision per user, with the user's rows in order.
    (payload,) = encode_events(change_events(small))
    events = decode_events(payload)
    assert events == [BusEvent("alice", 2), BusEvent("b0b-ü", 5)]
    # The rows arrive as the change frames need them; the inverse never leaves the node.
    assert [c.patch for c in events[0].changes] == [{"theme": "dark"}, {"language": "fr"}]
    stripped = [ChangeRow(*(getattr(r, f) for f in _SENT)) for r in small[:2]]
    assert events[0].changes == tuple(stripped)
    assert "inverse-only" not in payload
    # The store notifies an entry per change; readers of the ids still get the pairs.
    payloads = change_payloads(small)
    assert len(payloads) == 1 and "inverse-only" not in payloads[0]
    assert parse_notify_payload(payloads[0]) == [("alice", 1), ("alice", 2), ("b0b-ü", 5)]
    assert [e.changes for e in decode_events(payloads[0])] == [(r,) for r in stripped] + [
        (ChangeRow(*(getattr(small[2], f) for f in _SENT)),)
    ]

    big = _row(3, {"preferences": {"blob": "x" * NOTIFY_PAYLOAD_LIMIT}})
    (alone,) = change_payloads([big])
    assert len(alone) < 100 and decode_events(alone)[0].changes == ()
    # A batch of carried changes is split under the limit, every event kept in order.
    many = [_row(i, {"preferences": {"n": "y" * 900}}, f"user-{i}") for i in range(1, 40)]
    split = change_payloads(many)
    assert len(split) > 1 and all(len(p.encode()) <= NOTIFY_PAYLOAD_LIMIT for p in split)
    heard = [e for p in split for e in decode_events(p)]
    assert [(e.user_id, e.revision, len(e.changes)) for e in heard] == [
        (f"user-{i}", i, 1) for i in range(1, 40)
    ]
    # Redis takes one message per commit; an entry past its change limit names the revision.
    one = json.loads(encode_message(change_events([big]), change_limit=1000))
    assert one == [["alice", 3]]
    assert len(json.loads(encode_message(change_events([big])))[0]) == 3


def test_the_stores_own_notifications_come_back_to_its_process_without_changes() -> None:
    # PostgreSQL may deliver them before the writer has sent its ack: a change pushed from
    # one could overtake it, so this process's own notifications carry ids only.
    (payload,) = change_payloads([_row(1, {"theme": "dark"})])
    assert decode_events(payload)[0].changes != ()
    assert decode_events(payload, local="another-process")[0].changes != ()
    assert decode_events(payload, local=ORIGIN) == [BusEvent("alice", 1)]
    assert decode_events(payload, local=ORIGIN)[0].changes == ()
    # What a bus sends itself (after the writer answered) carries no origin.
    (sent,) = encode_events(change_events([_row(1, {"theme": "dark"})]))
    assert ORIGIN not in sent and decode_events(sent, local=ORIGIN)[0].changes != ()


@pytest.mark.parametrize(
    "payload",
    [
        '[["a",2,{}]]',  # not a list of changes
        '[["a",2,[]]]',
        '[["a",2,[{"revision":2,"patch":{},"mutation_id":"m","client_id":"c"}]]]',
        '[["a",2,[{"revision":1,"patch":{},"mutation_id":"m","client_id":"c",'
        '"committed_at":1,"conflicts":[]}]]]',  # does not end at the event's revision
        '[["a",2,[{"revision":2,"patch":[],"mutation_id":"m","client_id":"c",'
        '"committed_at":1,"conflicts":[]}]]]',
        '[["a",2,[],4]]',
        '[["a",2,[{"revision":2,"patch":{},"mutation_id":"m","client_id":"c",'
        '"committed_at":1,"conflicts":[]}],4]]',  # an origin is a string
        '[["a",2,null,"o",5]]',
    ],
)
def test_malformed_carried_changes_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        decode_events(payload)


# -- two hubs over one database and a real bus --------------------------------------------


class Frames:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def changes(self) -> list[tuple[int, Any]]:
        return [(f["revision"], f["patch"]) for f in self.frames if f["type"] == "change"]


class Raw:
    """Every payload the bus's transport carried, as text (heard by a plain client)."""

    def __init__(self) -> None:
        self.payloads: list[str] = []

    def add(self, payload: str | bytes) -> None:
        self.payloads.append(payload.decode() if isinstance(payload, bytes) else payload)


class Cluster:
    """Two nodes: ``publisher`` commits and publishes; ``node``'s hub has the subscribers."""

    def __init__(self, store: SqliteStore, publisher: Bus, node: Bus, raw: Raw) -> None:
        self.store, self.publisher, self.node, self.raw = store, publisher, node, raw
        self.metrics = Metrics()
        self.hub = Hub(store, self.metrics, replay_limit=100)

    async def commit(self, user_id: str, patch: dict[str, Any], *, publish: bool = True) -> int:
        (outcome,) = await self.store.commit([pending(user_id, patch)])
        assert outcome.change is not None, outcome.error
        if publish:
            await self.publisher.publish(change_events([outcome.change]))
        return outcome.change.revision

    async def subscribe(self, user_id: str, count: int = 1) -> list[Frames]:
        frames = [Frames() for _ in range(count)]
        for f in frames:
            await self.hub.subscribe(Subscriber(user_id, f.send), None)
        return frames

    @property
    def fanout_reads(self) -> float:
        return self.metrics.fanout_reads.get()


async def _pg_buses(raw: Raw) -> tuple[Bus, Bus, Callable[[], Any]]:
    """Two PostgreSQL buses on a database of their own (the store is SQLite: each bus sends
    its own notifications), and a plain listener."""
    name = "ls_carried_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pg_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    opts: dict[str, Any] = {"database_url": "sqlite:///unused.db", "reconnect_delays": short_delays}
    publisher = PostgresBus(pg_url, application_name="carried-pub", **opts)
    node = PostgresBus(pg_url, application_name="carried-node", **opts)
    listener = await asyncpg.connect(pg_url)
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: raw.add(args[3]))

    async def close() -> None:
        await listener.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    return publisher, node, close


async def _redis_buses(channel: str, raw: Raw) -> tuple[Bus, Bus, Callable[[], Any]]:
    url = f"{REDIS_URL}?channel={channel}"
    publisher = RedisBus(url, client_name=channel + "-pub", reconnect_delays=short_delays)
    node = RedisBus(url, client_name=channel + "-node", reconnect_delays=short_delays)
    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)

    async def pump() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                raw.add(message["data"])

    task = asyncio.create_task(pump())

    async def close() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()

    return publisher, node, close


_BUSES = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=_BUSES)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    raw = Raw()
    if request.param == "postgres":
        require_service(
            "PostgreSQL (127.0.0.1:5432)", request.getfixturevalue("postgres_available")
        )
        publisher, node, close = await _pg_buses(raw)
    else:
        publisher, node, close = await _redis_buses(request.getfixturevalue("redis_channel"), raw)
    store = SqliteStore(
        f"sqlite:///{tmp_path / 'carried.db'}", keyring=Keyring([generate_master_key()])
    )
    await store.setup()
    await store.open()
    made = Cluster(store, publisher, node, raw)

    def ignore(events: Sequence[BusEvent]) -> None:
        return None

    await publisher.start(ignore, lambda: None)
    await node.start(made.hub.on_events, made.hub.on_resync)
    try:
        yield made
    finally:
        await made.hub.close()
        await publisher.close()
        await node.close()
        await close()
        await store.close()


async def test_a_change_that_fits_is_pushed_with_no_read(cluster: Cluster) -> None:
    subs = await cluster.subscribe("alice", 20)
    for theme in ("dark", "light", "system"):
        await cluster.commit("alice", {"theme": theme})
    await eventually(lambda: all(len(f.changes()) == 3 for f in subs))
    await asyncio.sleep(0.05)
    expected = [(1, {"theme": "dark"}), (2, {"theme": "light"}), (3, {"theme": "system"})]
    assert all(f.changes() == expected for f in subs)
    assert cluster.fanout_reads == 0
    assert cluster.metrics.carried_changes.get() == 3
    assert cluster.metrics.pushes.get() == 60


async def test_a_change_too_big_for_the_message_is_read_once_for_all_subscribers(
    cluster: Cluster,
) -> None:
    subs = await cluster.subscribe("bob", 20)
    big = {"preferences": {"blob": "é" * 12_000}}  # escaped: 72 KB, past both limits
    assert await cluster.commit("bob", big) == 1
    await eventually(lambda: all(len(f.changes()) == 1 for f in subs))
    assert cluster.raw.payloads and all(
        "é" not in p and "blob" not in p for p in cluster.raw.payloads
    )
    await asyncio.sleep(0.1)  # a second read would follow the first at once
    assert cluster.fanout_reads == 1
    assert all(f.changes() == [(1, big)] for f in subs)
    # The next one fits again: no read.
    await cluster.commit("bob", {"theme": "dark"})
    await eventually(lambda: all(len(f.changes()) == 2 for f in subs))
    assert cluster.fanout_reads == 1


async def test_a_gap_is_read_once_and_duplicates_are_dropped(cluster: Cluster) -> None:
    (subs,) = await cluster.subscribe("carol")
    await cluster.commit("carol", {"theme": "dark"})
    await eventually(lambda: len(subs.changes()) == 1)
    assert cluster.fanout_reads == 0
    # Revision 2's event is lost; 3 arrives with its change: 2 is missing, so read once.
    await cluster.commit("carol", {"language": "fr"}, publish=False)
    await cluster.commit("carol", {"theme": "light"})
    await eventually(lambda: len(subs.changes()) == 3)
    assert subs.changes() == [
        (1, {"theme": "dark"}),
        (2, {"language": "fr"}),
        (3, {"theme": "light"}),
    ]
    assert cluster.fanout_reads == 1
    # The same events again (a bus echo, a repeated message): nothing is pushed twice.
    page = await cluster.store.changes_since("carol", 0, 10)
    await cluster.publisher.publish(change_events(page.changes))
    await cluster.commit("carol", {"theme": "system"})
    await eventually(lambda: len(subs.changes()) == 4)
    await asyncio.sleep(0.05)
    assert [revision for revision, _ in subs.changes()] == [1, 2, 3, 4]
    assert cluster.fanout_reads == 1


async def test_no_plaintext_secret_crosses_the_bus(cluster: Cluster) -> None:
    (subs,) = await cluster.subscribe("dave")
    await cluster.commit("dave", {"api_keys": {"openai": SECRET}, "theme": "dark"})
    await eventually(lambda: len(subs.changes()) == 1)
    await eventually(lambda: len(cluster.raw.payloads) == 1)
    (payload,) = cluster.raw.payloads
    assert SECRET not in payload and SECRET[-8:] not in payload
    # The change was carried, masked, and pushed without a read.
    ((user_id, revision, changes),) = json.loads(payload)
    assert (user_id, revision, len(changes)) == ("dave", 1, 1)
    carried = changes[0]["patch"]["api_keys"]["openai"]
    assert carried["set"] is True and carried["last4"] == SECRET[-4:]
    assert cluster.fanout_reads == 0
    assert subs.changes()[0][1]["api_keys"]["openai"] == carried
    assert SECRET not in json.dumps(subs.frames)
