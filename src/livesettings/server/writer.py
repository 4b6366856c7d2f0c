"""The one writer: concurrent mutations are committed together (group commit), each atomic,
and only then answered and published.

While a transaction is being made durable, new mutations queue up; the next transaction takes
all of them (up to ``max_batch``). So a lone write pays one commit, and a thousand concurrent
writes pay a handful — no timer, no added latency.

Users are served fairly: each has its own queue, and a batch takes one mutation from each
user in turn until it holds ``max_batch`` mutations or ``max_batch_leaves`` leaf edits. So one
user with a deep queue of large patches delays another user's write by at most one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..bus import Bus, change_events
from ..errors import ConnectionClosed, StorageError
from ..merge import leaf_edits
from ..store.base import ChangeRow, CommitOutcome, PendingMutation, Store
from .metrics import Metrics

__all__ = ["FairQueue", "QueuedWrite", "Writer", "patch_leaves", "rate_cost"]

log = logging.getLogger("livesettings.writer")

OnDone = Callable[[CommitOutcome], None]


LEAVES_PER_TOKEN = 25
"""A write costs one rate-limit token per started 25 leaf edits (so the default burst of 200
takes one patch of 5,000 deletes, not 200)."""


def patch_leaves(patch: Mapping[str, Any]) -> int:
    """The leaf edits of a patch (at least 1): the unit of a mutation's work."""
    return max(1, sum(1 for _ in leaf_edits(patch)))


def rate_cost(patch: Mapping[str, Any]) -> int:
    """Rate-limit tokens a write takes: 1 for up to 25 leaves, 1 more per 25 after.

    >>> deletes = {"preferences": {f"k{i}": None for i in range(60)}}
    >>> rate_cost({"theme": "dark"}), rate_cost(deletes)
    (1, 3)
    """
    return 1 + (patch_leaves(patch) - 1) // LEAVES_PER_TOKEN


@dataclass(slots=True)
class QueuedWrite:
    """A mutation waiting for its group commit, with its waiter and its size."""

    pending: PendingMutation
    future: asyncio.Future[CommitOutcome]
    on_done: OnDone | None
    submitted: float
    leaves: int


class FairQueue:
    """Queued mutations, one queue per user; a batch takes one per user in turn.

    A batch holds at most ``max_batch`` mutations and stops once it holds ``max_batch_leaves``
    leaf edits, so one user's deep queue delays another user's write by at most one batch,
    and each user's own order is kept.
    """

    def __init__(self, max_batch: int, max_batch_leaves: int) -> None:
        self.max_batch, self.max_batch_leaves = max_batch, max_batch_leaves
        self._queues: dict[str, deque[QueuedWrite]] = {}
        self._turns: deque[str] = deque()  # users with queued mutations, next one first
        self.queued = 0

    def __bool__(self) -> bool:
        return bool(self._turns)

    def put(self, item: QueuedWrite) -> None:
        user_id = item.pending.user_id
        queue = self._queues.get(user_id)
        if queue is None:
            queue = self._queues[user_id] = deque()
            self._turns.append(user_id)
        queue.append(item)
        self.queued += 1

    def next_batch(self) -> list[QueuedWrite]:
        """One mutation per user in turn, within the batch's count and work budget."""
        batch: list[QueuedWrite] = []
        leaves = 0
        while self._turns and len(batch) < self.max_batch and leaves < self.max_batch_leaves:
            user_id = self._turns.popleft()
            queue = self._queues[user_id]
            item = queue.popleft()
            batch.append(item)
            leaves += item.leaves
            if queue:
                self._turns.append(user_id)
            else:
                del self._queues[user_id]
        self.queued -= len(batch)
        return batch


class Writer:
    """Owns the store's write path; ``submit`` returns once the mutation is durable."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        *,
        max_batch: int = 256,
        max_batch_leaves: int = 2048,
        on_committed: Callable[[Sequence[ChangeRow]], None] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._on_committed = on_committed
        self._queue = FairQueue(max_batch, max_batch_leaves)
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="livesettings-writer")

    async def stop(self) -> None:
        """Refuse new writes, finish the queued ones, then stop."""
        self._closing = True
        if self._task is None:
            return
        await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, pending: PendingMutation) -> CommitOutcome:
        """Queue one mutation and wait until it is durable (or refused)."""
        return await asyncio.shield(self.enqueue(pending))

    def enqueue(
        self, pending: PendingMutation, on_done: OnDone | None = None
    ) -> asyncio.Future[CommitOutcome]:
        """Queue one mutation without waiting. ``on_done`` runs synchronously before any push
        of its commit, so a socket can queue its ``ack`` ahead of the ``change`` frames."""
        if self._closing or self._task is None:
            raise ConnectionClosed("the server is shutting down; retry on another connection")
        future: asyncio.Future[CommitOutcome] = asyncio.get_running_loop().create_future()
        leaves = patch_leaves(pending.mutation.patch)
        self._queue.put(QueuedWrite(pending, future, on_done, time.perf_counter(), leaves))
        self._idle.clear()
        self._wakeup.set()
        return future

    @property
    def queued(self) -> int:
        return self._queue.queued

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue.next_batch()
            try:
                await self._commit(batch)
            except Exception:  # never let the writer die: the futures would wait forever
                log.exception("finishing a group commit failed")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StorageError("the write failed"))

    async def _commit(self, batch: list[QueuedWrite]) -> None:
        try:
            outcomes = await self._store.commit([item.pending for item in batch])
        except Exception as exc:  # the store should translate; never let the writer die
            log.exception("group commit failed")
            error = exc if isinstance(exc, StorageError) else StorageError("the write failed")
            outcomes = [
                CommitOutcome(i.pending.user_id, i.pending.mutation.mutation_id, 0, error=error)
                for i in batch
            ]
        self._metrics.commits.inc()
        self._metrics.batch_size.observe(len(batch))
        now = time.perf_counter()
        changes: list[ChangeRow] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            self._metrics.write_latency.observe(now - item.submitted)
            if outcome.change is not None:
                changes.append(outcome.change)
            if item.on_done is not None:
                try:
                    item.on_done(outcome)
                except Exception:
                    log.exception("on_done callback failed")
            if not item.future.done():
                item.future.set_result(outcome)
        if not changes:
            return
        self._metrics.changes.inc(len(changes))
        if self._on_committed is not None:
            self._on_committed(changes)
        try:
            # Each user's newest revision, with the rows: other nodes push without a read.
            await self._bus.publish(change_events(changes))
        except Exception:
            # Committed data is safe; subscribers catch up on the next event or resync.
            log.exception("publishing to the bus failed")
