"""``postgres_changes`` on the seed's table: the bindings a channel joins with, who may hold
them, and the events a committed change becomes. Pure functions over plain data.

A binding is what supabase-js sends in ``config.postgres_changes`` for each
``.on('postgres_changes', {event, schema, table, filter}, cb)``. livesettings streams one table,
``public.user_preferences``, one user at a time: a binding must name that table and filter
``user_id=eq.<user id>``. The join's answer echoes each binding verbatim with an integer ``id``
(Realtime's ``:erlang.phash2`` of the binding: the same binding gets the same id), which
supabase-js matches against the bindings it sent, in order.

Each committed change becomes, per group of bindings that want it, the payload Realtime sends::

    {"ids": [binding ids], "data": {"schema", "table", "commit_timestamp", "type",
                                     "columns", "record", "old_record", "errors": null}}

``record`` is the whole row after the change (INSERT, UPDATE); ``old_record`` holds the primary
key only (UPDATE, DELETE), as Realtime sends it for a table without ``REPLICA IDENTITY FULL``.
A binding with ``select`` gets those columns and the primary key.

Refusals are :class:`~livesettings.errors.LiveSettingsError` whose message is the ``reason``
of the join's error reply, worded as Realtime words its own (``"Code: message"``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ...errors import BadRequest, Forbidden
from .rows import COLUMN_NAMES, COLUMNS

__all__ = [
    "CHANGE_TYPES",
    "MAX_BINDINGS",
    "SCHEMA",
    "TABLE",
    "Binding",
    "ChangeType",
    "authorize",
    "binding_id",
    "change_payloads",
    "parse_bindings",
]

SCHEMA: Final = "public"
TABLE: Final = "user_preferences"
PRIMARY_KEY: Final = "id"
MAX_BINDINGS: Final = 100
"""Bindings one channel may hold (each is checked on every change of its user)."""

ChangeType = Literal["INSERT", "UPDATE", "DELETE"]
CHANGE_TYPES: Final[tuple[ChangeType, ...]] = ("INSERT", "UPDATE", "DELETE")
_EVENTS: Final = ("*", *CHANGE_TYPES)
_FILTER_PREFIX: Final = "user_id=eq."
_MAX_USER_ID: Final = 128  # DESIGN §2


@dataclass(frozen=True, slots=True)
class Binding:
    """One ``postgres_changes`` binding of a channel: who it follows and which changes."""

    raw: dict[str, Any]  # as the client sent it: echoed verbatim in the join's reply
    id: int
    event: str  # "*", "INSERT", "UPDATE" or "DELETE"
    user_id: str
    select: tuple[str, ...] | None = None

    def echo(self) -> dict[str, Any]:
        """The binding as the join's reply lists it: verbatim, plus its ``id``."""
        return {**self.raw, "id": self.id}

    def wants(self, user_id: str, change: ChangeType) -> bool:
        """Whether a ``change`` of ``user_id``'s row is for this binding."""
        return self.user_id == user_id and self.event in ("*", change)


def binding_id(raw: dict[str, Any]) -> int:
    """A binding's id: a stable 27-bit hash of its canonical JSON (the range of Realtime's
    ``phash2``), so the same binding always gets the same id.

    >>> a = binding_id({"event": "*", "schema": "public"})
    >>> a == binding_id({"schema": "public", "event": "*"}), 0 <= a < 2**27
    (True, True)
    """
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return zlib.crc32(canonical.encode("utf-8")) & 0x7FFFFFF


def _invalid(why: str) -> BadRequest:
    return BadRequest(f"InvalidJoinPayload: {why}", code="invalid_join_payload")


def _unsupported(why: str) -> BadRequest:
    return BadRequest(
        "RealtimeDisabledForConfiguration: Unable to subscribe to changes with given "
        f"parameters: {why}. livesettings streams {SCHEMA}.{TABLE} with the filter "
        f"{_FILTER_PREFIX}<user id> only",
        code="unsupported_binding",
    )


def _parse_one(raw: Any) -> Binding:
    if not isinstance(raw, dict):
        raise _invalid("each postgres_changes binding must be an object")
    event = raw.get("event")
    if not isinstance(event, str) or event.upper() not in _EVENTS:
        raise _invalid("postgres_changes event must be one of *, INSERT, UPDATE, DELETE")
    schema, table, filter_ = raw.get("schema"), raw.get("table"), raw.get("filter")
    if schema != SCHEMA:
        raise _unsupported(f"schema {str(schema)[:64]!r}")
    if table != TABLE:
        raise _unsupported(f"table {str(table)[:64]!r}")
    if not isinstance(filter_, str) or not filter_.startswith(_FILTER_PREFIX):
        shown = "none" if filter_ is None else repr(str(filter_)[:64])
        raise _unsupported(f"filter {shown}")
    user_id = filter_[len(_FILTER_PREFIX) :]
    if not user_id or len(user_id) > _MAX_USER_ID:
        raise _unsupported(f"a user id of 1 to {_MAX_USER_ID} characters in the filter")
    select = raw.get("select")
    columns: tuple[str, ...] | None = None
    if select is not None:
        if not isinstance(select, list) or not all(isinstance(c, str) for c in select):
            raise _invalid("postgres_changes select must be a list of column names")
        unknown = [c for c in select if c not in COLUMN_NAMES]
        if unknown:
            raise _unsupported(f"unknown column {unknown[0][:64]!r} in select")
        columns = tuple(select)
    return Binding(raw, binding_id(raw), event.upper(), user_id, columns)


def parse_bindings(config: Any) -> list[Binding]:
    """The ``postgres_changes`` bindings of a join's ``config`` (none: an empty list).

    ``BadRequest`` whose message is the join's error reason for a malformed or unsupported
    binding (another table or schema, no filter or another kind of filter).
    """
    if config is None:
        return []
    if not isinstance(config, dict):
        raise _invalid("config must be an object")
    raw = config.get("postgres_changes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("config.postgres_changes must be a list")
    items = [item for item in raw if item is not None]  # Realtime drops nulls too
    if len(items) > MAX_BINDINGS:
        raise _invalid(f"at most {MAX_BINDINGS} postgres_changes bindings per channel")
    return [_parse_one(item) for item in items]


def authorize(bindings: Iterable[Binding], user_id: str, *, service: bool) -> None:
    """Refuse (``Forbidden``) a binding that follows another user than ``user_id``, the
    token's own; a service token may follow anyone."""
    if service:
        return
    for binding in bindings:
        if binding.user_id != user_id:
            raise Forbidden(
                "Unauthorized: You do not have permissions to read the changes of another "
                f"user: a user token may only follow {_FILTER_PREFIX}<its own user id>",
                code="forbidden_binding",
            )


def _project(row: dict[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    if select is None:
        return row
    return {k: v for k, v in row.items() if k == PRIMARY_KEY or k in select}


def _columns(select: tuple[str, ...] | None) -> list[dict[str, str]]:
    if select is None:
        return [dict(c) for c in COLUMNS]
    return [dict(c) for c in COLUMNS if c["name"] == PRIMARY_KEY or c["name"] in select]


def change_payloads(
    bindings: Sequence[Binding],
    user_id: str,
    change: ChangeType,
    row: dict[str, Any],
    *,
    commit_timestamp: str,
) -> list[dict[str, Any]]:
    """The ``postgres_changes`` payloads of one change of ``user_id``'s ``row`` (the row after
    it; for a DELETE, the row before), one per distinct ``select`` among the bindings that want
    it, in the order of their first binding; none when no binding wants it."""
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for binding in bindings:
        if binding.wants(user_id, change):
            ids = groups.setdefault(binding.select, [])
            if binding.id not in ids:
                ids.append(binding.id)
    payloads: list[dict[str, Any]] = []
    for select, ids in groups.items():
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "table": TABLE,
            "commit_timestamp": commit_timestamp,
            "type": change,
            "columns": _columns(select),
        }
        if change != "DELETE":
            data["record"] = _project(row, select)
        if change != "INSERT":
            data["old_record"] = {PRIMARY_KEY: row.get(PRIMARY_KEY)}
        data["errors"] = None
        payloads.append({"ids": ids, "data": data})
    return payloads
