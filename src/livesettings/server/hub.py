"""Fan-out on one node: bus events in, change frames out to every local subscriber.

For each user with subscribers the hub keeps a :class:`Room`: the subscribers, the last
revision it pushed and the newest one it knows exists. An event for a newer revision makes it
read the missing change rows once — from the rows this node just committed when it has them,
else from the change log — and queue each frame to every subscriber of that user. So a node
reads each change at most once, never once per subscriber, and subscribers see every revision
in order, exactly once. When the bus reconnects (events may have been lost), every room is
marked ``resync``: it reads the log until a read finds nothing newer.

Rooms are keyed by document: a user's id, or ``team:<team_id>`` for a team's document (whose
frames carry ``doc``). A subscriber's first read acts as its user (``actor``), so PostgreSQL's
row-level security requires membership; the fan-out reads act as the document itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bus import BusEvent
from ..clock import SYSTEM_CLOCK, Clock
from ..document import mask_document
from ..protocol import ChangeFrame, SnapshotFrame, SyncedFrame
from ..store.base import ChangeRow, Store
from .metrics import Metrics

__all__ = ["Hub", "Room", "Subscriber"]

log = logging.getLogger("livesettings.hub")

_RECENT_ROWS = 4096


@dataclass(eq=False, slots=True)
class Subscriber:
    """One subscription of one connection. ``send`` queues a frame without blocking.

    ``user_id`` is the document key; ``doc`` is set for a team's document (its frames carry
    it) and ``actor`` is then the member following it.
    """

    user_id: str
    send: Callable[[str], None]
    with_user_id: bool = False
    last_revision: int = -1
    on_reset: Callable[[], None] | None = field(default=None)
    doc: str | None = None
    actor: str | None = None

    @property
    def label(self) -> tuple[str | None, str | None]:
        """``(user_id, doc)`` as this subscriber's frames carry them."""
        return (self.user_id if self.with_user_id else None, self.doc)

    def send_state(self, revision: int, settings: dict[str, Any] | None) -> None:
        """A snapshot (when ``settings`` is given), then ``synced``, at ``revision``."""
        uid, doc = self.label
        if settings is not None:
            self.send(SnapshotFrame(revision, settings, user_id=uid, doc=doc).to_json())
        self.last_revision = revision
        self.send(SyncedFrame(revision, user_id=uid, doc=doc).to_json())


@dataclass(eq=False, slots=True)
class Room:
    """The hub's state for one user on this node."""

    subs: set[Subscriber] = field(default_factory=set)
    pushed: int = 0  # the last revision queued to this node's subscribers
    wanted: int = -1  # the newest revision known to exist (from events and first reads)
    resync: bool = False  # the bus may have lost events: read the log until caught up
    joining: int = 0  # subscribes whose first read is in flight
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    drainer: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Events matter: someone is subscribed, or about to be."""
        return bool(self.subs) or self.joining > 0

    @property
    def behind(self) -> bool:
        """Subscribers have not been sent everything known to exist."""
        return self.resync or self.wanted > self.pushed

    @property
    def idle(self) -> bool:
        """Nothing refers to this room any more: it may be forgotten."""
        return not self.listening and not self.lock.locked()

    def caught_up(self, revision: int) -> None:
        """Everything up to ``revision`` was pushed and nothing newer is known."""
        self.pushed = self.wanted = revision
        self.resync = False


def change_frame(row: ChangeRow, label: tuple[str | None, str | None]) -> str:
    """The ``change`` frame of a row, labelled ``(user_id, doc)`` as its subscriber needs."""
    fields = (row.revision, row.patch, row.mutation_id, row.client_id, row.committed_at)
    uid, doc = label
    return ChangeFrame(*fields, conflicts=list(row.conflicts), user_id=uid, doc=doc).to_json()


class Hub:
    """This node's rooms: bus events and local commits in, frames out to subscribers."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        replay_limit: int = 1000,
        view: Callable[[dict[str, Any]], dict[str, Any]] = mask_document,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._rooms: dict[str, Room] = {}
        self._view = view
        self._metrics = metrics
        self._replay_limit = replay_limit
        self._clock = clock
        self._drainers: set[asyncio.Task[None]] = set()
        self._recent: OrderedDict[tuple[str, int], ChangeRow] = OrderedDict()

    # -- inputs ---------------------------------------------------------------------------
    def note_committed(self, rows: Sequence[ChangeRow]) -> None:
        """Rows this node committed: kept briefly so pushing them needs no read."""
        for row in rows:
            room = self._rooms.get(row.user_id)
            if room is not None and room.subs:
                self._recent[(row.user_id, row.revision)] = row
        while len(self._recent) > _RECENT_ROWS:
            self._recent.popitem(last=False)

    def on_events(self, events: Sequence[BusEvent]) -> None:
        for event in events:
            room = self._rooms.get(event.user_id)
            if room is None or not room.listening:
                continue
            room.wanted = max(room.wanted, event.revision)
            self._kick(event.user_id, room)

    def on_resync(self) -> None:
        """The bus reconnected: anything may have been missed, so ask the log."""
        for user_id, room in list(self._rooms.items()):
            if room.listening:
                room.resync = True
                self._kick(user_id, room)

    # -- subscriptions --------------------------------------------------------------------
    async def subscribe(self, sub: Subscriber, since: int | None) -> int:
        """Send the snapshot or the missed changes, then ``synced``; return the revision."""
        # An event that arrives while the first read is in flight must not be dropped: it may
        # be newer than what the read saw.
        room = self._rooms.setdefault(sub.user_id, Room())
        room.joining += 1
        try:
            async with room.lock:
                return await self._first_read(sub, since, room)
        finally:
            room.joining -= 1
            self._forget_if_idle(sub.user_id, room)

    async def _first_read(self, sub: Subscriber, since: int | None, room: Room) -> int:
        doc, page = await self._store.snapshot_and_changes(
            sub.user_id, since, self._replay_limit, actor=sub.actor
        )
        self._metrics.changelog_reads.inc()
        if doc is not None:
            revision = doc.revision
            sub.send_state(revision, self._view(doc.settings))
        else:
            for row in page.changes:
                sub.send(change_frame(row, sub.label))
            revision = page.changes[-1].revision if page.changes else page.revision
            sub.send_state(revision, None)
        if room.subs:
            # The others have had only what was pushed to them: a newer read of this one must
            # not move their mark past it (they would never get the rows between). A lower
            # mark costs a read at most; each subscriber skips what it already has.
            room.wanted = max(room.wanted, room.pushed, revision)
            room.pushed = min(room.pushed, revision)
        else:
            room.pushed = revision
        room.subs.add(sub)
        room.wanted = max(room.wanted, page.revision)
        if room.behind:
            self._kick(sub.user_id, room)
        return revision

    def unsubscribe(self, sub: Subscriber) -> None:
        room = self._rooms.get(sub.user_id)
        if room is None or sub not in room.subs:
            return
        room.subs.discard(sub)
        if not room.subs and not room.joining:
            # A later subscriber starts from its own first read; one joining now keeps what
            # events said exists, which its read may not have seen.
            room.caught_up(0)
            self._forget_if_idle(sub.user_id, room)

    def _forget_if_idle(self, user_id: str, room: Room) -> None:
        if room.idle and self._rooms.get(user_id) is room:
            del self._rooms[user_id]

    def subscriber_count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            room = self._rooms.get(user_id)
            return len(room.subs) if room is not None else 0
        return sum(len(room.subs) for room in self._rooms.values())

    def room(self, user_id: str) -> Room | None:
        """The state kept for ``user_id`` (for tests and diagnostics)."""
        return self._rooms.get(user_id)

    async def close(self) -> None:
        tasks = list(self._drainers)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drainers.clear()

    # -- pushing --------------------------------------------------------------------------
    def _kick(self, user_id: str, room: Room) -> None:
        if room.drainer is None or room.drainer.done():
            task = asyncio.create_task(self._drain(user_id, room))
            room.drainer = task
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)

    async def _drain(self, user_id: str, room: Room) -> None:
        failures = 0
        try:
            while room.subs and room.behind:
                try:
                    async with room.lock:
                        await self._push_after(user_id, room)
                    failures = 0
                except Exception:
                    # The database may be briefly away: retry with backoff, so a subscriber
                    # is never left stale until the next write.
                    failures += 1
                    log.warning("reading changes for fan-out failed (attempt %d)", failures)
                    await asyncio.sleep(min(5.0, 0.05 * 2**failures))
        finally:
            if room.drainer is asyncio.current_task():
                room.drainer = None
            self._forget_if_idle(user_id, room)

    def _take_recent(self, user_id: str, room: Room) -> list[ChangeRow]:
        """The rows after ``room.pushed`` this node committed itself, up to ``wanted``."""
        rows: list[ChangeRow] = []
        revision = room.pushed + 1
        while revision <= room.wanted and (user_id, revision) in self._recent:
            rows.append(self._recent.pop((user_id, revision)))
            revision += 1
        return rows

    async def _push_after(self, user_id: str, room: Room) -> None:
        pushed = room.pushed
        rows = [] if room.resync else self._take_recent(user_id, room)
        if not rows or rows[-1].revision < room.wanted:
            page = await self._store.changes_since(user_id, pushed, self._replay_limit)
            self._metrics.changelog_reads.inc()
            if page.reset:
                await self._reset_all(user_id, room)
                return
            rows = list(page.changes)
            if not rows:
                # Nothing newer in the log: this node has pushed everything there is.
                room.caught_up(max(pushed, page.revision))
                return
        now_ms = self._clock.time() * 1000
        for row in rows:
            self._push(user_id, room, row)
            self._metrics.push_latency.observe(max(0.0, now_ms - row.committed_at) / 1000)
            room.pushed = row.revision

    def _push(self, user_id: str, room: Room, row: ChangeRow) -> None:
        """Queue the frame of one change to each subscriber that has not had it."""
        frames: dict[tuple[str | None, str | None], str] = {}
        for sub in list(room.subs):
            if row.revision <= sub.last_revision:
                continue
            label = sub.label
            frame = frames.get(label)
            if frame is None:
                frame = frames[label] = change_frame(row, label)
            sub.send(frame)
            sub.last_revision = row.revision
            self._metrics.pushes.inc()

    async def _reset_all(self, user_id: str, room: Room) -> None:
        """The log no longer reaches back: every subscriber of the user gets a snapshot."""
        doc = await self._store.get_document(user_id)
        settings = self._view(doc.settings)
        for sub in list(room.subs):
            sub.send_state(doc.revision, settings)
            if sub.on_reset is not None:
                sub.on_reset()
        room.caught_up(doc.revision)
