"""Fan-out on one node: bus events in, change frames out to every local subscriber.

For each user with subscribers the hub remembers the last revision it pushed. An event for a
newer revision makes it read the missing change rows once — from the rows this node just
committed when it has them, else from the change log — and queue each frame to every
subscriber of that user. So a node reads each change at most once, never once per subscriber,
and subscribers see every revision in order, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bus import BusEvent
from ..document import mask_document
from ..protocol import ChangeFrame, SnapshotFrame, SyncedFrame
from ..store.base import ChangeRow, Store
from .metrics import Metrics

__all__ = ["Hub", "Subscriber"]

log = logging.getLogger("livesettings.hub")

_RECENT_ROWS = 4096


@dataclass(eq=False, slots=True)
class Subscriber:
    """One subscription of one connection. ``send`` queues a frame without blocking."""

    user_id: str
    send: Callable[[str], None]
    with_user_id: bool = False
    last_revision: int = -1
    on_reset: Callable[[], None] | None = field(default=None)


def change_frame(row: ChangeRow, with_user_id: bool) -> str:
    return ChangeFrame(
        revision=row.revision,
        patch=row.patch,
        mutation_id=row.mutation_id,
        client_id=row.client_id,
        committed_at=row.committed_at,
        conflicts=list(row.conflicts),
        user_id=row.user_id if with_user_id else None,
    ).to_json()


class Hub:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        replay_limit: int = 1000,
        view: Callable[[dict[str, Any]], dict[str, Any]] = mask_document,
    ) -> None:
        self._store = store
        self._view = view
        self._metrics = metrics
        self._replay_limit = replay_limit
        self._subs: dict[str, set[Subscriber]] = {}
        self._pushed: dict[str, int] = {}
        self._wanted: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._joining: dict[str, int] = {}  # users whose first read is in flight
        self._recent: OrderedDict[tuple[str, int], ChangeRow] = OrderedDict()

    # -- inputs ---------------------------------------------------------------------------
    def note_committed(self, rows: Sequence[ChangeRow]) -> None:
        """Rows this node committed: kept briefly so pushing them needs no read."""
        for row in rows:
            if row.user_id in self._subs:
                self._recent[(row.user_id, row.revision)] = row
        while len(self._recent) > _RECENT_ROWS:
            self._recent.popitem(last=False)

    def on_events(self, events: Sequence[BusEvent]) -> None:
        for event in events:
            if event.user_id not in self._subs and event.user_id not in self._joining:
                continue
            if event.revision > self._wanted.get(event.user_id, -1):
                self._wanted[event.user_id] = event.revision
            self._kick(event.user_id)

    def on_resync(self) -> None:
        """The bus reconnected: anything may have been missed, so ask the log."""
        for user_id in set(self._subs) | set(self._joining):
            self._wanted[user_id] = max(self._wanted.get(user_id, -1), 1 << 62)
            self._kick(user_id)

    # -- subscriptions --------------------------------------------------------------------
    async def subscribe(self, sub: Subscriber, since: int | None) -> int:
        """Send the snapshot or the missed changes, then ``synced``; return the revision."""
        # An event that arrives while the first read is in flight must not be dropped: it may
        # be newer than what the read saw.
        self._joining[sub.user_id] = self._joining.get(sub.user_id, 0) + 1
        try:
            return await self._subscribe(sub, since)
        finally:
            self._joining[sub.user_id] -= 1
            if not self._joining[sub.user_id]:
                del self._joining[sub.user_id]

    async def _subscribe(self, sub: Subscriber, since: int | None) -> int:
        lock = self._locks.setdefault(sub.user_id, asyncio.Lock())
        async with lock:
            doc, page = await self._store.snapshot_and_changes(
                sub.user_id, since, self._replay_limit
            )
            self._metrics.changelog_reads.inc()
            uid = sub.user_id if sub.with_user_id else None
            if doc is not None:
                settings = self._view(doc.settings)
                sub.send(SnapshotFrame(doc.revision, settings, user_id=uid).to_json())
                revision = doc.revision
            else:
                for row in page.changes:
                    sub.send(change_frame(row, sub.with_user_id))
                revision = page.changes[-1].revision if page.changes else page.revision
            sub.last_revision = revision
            sub.send(SyncedFrame(revision, user_id=uid).to_json())
            subs = self._subs.setdefault(sub.user_id, set())
            if not subs:
                self._pushed[sub.user_id] = revision
            else:
                self._pushed[sub.user_id] = max(self._pushed.get(sub.user_id, 0), revision)
            subs.add(sub)
            wanted = max(self._wanted.get(sub.user_id, -1), page.revision)
            if wanted > revision:
                self._wanted[sub.user_id] = wanted
                self._kick(sub.user_id)
            return revision

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.user_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.user_id]
            self._pushed.pop(sub.user_id, None)
            self._wanted.pop(sub.user_id, None)
            lock = self._locks.get(sub.user_id)
            if lock is not None and not lock.locked():
                del self._locks[sub.user_id]

    def subscriber_count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._subs.get(user_id, ()))
        return sum(len(s) for s in self._subs.values())

    async def close(self) -> None:
        for task in list(self._drainers.values()):
            task.cancel()
        for task in list(self._drainers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drainers.clear()

    # -- pushing --------------------------------------------------------------------------
    def _kick(self, user_id: str) -> None:
        task = self._drainers.get(user_id)
        if task is None or task.done():
            self._drainers[user_id] = asyncio.create_task(self._drain(user_id))

    async def _drain(self, user_id: str) -> None:
        failures = 0
        try:
            while user_id in self._subs:
                pushed = self._pushed.get(user_id, 0)
                if self._wanted.get(user_id, -1) <= pushed:
                    return
                try:
                    async with self._locks.setdefault(user_id, asyncio.Lock()):
                        await self._push_after(user_id, self._pushed.get(user_id, 0))
                    failures = 0
                except Exception:
                    # The database may be briefly away: retry with backoff, so a subscriber
                    # is never left stale until the next write.
                    failures += 1
                    log.warning("reading changes for fan-out failed (attempt %d)", failures)
                    await asyncio.sleep(min(5.0, 0.05 * 2**failures))
        finally:
            if self._drainers.get(user_id) is asyncio.current_task():
                del self._drainers[user_id]

    async def _push_after(self, user_id: str, pushed: int) -> None:
        wanted = self._wanted.get(user_id, -1)
        rows: list[ChangeRow] = []
        revision = pushed + 1
        while (user_id, revision) in self._recent and revision <= wanted:
            rows.append(self._recent.pop((user_id, revision)))
            revision += 1
        if not rows or revision <= wanted:
            page = await self._store.changes_since(user_id, pushed, self._replay_limit)
            self._metrics.changelog_reads.inc()
            if page.reset:
                await self._reset_all(user_id)
                return
            rows = list(page.changes)
            if not rows:
                # Nothing newer in the log: the wanted revision was a resync probe.
                self._wanted[user_id] = page.revision
                self._pushed[user_id] = max(pushed, page.revision)
                return
        now_ms = time.time() * 1000
        plain: str | None = None
        tagged: str | None = None
        for row in rows:
            plain = tagged = None
            for sub in list(self._subs.get(user_id, ())):
                if row.revision <= sub.last_revision:
                    continue
                if sub.with_user_id:
                    tagged = tagged or change_frame(row, True)
                    sub.send(tagged)
                else:
                    plain = plain or change_frame(row, False)
                    sub.send(plain)
                sub.last_revision = row.revision
                self._metrics.pushes.inc()
            self._metrics.push_latency.observe(max(0.0, now_ms - row.committed_at) / 1000)
            self._pushed[user_id] = row.revision
        if self._wanted.get(user_id, -1) >= 1 << 62:
            self._wanted[user_id] = self._pushed[user_id] + 1  # keep probing until caught up

    async def _reset_all(self, user_id: str) -> None:
        """The log no longer reaches back: every subscriber of the user gets a snapshot."""
        doc = await self._store.get_document(user_id)
        settings = self._view(doc.settings)
        for sub in list(self._subs.get(user_id, ())):
            uid = sub.user_id if sub.with_user_id else None
            sub.send(SnapshotFrame(doc.revision, settings, user_id=uid).to_json())
            sub.send(SyncedFrame(doc.revision, user_id=uid).to_json())
            sub.last_revision = doc.revision
            if sub.on_reset is not None:
                sub.on_reset()
        self._pushed[user_id] = doc.revision
        self._wanted[user_id] = doc.revision
