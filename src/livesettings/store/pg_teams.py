"""Teams and memberships on PostgreSQL (``PostgresStore.teams``).

The rules are :mod:`livesettings.store.teams`'; each change runs in one transaction acting as
the actor (``livesettings.user_id``), so row-level security shows it only the teams it belongs
to, and locks the team's row first, so membership changes of one team are serialised. An
operator (the CLI, ``actor=None``) acts in the team document's own context. A membership change
sends, inside its transaction, one NOTIFY of ``team:<team_id>/<user_id>`` keys, so every node
updates its sockets when — and only if — it commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..bus.notify import NOTIFY_CHANNEL, notify_payloads
from ..teams import membership_key, team_key, team_not_found
from .pg_sql import LOCK_USERS, as_user, lock_key, time_text
from .teams import (
    MemberRow,
    MembershipChange,
    TeamRow,
    create_in,
    delete_in,
    leave_all_in,
    remove_in,
    set_in,
)

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = ["PgTeams"]

T = TypeVar("T")

_DOC_TABLES: Final = ("settings_changes", "applied_mutations", "data_keys")


class _Tx:
    """:class:`~livesettings.store.teams.TeamTx` on one connection inside a transaction."""

    def __init__(self, conn: Any, doc_key_column: Callable[[str], Any]) -> None:
        self._conn = conn
        self._doc_key = doc_key_column

    async def lock_team(self, team_id: str) -> bool:
        found = await self._conn.fetchval(
            "SELECT 1 FROM public.teams WHERE team_id = $1 FOR UPDATE", team_id
        )
        return found is not None

    async def role(self, team_id: str, user_id: str) -> str | None:
        role = await self._conn.fetchval(
            "SELECT role FROM public.team_members WHERE team_id = $1 AND user_id = $2",
            team_id,
            user_id,
        )
        return None if role is None else str(role)

    async def owners(self, team_id: str) -> int:
        return int(
            await self._conn.fetchval(
                "SELECT count(*) FROM public.team_members WHERE team_id = $1 AND role = 'owner'",
                team_id,
            )
        )

    async def member_count(self, team_id: str) -> int:
        return int(
            await self._conn.fetchval(
                "SELECT count(*) FROM public.team_members WHERE team_id = $1", team_id
            )
        )

    async def team_count(self, user_id: str) -> int:
        return int(
            await self._conn.fetchval("SELECT * FROM public.livesettings_team_count($1)", user_id)
        )

    async def insert_team(self, team_id: str, name: str, owner_id: str) -> None:
        await self._conn.execute(
            "INSERT INTO public.teams (team_id, name, created_by, created_at) "
            "VALUES ($1, $2, $3, pg_catalog.now())",
            team_id,
            name,
            owner_id,
        )
        await self.put_member(team_id, owner_id, "owner")

    async def put_member(self, team_id: str, user_id: str, role: str) -> None:
        await self._conn.execute(
            "INSERT INTO public.team_members (team_id, user_id, role, added_at) "
            "VALUES ($1, $2, $3, pg_catalog.now()) "
            "ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
            team_id,
            user_id,
            role,
        )

    async def drop_member(self, team_id: str, user_id: str) -> None:
        await self._conn.execute(
            "DELETE FROM public.team_members WHERE team_id = $1 AND user_id = $2",
            team_id,
            user_id,
        )

    async def member_ids(self, team_id: str) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT user_id FROM public.team_members WHERE team_id = $1 "
            'ORDER BY user_id COLLATE "C"',
            team_id,
        )
        return [str(row["user_id"]) for row in rows]

    async def memberships_of(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self._conn.fetch(
            "SELECT team_id, role FROM public.team_members WHERE user_id = $1 "
            'ORDER BY team_id COLLATE "C"',
            user_id,
        )
        return [(str(row["team_id"]), str(row["role"])) for row in rows]

    async def drop_team(self, team_id: str) -> None:
        key = team_key(team_id)
        # Serialised with group commits on the document (they take the same lock).
        await self._conn.execute(LOCK_USERS, [lock_key(key)])
        await self._conn.execute(
            "DELETE FROM public.user_preferences WHERE user_id = $1", self._doc_key(key)
        )
        for table in _DOC_TABLES:
            await self._conn.execute(f"DELETE FROM public.{table} WHERE user_id = $1", key)
        await self._conn.execute("DELETE FROM public.teams WHERE team_id = $1", team_id)


def _team(row: Any, *, role: bool = True) -> TeamRow:
    return TeamRow(
        str(row["team_id"]),
        str(row["name"]),
        time_text(row["created_at"]) or "",
        role=str(row["role"]) if role else None,
    )


class PgTeams:
    """:class:`~livesettings.store.teams.TeamStore` on a :class:`PostgresStore`."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    @asynccontextmanager
    async def _as(self, who: str, *, readonly: bool = True) -> AsyncIterator[Any]:
        async with self._store._connection() as conn, as_user(conn, who, readonly=readonly):
            yield conn

    async def _change(
        self, team_id: str, actor: str | None, work: Callable[[_Tx], Awaitable[T]]
    ) -> T:
        store = self._store
        sql = store._statements()[1]
        async with self._as(actor or team_key(team_id), readonly=False) as conn:
            return await work(_Tx(conn, sql.doc_key))

    async def _notify(self, conn: Any, team_id: str, user_ids: list[str]) -> None:
        if not self._store.notify or not user_ids:
            return
        pairs = [(membership_key(team_id, user_id), 0) for user_id in user_ids]
        for payload in notify_payloads(pairs):
            await conn.execute("SELECT pg_catalog.pg_notify($1, $2)", NOTIFY_CHANNEL, payload)

    async def create_team(
        self, team_id: str, name: str, owner_id: str, *, max_teams: int
    ) -> TeamRow:
        async with self._as(owner_id, readonly=False) as conn:
            sql = self._store._statements()[1]
            await create_in(_Tx(conn, sql.doc_key), team_id, name, owner_id, max_teams)
        team = await self.membership(team_id, owner_id)
        assert team is not None
        return team

    async def teams_of(self, user_id: str) -> list[TeamRow]:
        async with self._as(user_id) as conn:
            rows = await conn.fetch(
                "SELECT t.team_id, t.name, t.created_at, m.role FROM public.team_members m "
                "JOIN public.teams t ON t.team_id = m.team_id WHERE m.user_id = $1 "
                'ORDER BY t.name COLLATE "C", t.team_id COLLATE "C"',
                user_id,
            )
        return [_team(row) for row in rows]

    async def all_teams(self) -> list[TeamRow]:
        async with self._store._connection() as conn:
            rows = await conn.fetch("SELECT * FROM public.livesettings_list_teams()")
        return [
            TeamRow(
                row["team_id"],
                row["name"],
                time_text(row["created_at"]) or "",
                members=int(row["members"]),
            )
            for row in rows
        ]

    async def membership(self, team_id: str, user_id: str) -> TeamRow | None:
        async with self._as(user_id) as conn:
            row = await conn.fetchrow(
                "SELECT t.team_id, t.name, t.created_at, m.role FROM public.team_members m "
                "JOIN public.teams t ON t.team_id = m.team_id "
                "WHERE m.team_id = $1 AND m.user_id = $2",
                team_id,
                user_id,
            )
        return None if row is None else _team(row)

    async def members(self, team_id: str, actor: str | None) -> list[MemberRow]:
        async with self._as(actor or team_key(team_id)) as conn:
            rows = await conn.fetch(
                "SELECT m.user_id, m.role, m.added_at FROM public.team_members m "
                'WHERE m.team_id = $1 ORDER BY m.added_at, m.user_id COLLATE "C"',
                team_id,
            )
            names = {
                row["user_id"]: row["username"]
                for row in await conn.fetch(
                    "SELECT * FROM public.livesettings_team_usernames($1)", team_id
                )
            }
        if not rows or (actor is not None and all(row["user_id"] != actor for row in rows)):
            raise team_not_found()
        return [
            MemberRow(
                row["user_id"],
                row["role"],
                time_text(row["added_at"]) or "",
                names.get(row["user_id"]),
            )
            for row in rows
        ]

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
        async def work(tx: _Tx) -> MembershipChange:
            change = await set_in(
                tx, team_id, actor, user_id, role, max_members=max_members, max_teams=max_teams
            )
            if change.changed:
                await self._notify(tx._conn, team_id, [user_id])
            return change

        return await self._change(team_id, actor, work)

    async def remove_member(
        self, team_id: str, actor: str | None, user_id: str
    ) -> MembershipChange:
        async def work(tx: _Tx) -> MembershipChange:
            change = await remove_in(tx, team_id, actor, user_id)
            await self._notify(tx._conn, team_id, [user_id])
            return change

        return await self._change(team_id, actor, work)

    async def delete_team(self, team_id: str, actor: str | None) -> list[str]:
        async def work(tx: _Tx) -> list[str]:
            members = await delete_in(tx, team_id, actor)
            await self._notify(tx._conn, team_id, members)
            return members

        members = await self._change(team_id, actor, work)
        self._store._commits.keys.forget(team_key(team_id))
        return members

    async def leave_all(self, user_id: str) -> list[str]:
        sql = self._store._statements()[1]
        async with self._as(user_id, readonly=False) as conn:
            left = await leave_all_in(_Tx(conn, sql.doc_key), user_id)
            for team_id in left:
                await self._notify(conn, team_id, [user_id])
        return left
