"""The bus payload: a compact JSON list of events, one codec for all ends.

Each event is ``[user_id, revision]``, or ``[user_id, revision, changes]`` when the message
carries the changes that led to ``revision`` in one group commit: a list of ``{"revision",
"patch", "mutation_id", "client_id", "committed_at", "conflicts"}`` — what a ``change`` frame
needs, taken from the change rows, whose patch is the effective, *masked* one (never a
plaintext secret; a row's ``inverse`` never leaves the node). The changes are carried only when
the entry fits ``change_limit`` bytes; else the event names the revision alone and other nodes
read the change log.

The PostgreSQL store sends it with ``pg_notify`` inside its commit and the PostgreSQL bus parses
it; the Redis bus sends and parses the same list. NOTIFY payloads are split past
:data:`NOTIFY_PAYLOAD_LIMIT` bytes, under PostgreSQL's 8,000.

The store's entries end with the committing process's :data:`ORIGIN`
(``[user_id, revision, changes, origin]``): PostgreSQL may deliver that NOTIFY back to the
same process before its writer has answered the mutation, and a change pushed from it then
could overtake the writer's ``ack``; so the bus hands a process's own store notifications on
without their changes (ids only, as before: the writer's own publish brings the rows).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any, Final

from ..store.base import ChangeRow
from .base import BusEvent

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "ORIGIN",
    "change_payloads",
    "decode_events",
    "encode_events",
    "notify_payloads",
    "parse_notify_payload",
]

NOTIFY_CHANNEL: Final = "livesettings"
"""The channel of the one notification per committed group commit."""

NOTIFY_PAYLOAD_LIMIT: Final = 7000
"""Bytes per NOTIFY payload, under PostgreSQL's 8,000."""

ORIGIN: Final = secrets.token_hex(6)
"""This process, in the store's notifications (see the module docstring)."""

# ASCII-only JSON: the byte length of the text is its length.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _pack(entries: Sequence[str], limit: int) -> list[str]:
    """JSON lists of the ``entries`` (JSON texts), as few as fit ``limit`` bytes each."""
    payloads: list[str] = []
    current: list[str] = []
    size = 2
    for entry in entries:
        if current and size + 1 + len(entry) > limit:
            payloads.append("[" + ",".join(current) + "]")
            current, size = [], 2
        size += len(entry) + (1 if current else 0)
        current.append(entry)
    if current:
        payloads.append("[" + ",".join(current) + "]")
    return payloads


def notify_payloads(
    pairs: Sequence[tuple[str, int]], limit: int = NOTIFY_PAYLOAD_LIMIT
) -> list[str]:
    """``[[user_id, revision], …]`` as JSON, in as few payloads of ≤ ``limit`` bytes as fit."""
    return _pack([_ENCODER.encode([user_id, revision]) for user_id, revision in pairs], limit)


def _entry(event: BusEvent, change_limit: int, origin: str | None) -> str:
    """One event's JSON: with its changes when the entry stays within ``change_limit`` bytes."""
    if event.changes:
        carried = [
            {
                "revision": row.revision,
                "patch": row.patch,
                "mutation_id": row.mutation_id,
                "client_id": row.client_id,
                "committed_at": row.committed_at,
                "conflicts": list(row.conflicts),
            }
            for row in event.changes
        ]
        tail = [carried] if origin is None else [carried, origin]
        try:
            entry = _ENCODER.encode([event.user_id, event.revision, *tail])
        except ValueError:  # pragma: no cover - a stored patch is valid JSON
            entry = ""
        if entry and len(entry) + 2 <= change_limit:
            return entry
    return _ENCODER.encode([event.user_id, event.revision])


def encode_events(
    events: Sequence[BusEvent],
    limit: int = NOTIFY_PAYLOAD_LIMIT,
    change_limit: int | None = None,
    origin: str | None = None,
) -> list[str]:
    """The payloads of ``events``, split at ``limit`` bytes; a change is carried when its entry
    fits ``change_limit`` bytes (default ``limit``: a payload of that event alone), marked
    with ``origin`` when given."""
    cap = limit if change_limit is None else change_limit
    return _pack([_entry(event, cap, origin) for event in events], limit)


def change_payloads(changes: Sequence[ChangeRow], limit: int = NOTIFY_PAYLOAD_LIMIT) -> list[str]:
    """What the PostgreSQL store notifies for the changes of one group commit: an entry per
    change, in commit order, marked as this process's (:data:`ORIGIN`)."""
    events = [BusEvent(c.user_id, c.revision, (c,)) for c in changes]
    return encode_events(events, limit, origin=ORIGIN)


def _is_revision(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _changes(user_id: str, revision: int, data: Any) -> tuple[ChangeRow, ...]:
    """The change rows an entry carries, in order up to ``revision``; ``ValueError`` else."""
    if not isinstance(data, list) or not data:
        raise ValueError("carried changes are a non-empty JSON list")
    rows = tuple(_change(user_id, item) for item in data)
    revisions = [row.revision for row in rows]
    if revisions != sorted(set(revisions)) or revisions[-1] != revision:
        raise ValueError("carried changes are in order and end at the event's revision")
    return rows


def _change(user_id: str, data: Any) -> ChangeRow:
    """One carried change row; ``ValueError`` when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("a carried change is a JSON object")
    revision: Any = data.get("revision")
    patch, conflicts = data.get("patch"), data.get("conflicts")
    mutation_id, client_id = data.get("mutation_id"), data.get("client_id")
    committed_at: Any = data.get("committed_at")
    if (
        not isinstance(patch, dict)
        or not isinstance(conflicts, list)
        or not all(isinstance(c, dict) for c in conflicts)
        or not isinstance(mutation_id, str)
        or not isinstance(client_id, str)
        or not _is_revision(committed_at)
        or not _is_revision(revision)
    ):
        raise ValueError("a carried change has revision, patch, ids, committed_at, conflicts")
    conflicted = tuple(conflicts)
    return ChangeRow(user_id, revision, patch, mutation_id, client_id, committed_at, conflicted)


def _entries(payload: str | bytes) -> list[tuple[str, int, Any, Any]]:
    """``(user_id, revision, changes or None, origin or None)`` of each entry."""
    data = json.loads(payload)
    if not isinstance(data, list):
        raise ValueError("a bus payload is a JSON list")
    entries: list[tuple[str, int, Any, Any]] = []
    for item in data:
        if (
            not isinstance(item, list)
            or len(item) not in (2, 3, 4)
            or not isinstance(item[0], str)
            or not _is_revision(item[1])
            or (len(item) == 4 and not isinstance(item[3], str))
        ):
            raise ValueError(
                f"a livesettings bus payload holds [user_id, revision] pairs: {item!r:.200}"
            )
        rest = [*item[2:], None, None]
        entries.append((item[0], item[1], rest[0], rest[1]))
    return entries


def parse_notify_payload(payload: str | bytes) -> list[tuple[str, int]]:
    """The ``(user_id, revision)`` pairs of one payload; ``ValueError`` if malformed."""
    return [(user_id, revision) for user_id, revision, _, _ in _entries(payload)]


def decode_events(payload: str | bytes, *, local: str | None = None) -> list[BusEvent]:
    """The events of one payload, with the changes carried, except in entries marked with the
    origin ``local`` (ids only); ``ValueError`` when malformed."""
    events: list[BusEvent] = []
    for user_id, revision, data, origin in _entries(payload):
        changes = () if data is None else _changes(user_id, revision, data)
        if local is not None and origin == local:
            changes = ()
        events.append(BusEvent(user_id, revision, changes))
    return events
