"""The client's events besides changes — status, API keys, conflicts, errors — and their types.

:class:`EditConflict` and :class:`ErrorEvent` are what ``on_conflict`` and ``on_error``
listeners receive, with the fields of the browser client's ``conflict`` and ``error`` events.
:class:`Events` holds the listeners and calls them (a coroutine function's result is run as a
task; a failing callback is logged, never raised into the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

from livesettings.document import copy_json
from livesettings.errors import LiveSettingsError, ValidationError
from livesettings.protocol import ChangeFrame

from .handles import Subscription
from .state import Change
from .status import Status
from .teams import Membership

__all__ = [
    "ApiKeysCallback",
    "ChangeCallback",
    "ConflictCallback",
    "EditConflict",
    "ErrorCallback",
    "ErrorEvent",
    "Events",
    "MembershipCallback",
    "StatusCallback",
]

log = logging.getLogger("livesettings.client")

T = TypeVar("T")
Kept: TypeAlias = Literal["yours", "theirs", "partial"]


@dataclass(frozen=True, slots=True)
class EditConflict:
    """An edit of this client that met a concurrent edit of another client at ``path``.

    ``mine`` is this client's value and ``winner`` the value the document kept; ``lost`` is
    True when this client's value did not survive. ``kept`` is the server's word from this
    client's side: ``"yours"`` (this edit won), ``"theirs"`` (it lost) or ``"partial"`` (a
    delete that left newer concurrent values under ``path``). Told for this client's edits
    when acknowledged, and when another client's later edit overwrote one of them (then
    ``revision`` and ``mutation_id`` are that edit's, and ``mine`` is None after a partial
    delete). ``user_id`` names the document for service clients (None: the token's own user).
    """

    path: str
    mine: Any
    winner: Any
    lost: bool
    kept: Kept
    revision: int
    mutation_id: str | None
    user_id: str | None = None

    @classmethod
    def from_ack(
        cls, report: Mapping[str, Any], revision: int, mutation_id: str, user_id: str | None
    ) -> EditConflict:
        """One conflict of an ``ack`` (or the writer's ``change``) for this client's edit."""
        kept = _kept(report)
        lost = kept == "theirs"
        mine = report.get("yours")
        winner = report.get("theirs") if lost else mine
        return cls(report["path"], mine, winner, lost, kept, revision, mutation_id, user_id)

    @classmethod
    def overwritten(
        cls, report: Mapping[str, Any], revision: int, mutation_id: str | None, user_id: str | None
    ) -> EditConflict:
        """One conflict of another client's ``change`` whose ``lost_by`` is this client."""
        partial = _kept(report) == "partial"
        mine = None if partial else report.get("theirs")
        winner = None if partial else report.get("yours")
        return cls(report["path"], mine, winner, True, "theirs", revision, mutation_id, user_id)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error the server reported: most often an edit it refused.

    A refused edit is dropped (its effect undone, its handle raises ``error``), counted in
    ``Status.error_count`` and told here, with the field it names in ``path`` (None when the
    error is about the document as a whole, such as ``too_large``); it does not set
    ``Status.error``, which is kept for the connection and the client as a whole. ``doc``
    names the team document (``team:<team_id>``) an error is about: an edit of it, or its
    subscription, refused (not a member) or ended (the member was removed).
    """

    code: str
    message: str
    path: str | None
    mutation_id: str | None
    user_id: str | None
    error: LiveSettingsError
    doc: str | None = None

    @classmethod
    def of(
        cls,
        error: LiveSettingsError,
        mutation_id: str | None,
        user_id: str | None,
        doc: str | None = None,
    ) -> ErrorEvent:
        """The event telling ``error`` (about edit ``mutation_id`` of ``user_id``'s document,
        or of the team document ``doc``)."""
        path = error.path if isinstance(error, ValidationError) else None
        if not path and isinstance(error.details, dict):
            found = error.details.get("path")
            path = found if isinstance(found, str) else None
        return cls(error.code, error.message, path or None, mutation_id, user_id, error, doc)


ChangeCallback: TypeAlias = Callable[[Change], object]
"""A subscriber: called with each :class:`Change`; may be a coroutine function."""
StatusCallback: TypeAlias = Callable[[Status], object]
"""A status listener: called with each new :class:`Status`; may be a coroutine function."""
ApiKeysCallback: TypeAlias = Callable[[dict[str, Any]], object]
"""Called with the masked ``api_keys`` (``{name: {"set", "last4", "updated_at"}}``)."""
ConflictCallback: TypeAlias = Callable[[EditConflict], object]
"""Called with each :class:`EditConflict`; may be a coroutine function."""
ErrorCallback: TypeAlias = Callable[[ErrorEvent], object]
"""Called with each :class:`ErrorEvent`; may be a coroutine function."""
MembershipCallback: TypeAlias = Callable[[Membership], object]
"""Called with each :class:`~.teams.Membership`; may be a coroutine function."""


class Events:
    """The listeners of one client (besides change subscribers), and the calls to them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.status: list[StatusCallback] = []
        self.api_keys: list[ApiKeysCallback] = []
        self.conflict: list[ConflictCallback] = []
        self.error: list[ErrorCallback] = []
        self.membership: list[MembershipCallback] = []
        self._keys: Any = None

    def listen(
        self, listeners: list[Callable[[T], object]], callback: Callable[[T], object]
    ) -> Subscription:
        """Add ``callback`` to ``listeners``; the subscription removes it."""
        listeners.append(callback)
        return Subscription(lambda: discard(listeners, callback))

    def emit(self, listeners: Iterable[Callable[[T], object]], arg: T) -> None:
        """Call each listener with ``arg``."""
        for callback in list(listeners):
            self.call(callback, arg)

    def call(self, callback: Callable[[T], object], arg: T) -> None:
        """Call ``callback(arg)``; a coroutine it returns runs as a task of the client."""
        try:
            result = callback(arg)
        except Exception:
            log.exception("a livesettings callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self.tasks.add(task)
            task.add_done_callback(self._task_done)

    def seen_keys(self, view: Mapping[str, Any], *, tell: bool = True) -> None:
        """The followed document's view is now ``view``: tell when its ``api_keys`` changed
        (always masked: the view never holds a plaintext secret)."""
        keys = view.get("api_keys") or {}
        if keys == self._keys:
            return
        self._keys = copy_json(keys)
        if tell:
            for callback in list(self.api_keys):
                self.call(callback, copy_json(keys))

    def acked(
        self, reports: Iterable[Any], revision: int, mutation_id: str, user_id: str | None
    ) -> None:
        """Tell the conflicts the server reported for this client's edit ``mutation_id``."""
        for report in reports:
            if isinstance(report, Mapping) and isinstance(report.get("path"), str):
                if _same_values(report):
                    continue
                conflict = EditConflict.from_ack(report, revision, mutation_id, user_id)
                self.emit(self.conflict, conflict)

    def overwritten(self, frame: ChangeFrame, client_id: str | None, user_id: str | None) -> None:
        """Tell the conflicts of another client's ``change`` that overwrote this client's
        values (``lost_by`` is ``client_id``)."""
        if client_id is None or frame.client_id == client_id:
            return
        for report in frame.conflicts:
            if report.get("lost_by") != client_id or not isinstance(report.get("path"), str):
                continue
            if not _same_values(report):
                conflict = EditConflict.overwritten(
                    report, frame.revision, frame.mutation_id, user_id
                )
                self.emit(self.conflict, conflict)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a livesettings callback failed", exc_info=task.exception())


def discard(items: list[Any], item: Any) -> None:
    """Remove ``item`` from ``items`` if it is there."""
    with contextlib.suppress(ValueError):
        items.remove(item)


def _kept(report: Mapping[str, Any]) -> Kept:
    kept = report.get("kept")
    return kept if kept in ("yours", "theirs", "partial") else "yours"


def _same_values(report: Mapping[str, Any]) -> bool:
    """Both edits wrote the same value: nobody lost anything, so nothing is told. Secrets are
    compared by their masks only, which may match for different keys: those are always told."""
    if report.get("kept") == "partial" or str(report["path"]).startswith("/api_keys/"):
        return False
    mine, theirs = report.get("yours"), report.get("theirs")
    return json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)
