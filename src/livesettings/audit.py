"""Audit lines: who signed in, who failed, which tokens were refused, who read a secret.

Each event is one log record of the ``livesettings.audit`` logger whose message is one JSON
object, ``{"ts": …, "event": …, …}`` — easy to grep and to ship. ``ts`` is the time of the
event in RFC 3339, UTC, to the millisecond (``2026-12-07T05:04:23.123Z``). Fields are names,
ids, addresses and reasons, never a secret, a password or a token: :func:`audit` refuses field
names that would carry one, and callers pass ids rather than what a user typed (a password
typed into the username box must not end up in a log).

``LIVESETTINGS_AUDIT_LOG`` names a file that receives the same lines (mode 0600), so that the
trail outlives the process log and includes the CLI's own events (``keys rotate``); with SQLite
it defaults to ``<data dir>/audit.log``, and ``-`` turns the file off.

A running server also keeps its last 100 events in memory (:class:`AuditRing`), for ``GET
/v1/admin/audit``; the CLI does not.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from .document import rfc3339

__all__ = [
    "AUDIT_LOGGER",
    "AuditRing",
    "audit",
    "audit_trail",
    "close_audit_file",
    "open_audit_file",
    "rfc3339_ms",
]

AUDIT_LOGGER: Final = "livesettings.audit"
_log = logging.getLogger(AUDIT_LOGGER)

# Field names that could only ever carry what an audit line must not hold.
_REFUSED: Final = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "password",
        "new_password",
        "current_password",
        "secret",
        "value",
        "plaintext",
        "master_key",
        "master_keys",
        "authorization",
    }
)
_MAX_TEXT: Final = 200  # attacker-controlled text (a rejection reason, an address) is cut

Field = str | int | float | bool | None


def rfc3339_ms(seconds: float) -> str:
    """Unix ``seconds`` as RFC 3339 in UTC with milliseconds.

    >>> rfc3339_ms(1764349200.1239)
    '2025-11-28T17:00:00.123Z'
    """
    return rfc3339(int(seconds * 1000))


def audit(event: str, *, clock: Callable[[], float] = time.time, **fields: Field) -> None:
    """Log one audit event as a JSON object: ``ts`` (from ``clock``), ``event``, then
    ``fields`` in order."""
    refused = _REFUSED.intersection(fields)
    if refused:
        raise ValueError(f"audit lines never carry {', '.join(sorted(refused))}")
    if "ts" in fields:
        raise ValueError("ts is the time of the event, set by audit() itself")
    record: dict[str, Field] = {"ts": rfc3339_ms(clock()), "event": event}
    for name, value in fields.items():
        record[name] = value[:_MAX_TEXT] if isinstance(value, str) else value
    # ensure_ascii: control characters and odd Unicode in a forwarded address stay escaped,
    # so one event is always exactly one line.
    _log.info(json.dumps(record, ensure_ascii=True, separators=(",", ":")))
    for ring in tuple(_rings):  # a server may start or stop meanwhile
        ring.add(record)


_rings: list[AuditRing] = []


class AuditRing:
    """The last ``size`` audit events of this process, newest last, for ``GET
    /v1/admin/audit``: a bounded in-memory sink a server registers while it runs (the
    CLI does not). Each event is the same ``{"ts", "event", …}`` object the line holds.
    """

    def __init__(self, size: int = 100) -> None:
        self._lines: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()  # audit() is also called from worker threads

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record``, dropping the oldest beyond the size."""
        with self._lock:
            self._lines.append(record)

    def open(self) -> None:
        """Start receiving audit events (idempotent)."""
        if self not in _rings:
            _rings.append(self)

    def close(self) -> None:
        """Stop receiving them; the lines held so far stay readable."""
        if self in _rings:
            _rings.remove(self)

    def recent(self) -> list[dict[str, Any]]:
        """A copy of the lines held, oldest first."""
        with self._lock:
            return [dict(line) for line in self._lines]


class _MessageOnly(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def open_audit_file(path: str | os.PathLike[str] | None) -> logging.Handler | None:
    """Also append every audit line to ``path`` (created 0600); the handler, to remove later.

    ``None`` when no path is given.
    """
    if not path:
        return None
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.close(fd)  # created with the right mode; FileHandler reopens it for appending
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(_MessageOnly())
    handler.setLevel(logging.INFO)
    _log.addHandler(handler)
    if _log.level == logging.NOTSET or _log.level > logging.INFO:
        _log.setLevel(logging.INFO)
    return handler


def close_audit_file(handler: logging.Handler | None) -> None:
    """Undo :func:`open_audit_file`."""
    if handler is not None:
        _log.removeHandler(handler)
        handler.close()


@contextmanager
def audit_trail(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """For a CLI command: audit lines go to ``path`` meanwhile, or to stderr without one."""
    level = _log.level
    handler = open_audit_file(path)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_MessageOnly())
        _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    try:
        yield
    finally:
        _log.setLevel(level)
        close_audit_file(handler)
