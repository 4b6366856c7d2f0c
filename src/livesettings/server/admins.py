"""Who is an admin, as a node answers it: a built-in user with the admin flag (the store's
``admins`` table), or an identity provider's token carrying ``LIVESETTINGS_ADMIN_CLAIM``.

The flag is read from the store at most once per :data:`FLAG_TTL` seconds per user, so a
revoked admin loses access within that time on every node without a bus message. Admin
accesses are audited, at most once per admin and path per :data:`AUDIT_EVERY` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from ..audit import audit
from ..auth import Claims, has_claim
from ..config import parse_admin_claim
from ..store import Store

__all__ = ["AUDIT_EVERY", "FLAG_TTL", "Admins"]

FLAG_TTL: Final = 2.0
"""Seconds a user's admin flag is cached (a revoked admin loses access within it)."""

AUDIT_EVERY: Final = 60.0
"""Seconds between two ``admin_access`` audit lines of one admin for one path."""

_K = TypeVar("_K")
_V = TypeVar("_V")

_MAX_ENTRIES: Final = 10_000  # flags and audit marks kept; older ones are dropped beyond it


class Admins:
    """The admin check of one node: the flag cache and the access audit throttle."""

    def __init__(self, store: Store, claim: str | None, *, monotonic: Callable[[], float]) -> None:
        self._store = store
        self._claim = parse_admin_claim(claim) if claim else None
        self._monotonic = monotonic
        self._flags: dict[str, tuple[float, bool]] = {}  # user id -> (read at, admin)
        self._audited: dict[tuple[str, str], float] = {}  # (user id, path) -> last line

    async def is_admin(self, claims: Claims) -> bool:
        """Whether the token's holder is an admin. A service token never is."""
        if claims.is_service or not claims.sub:
            return False
        if not claims.builtin:
            return self._claim is not None and has_claim(claims.raw, self._claim)
        now = self._monotonic()
        cached = self._flags.get(claims.sub)
        if cached is not None and now - cached[0] < FLAG_TTL:
            return cached[1]
        flag = await self._store.is_admin(claims.sub)
        _bounded(self._flags, now, FLAG_TTL, lambda entry: entry[0])
        self._flags[claims.sub] = (now, flag)
        return flag

    def forget(self, user_id: str) -> None:
        """Drop a cached flag (this node changed it, or removed the user)."""
        self._flags.pop(user_id, None)

    def note_access(self, user_id: str, path: str) -> None:
        """Audit an admin's access to ``path``, once per :data:`AUDIT_EVERY` seconds."""
        now = self._monotonic()
        last = self._audited.get((user_id, path))
        if last is not None and now - last < AUDIT_EVERY:
            return
        _bounded(self._audited, now, AUDIT_EVERY, lambda at: at)
        self._audited[(user_id, path)] = now
        audit("admin_access", user_id=user_id, path=path)


def _bounded(entries: dict[_K, _V], now: float, ttl: float, read_at: Callable[[_V], float]) -> None:
    """Keep ``entries`` under :data:`_MAX_ENTRIES`: drop the stale ones, then the oldest
    down to nine tenths (so that the next inserts do not scan again)."""
    if len(entries) < _MAX_ENTRIES:
        return
    for key in [k for k, v in entries.items() if now - read_at(v) >= ttl]:
        del entries[key]
    while len(entries) >= _MAX_ENTRIES * 9 // 10:
        del entries[next(iter(entries))]
