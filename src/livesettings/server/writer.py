"""The one writer: concurrent mutations are committed together (group commit), each atomic,
and only then answered and published.

While a transaction is being made durable, new mutations queue up; the next transaction takes
all of them (up to ``max_batch``). So a lone write pays one commit, and a thousand concurrent
writes pay a handful — no timer, no added latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..bus import Bus, BusEvent
from ..errors import ConnectionClosed, StorageError
from ..store.base import ChangeRow, CommitOutcome, PendingMutation, Store
from .metrics import Metrics

__all__ = ["Writer"]

log = logging.getLogger("livesettings.writer")

OnDone = Callable[[CommitOutcome], None]


@dataclass(slots=True)
class _Item:
    pending: PendingMutation
    future: asyncio.Future[CommitOutcome]
    on_done: OnDone | None
    submitted: float


class Writer:
    """Owns the store's write path; ``submit`` returns once the mutation is durable."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        *,
        max_batch: int = 256,
        on_committed: Callable[[Sequence[ChangeRow]], None] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._max_batch = max_batch
        self._on_committed = on_committed
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="livesettings-writer")

    async def stop(self) -> None:
        """Refuse new writes, finish the queued ones, then stop."""
        self._closing = True
        if self._task is None:
            return
        await self._queue.join()
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
        self._queue.put_nowait(_Item(pending, future, on_done, time.perf_counter()))
        return future

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Item]) -> None:
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
        latest: dict[str, int] = {}
        for change in changes:
            latest[change.user_id] = max(latest.get(change.user_id, 0), change.revision)
        try:
            await self._bus.publish([BusEvent(u, r) for u, r in latest.items()])
        except Exception:
            # Committed data is safe; subscribers catch up on the next event or resync.
            log.exception("publishing to the bus failed")
