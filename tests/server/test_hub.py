"""The hub in process: a real SQLite store, the memory bus, the writer; no server, no socket.

What it must keep: each subscriber sees every revision once and in order; a node reads each
change at most once whatever its number of subscribers (none when it committed the change
itself); an ``ack`` queued by the writer's ``on_done`` goes out before the change it made;
and after a bus gap (``on_resync``) the missed changes are read from the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from livesettings.bus import BusEvent
from livesettings.bus.memory import MemoryBus
from livesettings.crypto import Keyring, generate_master_key
from livesettings.server.hub import Hub, Subscriber
from livesettings.server.metrics import Metrics
from livesettings.server.writer import Writer
from livesettings.store.base import CommitOutcome
from livesettings.store.sqlite import SqliteStore
from tests.support.clock import MovableClock
from tests.support.polling import settle
from tests.support.writes import pending


class Frames:
    """What one subscriber was sent, decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def revisions(self, kind: str = "change") -> list[int]:
        return [f["revision"] for f in self.frames if f["type"] == kind]


class Node:
    """One server node's write and fan-out path over a shared database and bus."""

    def __init__(self, store: SqliteStore, bus: MemoryBus, *, clock: MovableClock) -> None:
        self.store = store
        self.metrics = Metrics()
        self.hub = Hub(store, self.metrics, replay_limit=100, clock=clock)
        self.writer = Writer(store, bus, self.metrics, on_committed=self.hub.note_committed)

    async def subscribe(self, user_id: str, *, with_user_id: bool = False) -> Frames:
        frames = Frames()
        sub = Subscriber(user_id, frames.send, with_user_id=with_user_id)
        await self.hub.subscribe(sub, None)
        return frames

    @property
    def reads(self) -> float:
        return self.metrics.changelog_reads.get()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([generate_master_key()])


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def make_node(
    tmp_path: Path, keyring: Keyring, clock: MovableClock
) -> AsyncIterator[Callable[[], Any]]:
    """Nodes on one SQLite file and one memory bus (as processes would share a database)."""
    bus = MemoryBus()
    nodes: list[Node] = []

    async def make(**store_options: Any) -> Node:
        store = SqliteStore(f"sqlite:///{tmp_path / 'hub.db'}", keyring=keyring, **store_options)
        await store.setup()
        await store.open()
        node = Node(store, bus, clock=clock)
        await bus.start(node.hub.on_events, node.hub.on_resync)
        node.writer.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.writer.stop()
        await node.hub.close()
        await node.store.close()
    await bus.close()


async def test_every_subscriber_sees_each_revision_once_in_order(make_node: Any) -> None:
    node: Node = await make_node()
    plain = await node.subscribe("alice")
    tagged = await node.subscribe("alice", with_user_id=True)
    futures = [node.writer.enqueue(pending("alice", {"preferences": {"n": i}})) for i in range(20)]
    await asyncio.gather(*futures)
    await settle(lambda: len(plain.revisions()) == 20 and len(tagged.revisions()) == 20)
    await asyncio.sleep(0.05)  # nothing more arrives
    assert plain.revisions() == tagged.revisions() == list(range(1, 21))
    assert [f["patch"]["preferences"]["n"] for f in plain.frames if f["type"] == "change"] == (
        list(range(20))
    )
    assert all("user_id" not in f for f in plain.frames)
    assert {f["user_id"] for f in tagged.frames} == {"alice"}


async def test_a_node_reads_each_change_once_whatever_its_subscribers(make_node: Any) -> None:
    writer_node: Node = await make_node()
    other: Node = await make_node()
    mine = [await writer_node.subscribe("bob") for _ in range(3)]
    theirs = [await other.subscribe("bob") for _ in range(3)]
    reads = (writer_node.reads, other.reads)
    for i in range(10):
        await writer_node.writer.submit(pending("bob", {"preferences": {"i": i}}))
    await settle(lambda: all(len(f.revisions()) == 10 for f in mine + theirs))
    # The committing node pushes from the rows it committed; the other reads each change
    # at most once (one read may cover several), never once per subscriber.
    assert writer_node.reads == reads[0]
    assert 1 <= other.reads - reads[1] <= 10
    assert other.metrics.pushes.get() == 30
    for frames in mine + theirs:
        assert frames.revisions() == list(range(1, 11))


async def test_an_ack_queued_by_on_done_goes_out_before_its_change(make_node: Any) -> None:
    node: Node = await make_node()
    frames = await node.subscribe("carol")

    def ack(outcome: CommitOutcome) -> None:
        frames.send(json.dumps({"type": "ack", "revision": outcome.revision}))

    futures = [
        node.writer.enqueue(pending("carol", {"theme": t}), on_done=ack)
        for t in ("dark", "light", "system")
    ]
    await asyncio.gather(*futures)
    await settle(lambda: len(frames.revisions()) == 3)
    kinds = [(f["type"], f["revision"]) for f in frames.frames if f["type"] in ("ack", "change")]
    for revision in (1, 2, 3):
        assert kinds.index(("ack", revision)) < kinds.index(("change", revision))


async def test_changes_missed_in_a_bus_gap_are_read_on_resync(make_node: Any) -> None:
    node: Node = await make_node()
    frames = await node.subscribe("dave")
    await node.writer.submit(pending("dave", {"theme": "dark"}))
    await settle(lambda: frames.revisions() == [1])
    # Commits whose events were lost: straight to the store, nothing published.
    for i in range(3):
        await node.store.commit([pending("dave", {"preferences": {"gap": i}})])
    await asyncio.sleep(0.05)
    assert frames.revisions() == [1]
    node.hub.on_resync()
    room = node.hub.room("dave")
    assert room is not None and room.resync
    await settle(lambda: frames.revisions() == [1, 2, 3, 4])
    await settle(lambda: not room.resync)
    assert (room.pushed, room.wanted) == (4, 4)
    # Afterwards events work as before.
    await node.writer.submit(pending("dave", {"theme": "light"}))
    await settle(lambda: frames.revisions() == [1, 2, 3, 4, 5])


async def test_a_newer_first_read_does_not_skip_a_change_for_earlier_subscribers(
    make_node: Any,
) -> None:
    # Found by the soak: a device resumed (its read saw revision 1), another device of the
    # same user resumed after revision 2 was committed (its read saw 2), and the event for 2
    # came last. The first two devices must still get revision 2.
    node: Node = await make_node()
    await node.writer.submit(pending("erin", {"theme": "dark"}))
    first = Frames()
    await node.hub.subscribe(Subscriber("erin", first.send), 1)
    resumed = Frames()
    await node.hub.subscribe(Subscriber("erin", resumed.send), 1)
    await node.store.commit([pending("erin", {"theme": "light"})])  # no event yet
    late = Frames()
    await node.hub.subscribe(Subscriber("erin", late.send), 1)
    assert late.revisions() == [2]
    node.hub.on_events([BusEvent("erin", 2)])
    await settle(lambda: first.revisions() == resumed.revisions() == [2])
    await asyncio.sleep(0.05)
    assert first.revisions() == resumed.revisions() == late.revisions() == [2]


async def test_a_subscriber_joining_late_gets_the_snapshot_then_only_newer_changes(
    make_node: Any,
) -> None:
    node: Node = await make_node()
    early = await node.subscribe("erin")
    for theme in ("dark", "light"):
        await node.writer.submit(pending("erin", {"theme": theme}))
    late = await node.subscribe("erin")
    assert [(f["type"], f["revision"]) for f in late.frames] == [("snapshot", 2), ("synced", 2)]
    await node.writer.submit(pending("erin", {"theme": "system"}))
    await settle(lambda: late.revisions() == [3] and early.revisions() == [1, 2, 3])


async def test_events_for_users_without_subscribers_are_ignored_and_rooms_forgotten(
    make_node: Any,
) -> None:
    node: Node = await make_node()
    node.hub.on_events([BusEvent("nobody", 7)])
    assert node.hub.room("nobody") is None
    frames = Frames()
    sub = Subscriber("frank", frames.send)
    await node.hub.subscribe(sub, None)
    assert node.hub.subscriber_count("frank") == node.hub.subscriber_count() == 1
    node.hub.unsubscribe(sub)
    assert node.hub.room("frank") is None
    assert node.hub.subscriber_count() == 0
    await node.writer.submit(pending("frank", {"theme": "dark"}))
    await asyncio.sleep(0.02)
    assert frames.revisions() == []


async def test_push_latency_is_measured_on_the_clock_passed_in(
    make_node: Any, clock: MovableClock
) -> None:
    node: Node = await make_node()
    frames = await node.subscribe("gina")
    clock.advance(2.0)  # the hub's clock is now 2 s ahead of the store's commit times
    await node.writer.submit(pending("gina", {"theme": "dark"}))
    await settle(lambda: frames.revisions() == [1])
    latency = node.metrics.push_latency
    assert latency.count == 1
    assert 1.9 < latency.sum < 3.0


async def test_when_the_log_no_longer_reaches_back_subscribers_get_a_snapshot(
    make_node: Any,
) -> None:
    node: Node = await make_node(changelog_retain=2)
    frames = Frames()
    resets: list[int] = []
    sub = Subscriber("hana", frames.send, on_reset=lambda: resets.append(1))
    await node.hub.subscribe(sub, None)
    for i in range(5):  # missed (no events), and more than the log keeps
        await node.store.commit([pending("hana", {"preferences": {"n": i}})])
    node.hub.on_resync()
    await settle(lambda: resets == [1])
    assert [(f["type"], f["revision"]) for f in frames.frames[-2:]] == [
        ("snapshot", 5),
        ("synced", 5),
    ]
    assert frames.frames[-2]["settings"]["preferences"] == {"n": 4}
    room = node.hub.room("hana")
    assert room is not None and (room.pushed, room.wanted, room.resync) == (5, 5, False)
