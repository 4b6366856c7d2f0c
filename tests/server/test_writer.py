"""The writer in process: group commit, each user's order, fairness between users, the batch
bounds, the bus events, and stopping — on a real SQLite store and the memory bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from livesettings.bus import BusEvent
from livesettings.bus.memory import MemoryBus
from livesettings.crypto import Keyring, generate_master_key
from livesettings.errors import ConnectionClosed
from livesettings.server.metrics import Metrics
from livesettings.server.writer import FairQueue, QueuedWrite, Writer, patch_leaves, rate_cost
from livesettings.store.base import CommitOutcome
from livesettings.store.sqlite import SqliteStore
from tests.support.writes import pending


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    made = SqliteStore(
        f"sqlite:///{tmp_path / 'writer.db'}", keyring=Keyring([generate_master_key()])
    )
    await made.setup()
    await made.open()
    yield made
    await made.close()


class Published:
    def __init__(self) -> None:
        self.batches: list[list[BusEvent]] = []

    def __call__(self, events: Sequence[BusEvent]) -> None:
        self.batches.append(list(events))


@pytest.fixture
async def bus() -> AsyncIterator[tuple[MemoryBus, Published]]:
    memory = MemoryBus()
    published = Published()
    await memory.start(published, lambda: None)
    yield memory, published
    await memory.close()


async def started(store: SqliteStore, bus: MemoryBus, **options: Any) -> tuple[Writer, Metrics]:
    metrics = Metrics()
    writer = Writer(store, bus, metrics, **options)
    writer.start()
    return writer, metrics


def deep(n: int) -> dict[str, Any]:
    """A patch of ``n`` leaf edits."""
    return {"preferences": {f"k{i}": i for i in range(n)}}


async def test_concurrent_writes_share_one_commit_and_keep_each_users_order(
    store: SqliteStore, bus: tuple[MemoryBus, Published]
) -> None:
    writer, metrics = await started(store, bus[0])
    futures = [
        writer.enqueue(pending(user, {"preferences": {"n": i}}))
        for i in range(10)
        for user in ("alice", "bob", "carol")
    ]
    assert writer.queued == 30
    outcomes = await asyncio.gather(*futures)
    assert all(o.error is None for o in outcomes)
    for user in ("alice", "bob", "carol"):
        assert [o.revision for o in outcomes if o.user_id == user] == list(range(1, 11))
    assert metrics.commits.get() == 1  # enqueued before the writer ran: one batch
    assert metrics.batch_size.sum == 30
    # One publish per batch, with each user's newest revision.
    assert [sorted(e.user_id for e in b) for b in bus[1].batches] == [["alice", "bob", "carol"]]
    assert {e.revision for e in bus[1].batches[0]} == {10}
    await writer.stop()


async def test_one_users_deep_queue_delays_another_by_at_most_one_batch(
    store: SqliteStore, bus: tuple[MemoryBus, Published]
) -> None:
    writer, metrics = await started(store, bus[0], max_batch=4)
    commit_of: dict[str, list[int]] = {"deep": [], "other": []}

    def note(outcome: CommitOutcome) -> None:
        commit_of[outcome.user_id].append(int(metrics.commits.get()))

    futures = [writer.enqueue(pending("deep", {"theme": "dark"}), note) for _ in range(30)]
    futures.append(writer.enqueue(pending("other", {"theme": "dark"}), note))
    await asyncio.gather(*futures)
    assert commit_of["other"] == [1]  # in the first batch, beside the deep queue's first
    assert commit_of["deep"] == sorted(commit_of["deep"])
    assert commit_of["deep"][-1] == 8  # 31 mutations, 4 a batch
    await writer.stop()


async def test_a_batch_stops_at_its_leaf_budget(
    store: SqliteStore, bus: tuple[MemoryBus, Published]
) -> None:
    writer, metrics = await started(store, bus[0], max_batch_leaves=250)
    commit_of: dict[str, list[int]] = {"deep": [], "other": []}

    def note(outcome: CommitOutcome) -> None:
        commit_of[outcome.user_id].append(int(metrics.commits.get()))

    futures = [writer.enqueue(pending("deep", deep(100)), note) for _ in range(6)]
    futures.append(writer.enqueue(pending("other", deep(1)), note))
    outcomes = await asyncio.gather(*futures)
    assert all(o.error is None for o in outcomes)
    # Batch 1: deep 100, other 1, deep 100, deep 100 (301 leaves end it); batch 2: the rest.
    assert commit_of["other"] == [1]
    assert commit_of["deep"] == [1, 1, 1, 2, 2, 2]
    await writer.stop()


def test_the_fair_queue_takes_one_mutation_per_user_in_turn() -> None:
    queue = FairQueue(max_batch=5, max_batch_leaves=1000)
    loop = asyncio.new_event_loop()
    try:
        for user, n in (("a", 4), ("b", 2), ("c", 1)):
            for i in range(n):
                item = pending(user, {"preferences": {"i": i}})
                queue.put(QueuedWrite(item, loop.create_future(), None, 0.0, 1))
        assert queue.queued == 7
        first = queue.next_batch()
        assert [i.pending.user_id for i in first] == ["a", "b", "c", "a", "b"]
        second = queue.next_batch()
        assert [i.pending.user_id for i in second] == ["a", "a"]
        assert [
            i.pending.mutation.patch["preferences"]["i"]
            for i in first + second
            if (i.pending.user_id == "a")
        ] == [0, 1, 2, 3]
        assert not queue and queue.queued == 0
    finally:
        loop.close()


async def test_stop_finishes_queued_writes_then_refuses_new_ones(
    store: SqliteStore, bus: tuple[MemoryBus, Published]
) -> None:
    writer, _ = await started(store, bus[0])
    futures = [writer.enqueue(pending("dave", {"preferences": {"n": i}})) for i in range(5)]
    await writer.stop()
    assert all(f.done() and f.result().error is None for f in futures)
    with pytest.raises(ConnectionClosed):
        writer.enqueue(pending("dave", {"theme": "dark"}))


async def test_a_refused_mutation_does_not_stop_the_batch(
    store: SqliteStore, bus: tuple[MemoryBus, Published]
) -> None:
    writer, _ = await started(store, bus[0])
    bad = writer.enqueue(pending("erin", {"theme": "purple"}))
    good = writer.enqueue(pending("erin", {"theme": "dark"}))
    assert (await bad).error is not None
    assert ((await good).error, (await good).revision) == (None, 1)
    assert await writer.submit(pending("erin", {"theme": "light"})) is not None
    await writer.stop()


def test_a_writes_cost_grows_with_its_leaves() -> None:
    assert patch_leaves({}) == 1
    assert patch_leaves(deep(60)) == 60
    assert [rate_cost(deep(n)) for n in (1, 25, 26, 1000)] == [1, 1, 2, 40]
