"""Teams and memberships on SQLite (``SqliteStore.teams``): the rules are
:mod:`livesettings.store.teams`', run on the writer thread inside one ``BEGIN IMMEDIATE``.

With SQLite there is no row-level security: membership is checked here, and by the server
before it reads or writes a team's document.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..teams import team_key, team_not_found
from .commit import run_sync
from .sqlite_sql import write_transaction
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
    from .sqlite import SqliteStore

__all__ = ["SqliteTeams"]

T = TypeVar("T")

_DOC_TABLES: Final = ("user_preferences", "settings_changes", "applied_mutations", "data_keys")


class _Tx:
    """:class:`~livesettings.store.teams.TeamTx` on the writer's connection."""

    def __init__(self, conn: sqlite3.Connection, now: str) -> None:
        self._conn = conn
        self._now = now

    def _one(self, sql: str, *params: Any) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    async def lock_team(self, team_id: str) -> bool:  # BEGIN IMMEDIATE holds the lock
        return self._one("SELECT 1 FROM teams WHERE team_id = ?", team_id) is not None

    async def role(self, team_id: str, user_id: str) -> str | None:
        role = self._one(
            "SELECT role FROM team_members WHERE team_id = ? AND user_id = ?", team_id, user_id
        )
        return None if role is None else str(role)

    async def owners(self, team_id: str) -> int:
        return int(
            self._one(
                "SELECT count(*) FROM team_members WHERE team_id = ? AND role = 'owner'", team_id
            )
        )

    async def member_count(self, team_id: str) -> int:
        return int(self._one("SELECT count(*) FROM team_members WHERE team_id = ?", team_id))

    async def team_count(self, user_id: str) -> int:
        return int(self._one("SELECT count(*) FROM team_members WHERE user_id = ?", user_id))

    async def insert_team(self, team_id: str, name: str, owner_id: str) -> None:
        self._conn.execute(
            "INSERT INTO teams (team_id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
            (team_id, name, owner_id, self._now),
        )
        await self.put_member(team_id, owner_id, "owner")

    async def put_member(self, team_id: str, user_id: str, role: str) -> None:
        self._conn.execute(
            "INSERT INTO team_members (team_id, user_id, role, added_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
            (team_id, user_id, role, self._now),
        )

    async def drop_member(self, team_id: str, user_id: str) -> None:
        self._conn.execute(
            "DELETE FROM team_members WHERE team_id = ? AND user_id = ?", (team_id, user_id)
        )

    async def member_ids(self, team_id: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT user_id FROM team_members WHERE team_id = ? ORDER BY user_id", (team_id,)
        )
        return [str(row[0]) for row in rows]

    async def memberships_of(self, user_id: str) -> list[tuple[str, str]]:
        rows = self._conn.execute(
            "SELECT team_id, role FROM team_members WHERE user_id = ? ORDER BY team_id",
            (user_id,),
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def drop_team(self, team_id: str) -> None:
        key = team_key(team_id)
        for table in _DOC_TABLES:
            self._conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (key,))
        self._conn.execute("DELETE FROM teams WHERE team_id = ?", (team_id,))


def _team(row: sqlite3.Row, with_role: bool = True) -> TeamRow:
    return TeamRow(
        str(row["team_id"]),
        str(row["name"]),
        str(row["created_at"]),
        role=str(row["role"]) if with_role else None,
    )


class SqliteTeams:
    """:class:`~livesettings.store.teams.TeamStore` on a :class:`SqliteStore`."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _in_write(self, work: Callable[[_Tx], Any]) -> Any:
        store = self._store

        def write() -> Any:
            conn = store._writer_conn()
            with write_transaction(conn):
                return run_sync(work(_Tx(conn, store._now_text())))

        return await store._write(write)

    async def create_team(
        self, team_id: str, name: str, owner_id: str, *, max_teams: int
    ) -> TeamRow:
        await self._in_write(lambda tx: create_in(tx, team_id, name, owner_id, max_teams))
        team = await self.membership(team_id, owner_id)
        assert team is not None
        return team

    async def teams_of(self, user_id: str) -> list[TeamRow]:
        def read(conn: sqlite3.Connection) -> list[TeamRow]:
            rows = conn.execute(
                "SELECT t.team_id, t.name, t.created_at, m.role FROM team_members m "
                "JOIN teams t ON t.team_id = m.team_id WHERE m.user_id = ? "
                "ORDER BY t.name, t.team_id",
                (user_id,),
            )
            return [_team(row) for row in rows]

        result: list[TeamRow] = await self._store._read(read)
        return result

    async def all_teams(self) -> list[TeamRow]:
        def read(conn: sqlite3.Connection) -> list[TeamRow]:
            rows = conn.execute(
                "SELECT t.team_id, t.name, t.created_at, "
                "(SELECT count(*) FROM team_members m WHERE m.team_id = t.team_id) AS n "
                "FROM teams t ORDER BY t.name, t.team_id"
            )
            return [
                TeamRow(row["team_id"], row["name"], row["created_at"], members=int(row["n"]))
                for row in rows
            ]

        result: list[TeamRow] = await self._store._read(read)
        return result

    async def membership(self, team_id: str, user_id: str) -> TeamRow | None:
        def read(conn: sqlite3.Connection) -> TeamRow | None:
            row = conn.execute(
                "SELECT t.team_id, t.name, t.created_at, m.role FROM team_members m "
                "JOIN teams t ON t.team_id = m.team_id WHERE m.team_id = ? AND m.user_id = ?",
                (team_id, user_id),
            ).fetchone()
            return None if row is None else _team(row)

        result: TeamRow | None = await self._store._read(read)
        return result

    async def members(self, team_id: str, actor: str | None) -> list[MemberRow]:
        def read(conn: sqlite3.Connection) -> list[MemberRow] | None:
            if (
                actor is not None
                and not conn.execute(
                    "SELECT 1 FROM team_members WHERE team_id = ? AND user_id = ?", (team_id, actor)
                ).fetchone()
            ):
                return None
            rows = conn.execute(
                "SELECT m.user_id, m.role, m.added_at, u.username FROM team_members m "
                "LEFT JOIN users u ON u.user_id = m.user_id WHERE m.team_id = ? "
                "ORDER BY m.added_at, m.user_id",
                (team_id,),
            )
            return [
                MemberRow(row["user_id"], row["role"], row["added_at"], row["username"])
                for row in rows
            ]

        result: list[MemberRow] | None = await self._store._read(read)
        if result is None or (actor is None and not result):
            raise team_not_found()
        return result

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
        change: MembershipChange = await self._in_write(
            lambda tx: set_in(
                tx, team_id, actor, user_id, role, max_members=max_members, max_teams=max_teams
            )
        )
        return change

    async def remove_member(
        self, team_id: str, actor: str | None, user_id: str
    ) -> MembershipChange:
        change: MembershipChange = await self._in_write(
            lambda tx: remove_in(tx, team_id, actor, user_id)
        )
        return change

    async def delete_team(self, team_id: str, actor: str | None) -> list[str]:
        members: list[str] = await self._in_write(lambda tx: delete_in(tx, team_id, actor))
        self._store._commits.keys.forget(team_key(team_id))
        return members

    async def leave_all(self, user_id: str) -> list[str]:
        left: list[str] = await self._in_write(lambda tx: leave_all_in(tx, user_id))
        return left
