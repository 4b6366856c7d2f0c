"""One user's row as a Realtime socket follows it: the masked document, kept current by the
hub's change frames, and the ``postgres_changes`` events each change becomes. No I/O.

The hub (:mod:`..hub`) pushes each committed change of a user once per subscriber, in order,
without gaps; its ``patch`` is the effective merge patch, already masked. A :class:`Feed`
starts from the document read at subscription time and applies each patch with the document's
own merge-patch rule (:func:`~livesettings.document.apply_patch`), so it holds the whole row
after every change without reading it again. The first write of a document that had no row
is an ``INSERT``; every later one an ``UPDATE``. A reset (the hub's snapshot after its change
log no longer reached back) or a revision gap is answered by reading the document again and
sending one ``UPDATE`` with the row as it is.

Channels share the feed of a user on one socket; each gets the changes committed after it
started following (``since``: the position of its join reply in the socket's outbound order).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...document import apply_patch, rfc3339
from ...store.base import StoredDocument
from ..hub import Subscriber
from .phoenix import Event, Message
from .realtime_changes import Binding, ChangeType, change_payloads
from .rows import seed_row

__all__ = ["Feed", "Follower", "Step"]

View = Callable[[dict[str, Any]], dict[str, Any]]
"""Settings as a user may see them (``Services.view``: secrets masked, schema defaults)."""


class Step(enum.Enum):
    """What a change frame does to a feed besides its event."""

    APPLIED = "applied"  # the next revision: applied, an event follows
    SEEN = "seen"  # already applied (part of the document the feed started from)
    GAP = "gap"  # revisions are missing: read the document again


@dataclass(eq=False)
class Follower:
    """A channel as a feed sees it: its topic, bindings, and since when it follows."""

    topic: str
    bindings: list[Binding]
    since: int = 0  # outbound position of its join reply: later items are for it


@dataclass(eq=False)
class Feed:
    """The masked row of ``user_id`` as of ``revision``, and the channels that follow it."""

    user_id: str
    settings: dict[str, Any]
    revision: int
    exists: bool  # the row exists (written at least once, or adopted from the seed table)
    created_at: str | None
    updated_at: str | None
    row_id: int | str | None
    view: View
    followers: set[Follower] = field(default_factory=set)
    subscriber: Subscriber | None = None
    closed: bool = False
    last_change: ChangeType = "UPDATE"  # of the change last applied

    @classmethod
    def of(cls, user_id: str, doc: StoredDocument, row_id: int | str | None, view: View) -> Feed:
        """A feed of ``user_id`` starting from ``doc`` as stored (it is masked here)."""
        feed = cls(user_id, {}, 0, False, None, None, None, view)
        feed.reset(doc, row_id)
        return feed

    def reset(self, doc: StoredDocument, row_id: int | str | None) -> None:
        """Start again from ``doc`` (read after a reset or a gap)."""
        self.settings = self.view(doc.settings)
        self.revision = doc.revision
        self.exists = doc.revision > 0 or doc.created_at is not None
        self.created_at = doc.created_at
        self.updated_at = doc.updated_at
        self.row_id = row_id

    def step(self, revision: int, patch: dict[str, Any], committed_at: int) -> Step:
        """Apply the change frame ``revision`` (its masked ``patch``, committed at ms)."""
        if revision <= self.revision:
            return Step.SEEN
        if revision != self.revision + 1:
            return Step.GAP
        self.settings = self.view(apply_patch(self.settings, patch))
        self.revision = revision
        self.updated_at = rfc3339(committed_at)
        # The first write of a document without a row creates it (its id is read then).
        self.last_change = "UPDATE" if self.exists else "INSERT"
        if not self.exists:
            self.exists = True
            self.created_at = self.created_at or self.updated_at
        return Step.APPLIED

    def row(self) -> dict[str, Any]:
        """The row now, in the seed's shape."""
        return seed_row(self.user_id, self.row_id, self.settings, self.created_at, self.updated_at)

    def events(self, change: ChangeType, position: int) -> list[Message]:
        """The ``postgres_changes`` messages of the change at outbound ``position`` to every
        follower that followed before it (none for a row that does not exist)."""
        if not self.exists:
            return []
        row = self.row()
        stamp = self.updated_at or rfc3339(0)
        messages: list[Message] = []
        for follower in list(self.followers):
            if follower.since >= position:
                continue
            for payload in change_payloads(
                follower.bindings, self.user_id, change, row, commit_timestamp=stamp
            ):
                messages.append(Message(follower.topic, Event.POSTGRES_CHANGES, payload))
        return messages
