"""Fan-out on one node: bus events in, change frames out to every local subscriber.

For each user with subscribers the hub keeps a :class:`Room`: the subscribers, the last
revision it pushed, the newest one it knows exists, and the change rows it holds without a
read — the ones this node just committed, and the ones another node's bus message carried. An
event for a newer revision makes it push the next rows from those; at a gap (a change too big
for its message, a lost event) it reads the missing rows from the change log once, and queues
each frame to every subscriber of that user. So a node reads each change at most once (not at
all when it arrived with its event), never once per subscriber, and subscribers see every
revision in order, exactly once. When the bus reconnects (events may have been lost), every room is
marked ``resync``: it reads the log until a read finds nothing newer.

Rooms are keyed by document: a user's id, or ``team:<team_id>`` for a team's document (whose
frames carry ``doc``). A subscriber's first read acts as its user (``actor``), so PostgreSQL's
row-level security requires membership; the fan-out reads act as the document itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

_RECENT_ROWS = 1024
"""Rows a room holds ahead of what it pushed; past that, it reads the log."""


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
    recent: dict[int, ChangeRow] = field(default_factory=dict)  # rows held, by revision

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

    # -- inputs ---------------------------------------------------------------------------
    def note_committed(self, rows: Sequence[ChangeRow]) -> None:
        """Rows this node committed: kept briefly so pushing them needs no read."""
        for row in rows:
            room = self._rooms.get(row.user_id)
            if room is not None and room.listening:
                _hold(room, row)

    def on_events(self, events: Sequence[BusEvent]) -> None:
        """Revisions committed (here or on another node), some with their change rows."""
        for event in events:
            room = self._rooms.get(event.user_id)
            if room is None or not room.listening:
                continue
            for change in event.changes:
                if change.revision not in room.recent and _hold(room, change):
                    self._metrics.carried_changes.inc()
            if event.revision > room.wanted:
                room.wanted = event.revision
            if room.behind:
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
            room.recent.clear()
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

    @staticmethod
    def _take_recent(room: Room) -> list[ChangeRow]:
        """The rows held right after ``room.pushed``, in order, up to the first gap."""
        rows: list[ChangeRow] = []
        recent = room.recent
        revision = room.pushed + 1
        while revision <= room.wanted and revision in recent:
            rows.append(recent.pop(revision))
            revision += 1
        return rows

    async def _push_after(self, user_id: str, room: Room) -> None:
        pushed = room.pushed
        rows = [] if room.resync else self._take_recent(room)
        if not rows:
            # A gap (or a resync): read what is missing once, for every subscriber.
            page = await self._store.changes_since(user_id, pushed, self._replay_limit)
            self._metrics.changelog_reads.inc()
            self._metrics.fanout_reads.inc()
            if page.reset:
                room.recent.clear()
                await self._reset_all(user_id, room)
                return
            rows = list(page.changes)
            if not rows:
                # Nothing newer in the log: this node has pushed everything there is.
                room.caught_up(max(pushed, page.revision))
                _forget_pushed(room)
                return
        now_ms = self._clock.time() * 1000
        for row in rows:
            self._push(user_id, room, row)
            self._metrics.push_latency.observe(max(0.0, now_ms - row.committed_at) / 1000)
            room.pushed = row.revision
        if room.recent:
            _forget_pushed(room)

    def _push(self, user_id: str, room: Room, row: ChangeRow) -> None:
        """Queue the frame of one change to each subscriber that has not had it: serialised
        once per label (``user_id``/``doc`` variants), the same text for every socket."""
        frames: dict[tuple[str | None, str | None], str] = {}
        revision = row.revision
        sent = 0
        for sub in list(room.subs):
            if revision <= sub.last_revision:
                continue
            label = sub.label
            frame = frames.get(label)
            if frame is None:
                frame = frames[label] = change_frame(row, label)
            sub.last_revision = revision
            sub.send(frame)
            sent += 1
        if sent:
            self._metrics.pushes.inc(sent)

    async def _reset_all(self, user_id: str, room: Room) -> None:
        """The log no longer reaches back: every subscriber of the user gets a snapshot."""
        doc = await self._store.get_document(user_id)
        settings = self._view(doc.settings)
        for sub in list(room.subs):
            sub.send_state(doc.revision, settings)
            if sub.on_reset is not None:
                sub.on_reset()
        room.caught_up(doc.revision)


def _hold(room: Room, row: ChangeRow) -> bool:
    """Keep ``row`` to push without a read, unless already pushed or the room holds enough."""
    if row.revision <= room.pushed or len(room.recent) >= _RECENT_ROWS:
        return False
    room.recent[row.revision] = row
    return True


def _forget_pushed(room: Room) -> None:
    """Drop the rows held that a read has pushed meanwhile."""
    for revision in [r for r in room.recent if r <= room.pushed]:
        del room.recent[revision]
