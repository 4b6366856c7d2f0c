"""Membership changes reach every node's sockets (DESIGN §11).

A change of a team's members (added, re-roled, removed, the team deleted) is published on the
bus as ``team:<team_id>/<user_id>`` keys beside the documents' revisions — ids only, like every
bus event. Each node that holds connections of that user reads the user's role now (the event
says only *that* it changed, so late or repeated events converge on the stored truth) and
hands ``(doc, role)`` to each of the user's sockets and event streams; a connection sends the
``membership`` frame and, when the role is gone, ends its subscription to that document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from ..bus import Bus, BusEvent
from ..errors import LiveSettingsError
from ..store.base import Store
from ..teams import membership_key, parse_membership_key, team_id_of, team_key

__all__ = ["ConnectionsLike", "Memberships"]

log = logging.getLogger("livesettings.teams")


class ConnectionsLike(Protocol):
    """What :class:`Memberships` needs of :class:`~livesettings.server.services.Connections`."""

    def count(self, user_id: str | None = None) -> int: ...

    def membership(self, user_id: str, doc: str, role: str | None) -> None:
        """Hand ``(doc, role)`` to each connection of ``user_id`` on this node."""

    def followed_teams(self) -> set[tuple[str, str]]:
        """``(user_id, doc)`` of every team document a connection here follows."""


class Memberships:
    """Splits membership events from document events, and delivers them to connections."""

    def __init__(self, store: Store, connections: ConnectionsLike) -> None:
        self._store = store
        self._connections = connections
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()

    def documents(self, events: Sequence[BusEvent]) -> list[BusEvent]:
        """The document events of a batch; its membership events are dealt with here."""
        documents: list[BusEvent] = []
        for event in events:
            parsed = parse_membership_key(event.user_id)
            if parsed is None:
                documents.append(event)
            elif self._connections.count(parsed[1]) > 0:
                self._kick(parsed)
        return documents

    def resync(self) -> None:
        """The bus reconnected (events may be lost): read again every membership a connection
        here relies on; a connection ignores a role it was already told."""
        for user_id, doc in self._connections.followed_teams():
            team_id = team_id_of(doc)
            if team_id is not None:
                self._kick((team_id, user_id))

    def _kick(self, key: tuple[str, str]) -> None:
        """Read and deliver ``key``'s membership; one reader per key at a time, and once more
        if another event came meanwhile — so deliveries follow the stored order, even when
        an event arrives twice (locally, then from the bus)."""
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[str, str]) -> None:
        try:
            while True:
                self._dirty.discard(key)
                await self._deliver(*key)
                if key not in self._dirty:
                    return
        finally:
            self._running.discard(key)

    async def _deliver(self, team_id: str, user_id: str) -> None:
        try:
            team = await self._store.teams.membership(team_id, user_id)
        except LiveSettingsError:
            log.warning("reading a membership failed; the user's sockets keep their state")
            return
        self._connections.membership(user_id, team_key(team_id), team.role if team else None)

    async def publish(self, bus: Bus, team_id: str, user_ids: Sequence[str]) -> None:
        """Tell every node (this one included) that these memberships changed."""
        events = [BusEvent(membership_key(team_id, user_id), 0) for user_id in user_ids]
        if not events:
            return
        try:
            await bus.publish(events)
        except Exception:
            log.exception("publishing a membership change failed")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
