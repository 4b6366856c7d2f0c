"""One document as a client sees it: confirmed state, pending edits, and the view — no I/O.

The *confirmed* state is what the server committed up to ``revision`` (masked, as pushed).
Pending edits are the client's own mutations not yet reflected there; the *view* — what
``get()`` returns — is the confirmed state with every pending patch applied in order
(optimistic updates). Each server frame moves the state forward and says what the subscribers
should hear, as :class:`Change` events; the async core only does the I/O around it.

An edit leaves the pending list when the server's ``change`` frame carrying its mutation id
arrives (or a snapshot or ``ack`` shows it is already included), so an acknowledged edit never
blinks out of the view between its ``ack`` and its ``change``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from livesettings.document import apply_patch, copy_json, default_document, diff, mask_patch
from livesettings.errors import LiveSettingsError
from livesettings.protocol import ChangeFrame

from .cache import CachedDocument, QueuedMutation, carries_secret

__all__ = [
    "Ack",
    "Change",
    "ChangeOrigin",
    "DocumentState",
    "Documents",
    "PendingEdit",
    "RevisionGap",
    "copy_json",
]


class ChangeOrigin(enum.Enum):
    """Why the view of a document changed."""

    LOCAL = "local"
    """Your own edit, shown at once (before the server confirmed it)."""
    REMOTE = "remote"
    """A change committed on the server (another client's, or yours turning out differently)."""
    SNAPSHOT = "snapshot"
    """The server sent the whole state: the first load, or a reset (``Change.reset``)."""
    ROLLBACK = "rollback"
    """Your edit was refused by the server and its effect undone."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a document's view, as subscribers receive it.

    ``patch`` is the merge patch of the change: the committed, effective patch for ``REMOTE``,
    your edit (secrets masked) for ``LOCAL``, and the difference between the old and the new
    view for ``SNAPSHOT`` and ``ROLLBACK``. ``settings`` is the whole view after it (shared by
    every subscriber: do not modify it). ``conflicts`` are the server's conflict reports; an
    entry whose ``lost_by`` is your client id means your value was overwritten.
    ``user_id`` names the document for service clients (None: the token's own user), and
    ``doc`` a team's document (``team:<team_id>``; None: a user's).
    """

    origin: ChangeOrigin
    patch: dict[str, Any]
    settings: dict[str, Any]
    revision: int | None = None
    mutation_id: str | None = None
    client_id: str | None = None
    committed_at: int | None = None
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    user_id: str | None = None
    reset: bool = False
    """A snapshot replaced a state the client had: the changes in between were not sent one
    by one (the server's log no longer had them). Re-read ``settings``."""
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The server's acknowledgement of one of your mutations: durable at ``revision``.

    ``conflicts`` lists each edited path that met a concurrent edit, with ``kept`` telling
    whose value survived (``"yours"``, ``"theirs"`` or ``"partial"``). When every edit lost,
    ``revision`` is the document's current revision. ``user_id`` and ``doc`` name the
    document as in :class:`Change`.
    """

    mutation_id: str
    revision: int
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    user_id: str | None = None
    doc: str | None = None


class RevisionGap(Exception):
    """A change frame skipped revisions: the client must catch up again from ``revision``."""

    def __init__(self, revision: int, got: int) -> None:
        super().__init__(f"expected revision {revision + 1}, got {got}")
        self.revision = revision


@dataclass(slots=True)
class PendingEdit:
    """One of the client's own mutations that the confirmed state does not include yet."""

    mutation_id: str
    base_revision: int | None
    patch: dict[str, Any]
    edited_at: int
    seq: int
    shown: dict[str, Any] = field(default_factory=dict)
    secret: bool = False
    sent: bool = False
    acked: int | None = None
    attempts: int = 0

    def __post_init__(self) -> None:
        self.secret = carries_secret(self.patch)
        self.shown = mask_patch(self.patch) if self.secret else self.patch

    def queued(self, key: str) -> QueuedMutation:
        """The form the offline cache keeps."""
        return QueuedMutation(key, self.mutation_id, self.base_revision, self.patch, self.edited_at)


class DocumentState:
    """The client-side state of one document: a user's, or a team's (``doc``).

    ``role`` is the caller's role in a team document once known; ``refused`` is the error
    that ended (or refused) the subscription to it, such as the member's removal.
    """

    def __init__(
        self, user_id: str | None, *, followed: bool = True, doc: str | None = None
    ) -> None:
        self.user_id = user_id
        self.doc = doc
        self.followed = followed
        self.role: str | None = None
        self.refused: LiveSettingsError | None = None
        self.revision: int | None = None
        self.confirmed: dict[str, Any] = default_document()
        self.pending: list[PendingEdit] = []
        self.view: dict[str, Any] = self.confirmed

    @property
    def key(self) -> str:
        """The document's key (in the offline cache too): ``""`` for the token's own user, the
        user id for a service's followed users, ``team:<team_id>`` for a team's document."""
        return self.doc or self.user_id or ""

    @property
    def unacked(self) -> list[PendingEdit]:
        """Pending edits the server has not acknowledged, in order."""
        return [p for p in self.pending if p.acked is None]

    # -- local ----------------------------------------------------------------------------
    def restore(self, cached: CachedDocument | None, queued: list[QueuedMutation], seq: int) -> int:
        """Load the cached state and queue; return the next sequence number."""
        if cached is not None:
            self.revision = cached.revision
            self.confirmed = cached.settings
        for item in queued:
            self.pending.append(
                PendingEdit(item.mutation_id, item.base_revision, item.patch, item.edited_at, seq)
            )
            seq += 1
        self._recompute()
        return seq

    def edit(
        self, patch: dict[str, Any], mutation_id: str, edited_at: int, seq: int
    ) -> tuple[PendingEdit, Change]:
        """Record a local edit (already validated) and show it at once."""
        pending = PendingEdit(mutation_id, self.revision, patch, edited_at, seq)
        self.pending.append(pending)
        self.view = apply_patch(self.view, pending.shown)
        change = Change(
            ChangeOrigin.LOCAL,
            copy_json(pending.shown),
            self.view,
            mutation_id=mutation_id,
            user_id=self.user_id,
            doc=self.doc,
        )
        return pending, change

    # -- from the server ------------------------------------------------------------------
    def on_snapshot(self, revision: int, settings: dict[str, Any]) -> Change | None:
        """The server sent the whole state: edits it includes leave, the others stay on top.

        A first load that shows nothing new is no event; a reset always is.
        """
        before = self.view
        reset = self.revision is not None
        self.revision = revision
        self.confirmed = settings
        self.pending = [p for p in self.pending if p.acked is None or p.acked > revision]
        self._recompute()
        patch = diff(before, self.view)
        if not (patch or reset):
            return None
        return Change(
            ChangeOrigin.SNAPSHOT,
            patch,
            self.view,
            revision=revision,
            user_id=self.user_id,
            doc=self.doc,
            reset=reset,
        )

    def on_change(
        self, frame: ChangeFrame | Mapping[str, Any]
    ) -> tuple[Change | None, PendingEdit | None]:
        """Apply a ``change`` frame; return the event (if any) and the own edit it confirms.

        A revision already seen is ignored (None, None); a skipped one raises
        :class:`RevisionGap`.
        """
        if not isinstance(frame, ChangeFrame):
            frame = ChangeFrame.from_dict(frame)
        revision = frame.revision
        if self.revision is not None:
            if revision <= self.revision:
                return None, None
            if revision != self.revision + 1:
                raise RevisionGap(self.revision, revision)
        before = self.view
        self.confirmed = apply_patch(self.confirmed, frame.patch)
        self.revision = revision
        mine: PendingEdit | None = None
        kept: list[PendingEdit] = []
        for p in self.pending:
            if p.mutation_id == frame.mutation_id:
                mine = p
            elif p.acked is None or p.acked > revision:
                kept.append(p)
        self.pending = kept
        self._recompute()
        if mine is not None and self.view == before:
            return None, mine  # your own edit, committed as shown: nothing new to tell
        change = Change(
            ChangeOrigin.REMOTE,
            frame.patch if mine is None else diff(before, self.view),
            self.view,
            revision=revision,
            mutation_id=frame.mutation_id,
            client_id=frame.client_id,
            committed_at=frame.committed_at,
            conflicts=list(frame.conflicts),
            user_id=self.user_id,
            doc=self.doc,
        )
        return change, mine

    def on_ack(self, mutation_id: str, revision: int) -> tuple[PendingEdit | None, Change | None]:
        """Mark an edit acknowledged; it leaves once the confirmed state includes ``revision``."""
        found = self._find(mutation_id)
        if found is None:
            return None, None  # a repeated ack, or an edit a change frame already confirmed
        found.acked = revision
        if self.followed and (self.revision is None or revision > self.revision):
            return found, None  # its change frame is on the way
        return found, self._drop(found, ChangeOrigin.REMOTE)

    def on_reject(self, mutation_id: str) -> tuple[PendingEdit | None, Change | None]:
        """The server refused an edit: forget it and undo its effect on the view."""
        found = self._find(mutation_id)
        if found is None:
            return None, None
        return found, self._drop(found, ChangeOrigin.ROLLBACK)

    def drop_pending(self) -> tuple[list[PendingEdit], Change | None]:
        """The document is out of reach (its member was removed): forget every pending edit
        and undo their effect on the view."""
        dropped, before = self.pending, self.view
        self.pending = []
        self._recompute()
        if self.view == before:
            return dropped, None
        change = Change(
            ChangeOrigin.ROLLBACK,
            diff(before, self.view),
            self.view,
            revision=self.revision,
            user_id=self.user_id,
            doc=self.doc,
        )
        return dropped, change

    def disconnected(self) -> None:
        """The connection ended: everything unacknowledged must be sent again."""
        for p in self.pending:
            if p.acked is None:
                p.sent = False

    # -- helpers --------------------------------------------------------------------------
    def _find(self, mutation_id: str) -> PendingEdit | None:
        return next((p for p in self.pending if p.mutation_id == mutation_id), None)

    def _drop(self, pending: PendingEdit, origin: ChangeOrigin) -> Change | None:
        before = self.view
        self.pending.remove(pending)
        self._recompute()
        if self.view == before:
            return None
        return Change(
            origin,
            diff(before, self.view),
            self.view,
            revision=self.revision,
            mutation_id=pending.mutation_id,
            user_id=self.user_id,
            doc=self.doc,
        )

    def _recompute(self) -> None:
        view = self.confirmed
        for p in self.pending:
            view = apply_patch(view, p.shown)
        self.view = view


class Documents(dict[str, DocumentState]):
    """The documents a client holds, by key, and questions about all their pending edits."""

    def edits(self) -> Iterator[tuple[DocumentState, PendingEdit]]:
        """Every pending edit, with its document."""
        for doc in self.values():
            for p in doc.pending:
                yield doc, p

    def pending_ids(self) -> frozenset[str]:
        """The mutation ids of every pending edit."""
        return frozenset(p.mutation_id for _, p in self.edits())

    def unsaved(self) -> int:
        """How many edits the server has not acknowledged (queued or in flight)."""
        return sum(1 for _, p in self.edits() if p.acked is None)

    def in_flight(self) -> bool:
        """Whether an edit was sent and not acknowledged yet."""
        return any(p.sent and p.acked is None for _, p in self.edits())

    def unsent(self) -> list[tuple[DocumentState, PendingEdit]]:
        """The edits to send, in the order they were made."""
        edits = (item for item in self.edits() if not item[1].sent and item[1].acked is None)
        return sorted(edits, key=lambda item: item[1].seq)

    def owner(self, mutation_id: str | None) -> tuple[DocumentState, PendingEdit] | None:
        """The pending edit ``mutation_id`` and its document, if it is pending."""
        return next((item for item in self.edits() if item[1].mutation_id == mutation_id), None)

    def disconnected(self) -> None:
        """The connection ended: everything unacknowledged must be sent again."""
        for doc in self.values():
            doc.disconnected()
