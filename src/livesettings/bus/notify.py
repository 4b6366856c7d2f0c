"""The bus payload: a compact JSON list of ``[user_id, revision]`` pairs, one codec for all ends.

Ids only, so no secret crosses the bus. The PostgreSQL store sends it with ``pg_notify`` inside
its commit and the PostgreSQL bus parses it; the Redis bus sends and parses the same list.
NOTIFY payloads are split only past :data:`NOTIFY_PAYLOAD_LIMIT` bytes, far under PostgreSQL's
8,000.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from .base import BusEvent

__all__ = [
    "NOTIFY_CHANNEL",
    "NOTIFY_PAYLOAD_LIMIT",
    "decode_events",
    "encode_events",
    "notify_payloads",
    "parse_notify_payload",
]

NOTIFY_CHANNEL: Final = "livesettings"
"""The channel of the one notification per committed group commit."""

NOTIFY_PAYLOAD_LIMIT: Final = 7000
"""Bytes per NOTIFY payload, well under PostgreSQL's 8,000."""


def notify_payloads(
    pairs: Sequence[tuple[str, int]], limit: int = NOTIFY_PAYLOAD_LIMIT
) -> list[str]:
    """``[[user_id, revision], …]`` as JSON, in as few payloads of ≤ ``limit`` bytes as fit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 2
    for user_id, revision in pairs:
        # ASCII-only JSON: the byte length is the string length.
        entry = json.dumps([user_id, revision], separators=(",", ":"))
        if current and size + 1 + len(entry) > limit:
            payloads.append("[" + ",".join(current) + "]")
            current, size = [], 2
        size += len(entry) + (1 if current else 0)
        current.append(entry)
    if current:
        payloads.append("[" + ",".join(current) + "]")
    return payloads


def parse_notify_payload(payload: str | bytes) -> list[tuple[str, int]]:
    """The ``(user_id, revision)`` pairs of one payload; ``ValueError`` if malformed."""
    data = json.loads(payload)
    if not isinstance(data, list):
        raise ValueError("a bus payload is a JSON list")
    pairs: list[tuple[str, int]] = []
    for item in data:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], int)
            or isinstance(item[1], bool)
        ):
            raise ValueError(
                f"a livesettings bus payload holds [user_id, revision] pairs: {item!r}"
            )
        pairs.append((item[0], item[1]))
    return pairs


def encode_events(events: Sequence[BusEvent], limit: int = NOTIFY_PAYLOAD_LIMIT) -> list[str]:
    """The payloads ``[[user_id, revision], …]`` of ``events``, split at ``limit`` bytes."""
    return notify_payloads([(e.user_id, e.revision) for e in events], limit)


def decode_events(payload: str | bytes) -> list[BusEvent]:
    """The events of one payload; ``ValueError`` when it is not a list of id pairs."""
    return [BusEvent(user_id, revision) for user_id, revision in parse_notify_payload(payload)]
