"""Removing an account: the one rule that ``livesettings user remove``, ``DELETE /v1/account``
and the service route ``DELETE /v1/users/{user_id}`` share.

The user leaves every team first; a team's last owner is refused (409 ``last_owner``, and
nothing changes: hand the team over or delete it). Then the store deletes the account row,
the document, the change log, the mutation ids, the refresh tokens and the data key — without
its wrapped data key, no copy of a sealed secret (a backup, a replica) opens any more once the
master keys that wrapped it are retired. The user's sessions end: a session revocation is
recorded, which every node reads within a second or two to refuse the user's access tokens and
close their sockets with 4001.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .audit import audit
from .errors import NotFound
from .store import Store

__all__ = ["EndSessions", "Removal", "remove_account"]

EndSessions = Callable[[str], Awaitable[object]]
"""Ends every session of a user id: revokes its refresh tokens and records a session
revocation (a server also closes its own sockets of the user at once)."""


@dataclass(frozen=True, slots=True)
class Removal:
    """What :func:`remove_account` did: the teams the user left, and whether anything of the
    user was stored (a user of an identity provider who never wrote has nothing)."""

    user_id: str
    teams_left: tuple[str, ...]
    removed: bool


async def remove_account(
    store: Store,
    user_id: str,
    end_sessions: EndSessions,
    *,
    known: bool,
    by: str,
    address: str | None = None,
) -> Removal:
    """Remove the account ``user_id`` with everything stored of it, and end its sessions.

    ``known``: the caller knows the account exists (a built-in user's row, or the token's own
    subject); its sessions end *before* the removal, so that no token outlives it. Otherwise
    (an id typed by an operator) they end after it, and ``NotFound`` is raised — with no
    revocation recorded — when nothing of that id was stored. ``by`` names who removed it in
    the audit line (``self``, ``service:<sub>``, ``cli``), ``address`` the caller's.

    ``Conflict`` ``last_owner``: the user alone owns a team; nothing was changed.
    """
    # First out of every team: refused (nothing removed) for a team's last owner.
    left = tuple(await store.teams.leave_all(user_id))
    if known:
        await end_sessions(user_id)
    removed = await store.remove_user(user_id)
    if not known:
        if not (removed or left):
            raise NotFound(f"no user {user_id!r}")
        await end_sessions(user_id)  # a user of an identity provider, found only now
    audit(
        "account_removed",
        user_id=user_id,
        by=by,
        address=address,
        teams_left=len(left),
        found=removed,
    )
    return Removal(user_id, left, removed)
