"""Which documents a client holds, and the end of a team document for it (a mixin).

A client follows one main document: the token's user's own, a user's (``user_id=``, service
tokens) or a team's (``doc="team:<team_id>"``). The offline cache keys each document apart
(``""``, the user id, ``team:<team_id>``), so a personal and a team client may share one cache
file: each replays only its own documents' queues (a team document's queue waits for a client
of that document).

The server tells a member of a team document when their role changes (``membership``), and
when they are removed it ends their subscription with an ``error`` ``forbidden`` carrying
``doc``. :class:`TeamDocuments` handles both: the client stops syncing that document, drops
its pending edits (each told to ``on_error`` with code ``forbidden``) and its cached copy, and
when it was the main document, ``status.connection`` becomes ``ERROR`` with ``status.error``
set. Being added again (a ``membership`` frame with a role) follows it again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from livesettings.errors import Forbidden, LiveSettingsError
from livesettings.protocol import MembershipFrame

from .cache import OfflineCache
from .events import ChangeCallback, ErrorEvent, Events
from .session import Session
from .state import Ack, Change, Documents, DocumentState
from .status import ConnectionState
from .teams import ROLES, Membership, Team, TeamRole

__all__ = ["TeamDocuments", "forget_own", "queued_document"]

_TEAM: str = "team:"


def queued_document(main: DocumentState, key: str) -> DocumentState | None:
    """The document to restore for a queued edit of ``key`` found in the offline cache, or
    None when this client leaves it to another: a team document's queue is replayed by a
    client of that document, and a team client replays nothing else."""
    if main.doc is not None or key.startswith(_TEAM):
        return None
    return DocumentState(key or None, followed=False)


def forget_own(cache: OfflineCache) -> int:
    """Drop what the cache holds of its former user (their document, their teams' documents,
    and those documents' queues); return how many queued edits went. A service's documents
    of other users (keyed by user id) stay."""
    keys = [key for key in cache.keys() if key == "" or key.startswith(_TEAM)]  # noqa: SIM118
    return sum(cache.forget(key) for key in keys)


class TeamDocuments:
    """Membership frames and the end of a document (mixed into :class:`~.core.AsyncClient`)."""

    _docs: Documents
    _main: DocumentState
    _cache: OfflineCache | None
    _events: Events
    _connection: ConnectionState
    _error_count: int
    _listeners: dict[str, list[ChangeCallback]]
    _subscribe_errors: dict[str, LiveSettingsError]
    _sync_waiters: dict[str, asyncio.Event]
    _dropped: set[str]

    if TYPE_CHECKING:

        def _settle(
            self, mutation_id: str, ack: Ack | None, error: LiveSettingsError | None
        ) -> None: ...
        def _emit(self, doc: DocumentState, change: Change | None) -> None: ...
        def _note_error(self, error: LiveSettingsError) -> None: ...
        def _refresh_status(self) -> None: ...
        def _went_online(self) -> None: ...
        def _begin_catch_up(self, session: Session, doc: DocumentState) -> asyncio.Event: ...

    @property
    def doc(self) -> str | None:
        """The team document this client follows (``team:<team_id>``), or None."""
        return self._main.doc

    @property
    def role(self) -> TeamRole | None:
        """The caller's role in this client's team document once known (from :meth:`teams`
        or a ``membership`` frame); None for a user's document, or when removed."""
        role = self._main.role
        return role if role in ROLES else None

    def _learn_roles(self, teams: list[Team]) -> None:
        for team in teams:
            state = self._docs.get(team.doc)
            if state is not None and state.refused is None:
                state.role = team.role

    def _on_membership(self, session: Session, frame: MembershipFrame) -> None:
        role = frame.role if frame.role in ROLES else None
        state = self._docs.get(frame.doc)
        if state is not None:
            state.role = role
            if role is None:
                self._end_document(state, Forbidden("you are no longer a member of this team"))
            elif state.refused is not None and (
                state is self._main or self._listeners.get(state.key)
            ):
                state.refused = None  # added (again): follow it
                state.followed = True
                self._begin_catch_up(session, state)
                self._refresh_status()
        self._events.emit(self._events.membership, Membership(frame.doc, role))

    def _on_doc_error(self, session: Session, doc: str, error: LiveSettingsError) -> None:
        """An error about the team document ``doc`` as a whole: its subscription was refused
        (not a member, a service token) or ended (removed)."""
        state = self._docs.get(doc)
        if doc in session.waiting:
            session.waiting.remove(doc)
            if state is not self._main:
                self._subscribe_errors[doc] = error  # raised by subscribe_to_settings_changes
            self._sync_waiters[doc].set()  # made by _begin_catch_up
        if state is None or not self._end_document(state, error):
            self._error_count += 1
        self._events.emit(self._events.error, ErrorEvent.of(error, None, None, doc))
        if not session.waiting and self._connection is not ConnectionState.ONLINE:
            self._went_online()  # the others are in sync (a refused main document: ERROR)
        self._refresh_status()

    def _end_document(self, state: DocumentState, error: LiveSettingsError) -> bool:
        """Stop syncing ``state`` for good (until added again): drop its pending edits, tell
        each, and forget its cached copy. False when it had ended already."""
        if state.refused is not None:
            return False
        state.followed = False
        state.refused = error
        dropped, change = state.drop_pending()
        for pending in dropped:
            self._dropped.add(pending.mutation_id)  # the server's answer to it is not told
            self._settle(pending.mutation_id, None, error)
            self._error_count += 1
            event = ErrorEvent.of(error, pending.mutation_id, state.user_id, state.doc)
            self._events.emit(self._events.error, event)
        if self._cache is not None and state.doc is not None:
            self._cache.forget(state.key)  # a former member keeps nothing of the team
        self._emit(state, change)
        if state is self._main:
            self._connection = ConnectionState.ERROR
            self._note_error(error)
        else:
            self._error_count += 1
        self._refresh_status()
        return True
