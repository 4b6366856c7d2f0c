"""What a store keeps of teams, and the interface both backends implement (``store.teams``).

A team's document itself is stored like a personal one, under the key ``team:<team_id>``
(:mod:`livesettings.teams`), through the ordinary document methods and the one group commit.
Here are only the team rows and their memberships. Every method that changes a membership
applies the role rules of :mod:`livesettings.teams` inside its own transaction, reading the
actor's role there, so two concurrent requests cannot, say, both remove the last owner.

``actor`` is the user acting (their role decides); ``None`` is an operator (the CLI), who may
do anything except leave a team without an owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import Conflict, NotFound
from ..teams import check_delete, check_remove, check_set_role, team_not_found

__all__ = [
    "MemberRow",
    "MembershipChange",
    "TeamRow",
    "TeamStore",
    "TeamTx",
    "create_in",
    "delete_in",
    "leave_all_in",
    "limit_reached",
    "remove_in",
    "set_in",
]


@dataclass(frozen=True, slots=True)
class TeamRow:
    """A team, with the role of the user it was read for (None for an operator's listing)."""

    team_id: str
    name: str
    created_at: str
    role: str | None = None
    members: int | None = None


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    role: str
    added_at: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """What a membership method did: the member's role before and after (None: not one)."""

    team_id: str
    user_id: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def limit_reached(what: str, limit: int) -> Conflict:
    return Conflict(
        f"{what} (the limit is {limit})", code="limit_reached", details={"limit": limit}
    )


class TeamStore(Protocol):
    """Teams and memberships on one backend."""

    async def create_team(
        self, team_id: str, name: str, owner_id: str, *, max_teams: int
    ) -> TeamRow:
        """A new team whose only member is ``owner_id``, as owner; 409 ``limit_reached`` when
        the owner already belongs to ``max_teams`` teams."""

    async def teams_of(self, user_id: str) -> list[TeamRow]:
        """The user's teams with their role, by name."""

    async def all_teams(self) -> list[TeamRow]:
        """Every team with its member count (operators)."""

    async def membership(self, team_id: str, user_id: str) -> TeamRow | None:
        """The team as ``user_id`` sees it (with their role); None when not a member."""

    async def members(self, team_id: str, actor: str | None) -> list[MemberRow]:
        """The members with their roles (and usernames of built-in users); 404 unless
        ``actor`` is a member."""

    async def set_member(
        self,
        team_id: str,
        actor: str | None,
        user_id: str,
        role: str,
        *,
        max_members: int,
        max_teams: int,
    ) -> MembershipChange:
        """Add ``user_id`` with ``role``, or change their role (404, 403, 409 ``last_owner``,
        409 ``limit_reached``)."""

    async def remove_member(
        self, team_id: str, actor: str | None, user_id: str
    ) -> MembershipChange:
        """Remove a member (anyone may remove themselves; 409 ``last_owner``)."""

    async def delete_team(self, team_id: str, actor: str | None) -> list[str]:
        """Delete the team, its members, its document, change log, mutation ids and data key
        (its secrets are shredded with it); return the user ids that were members."""

    async def leave_all(self, user_id: str) -> list[str]:
        """Take ``user_id`` out of every team (before the account is removed); the team ids.
        409 ``last_owner`` naming the teams they alone own, and then nothing changes."""


class TeamTx(Protocol):
    """One backend's statements inside the transaction of a membership change."""

    async def lock_team(self, team_id: str) -> bool:
        """Lock the team's row until the transaction ends; False when there is none."""

    async def role(self, team_id: str, user_id: str) -> str | None: ...

    async def owners(self, team_id: str) -> int: ...

    async def member_count(self, team_id: str) -> int: ...

    async def team_count(self, user_id: str) -> int:
        """How many teams ``user_id`` belongs to (any user, not only the actor)."""

    async def insert_team(self, team_id: str, name: str, owner_id: str) -> None: ...

    async def put_member(self, team_id: str, user_id: str, role: str) -> None:
        """Insert the member, or change their role (keeping when they were added)."""

    async def drop_member(self, team_id: str, user_id: str) -> None: ...

    async def member_ids(self, team_id: str) -> list[str]: ...

    async def memberships_of(self, user_id: str) -> list[tuple[str, str]]:
        """``(team_id, role)`` of each team ``user_id`` belongs to."""

    async def drop_team(self, team_id: str) -> None:
        """Delete the team's document rows and data key, then the team and its members."""


async def _actor_role(tx: TeamTx, team_id: str, actor: str | None) -> str | None:
    """The actor's role, after locking the team; 404 for a non-member (or no such team)."""
    if not await tx.lock_team(team_id):
        raise team_not_found()
    if actor is None:
        return None
    role = await tx.role(team_id, actor)
    if role is None:
        raise team_not_found()
    return role


async def create_in(tx: TeamTx, team_id: str, name: str, owner_id: str, max_teams: int) -> None:
    if await tx.team_count(owner_id) >= max_teams:
        raise limit_reached(f"a user may belong to at most {max_teams} teams", max_teams)
    await tx.insert_team(team_id, name, owner_id)


async def set_in(
    tx: TeamTx,
    team_id: str,
    actor: str | None,
    user_id: str,
    role: str,
    *,
    max_members: int,
    max_teams: int,
) -> MembershipChange:
    actor_role = await _actor_role(tx, team_id, actor)
    old = await tx.role(team_id, user_id)
    owners = await tx.owners(team_id) if old == "owner" else 2
    check_set_role(actor_role, old, role, owners, operator=actor is None)
    if old is None:
        if await tx.member_count(team_id) >= max_members:
            raise limit_reached(f"a team may have at most {max_members} members", max_members)
        if await tx.team_count(user_id) >= max_teams:
            raise limit_reached(f"a user may belong to at most {max_teams} teams", max_teams)
    if old != role:
        await tx.put_member(team_id, user_id, role)
    return MembershipChange(team_id, user_id, old, role)


async def remove_in(tx: TeamTx, team_id: str, actor: str | None, user_id: str) -> MembershipChange:
    actor_role = await _actor_role(tx, team_id, actor)
    old = await tx.role(team_id, user_id)
    if old is None:
        raise NotFound("no such member")
    owners = await tx.owners(team_id) if old == "owner" else 2
    check_remove(actor_role, old, owners, self_removal=actor == user_id, operator=actor is None)
    await tx.drop_member(team_id, user_id)
    return MembershipChange(team_id, user_id, old, None)


async def delete_in(tx: TeamTx, team_id: str, actor: str | None) -> list[str]:
    actor_role = await _actor_role(tx, team_id, actor)
    check_delete(actor_role, operator=actor is None)
    members = await tx.member_ids(team_id)
    await tx.drop_team(team_id)
    return members


async def leave_all_in(tx: TeamTx, user_id: str) -> list[str]:
    memberships = await tx.memberships_of(user_id)
    alone = []
    for team_id, role in memberships:
        await tx.lock_team(team_id)
        if role == "owner" and await tx.owners(team_id) <= 1:
            alone.append(team_id)
    if alone:
        raise Conflict(
            "the user is the last owner of a team: make someone else owner, or delete it",
            code="last_owner",
            details={"teams": alone},
        )
    for team_id, _ in memberships:
        await tx.drop_member(team_id, user_id)
    return [team_id for team_id, _ in memberships]
