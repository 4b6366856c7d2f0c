"""Teams in ``livesettings export``/``import`` on PostgreSQL (``PostgresStore.export_teams`` and
``import_team``).

The operator's definer function ``livesettings_list_teams`` names every team; each team's row
and members are then read, and written back, in the team document's own context (its key
``team:<team_id>`` as the current user), which row-level security lets see and insert them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..errors import Conflict
from ..teams import team_key
from .base import ExportedTeam
from .pg_sql import as_user, time_text
from .teams import MemberRow

__all__ = ["export_teams", "import_team"]

Connect = Callable[[], AbstractAsyncContextManager[Any]]


async def export_teams(connection: Connect) -> AsyncIterator[ExportedTeam]:
    """Every team with its members (by when they were added), in team id order."""
    async with connection() as conn:
        ids = sorted(
            str(row[0])
            for row in await conn.fetch("SELECT team_id FROM public.livesettings_list_teams()")
        )
    for team_id in ids:
        async with connection() as conn, as_user(conn, team_key(team_id), readonly=True):
            row = await conn.fetchrow(
                "SELECT name, created_by, created_at FROM public.teams WHERE team_id = $1",
                team_id,
            )
            members = await conn.fetch(
                "SELECT user_id, role, added_at FROM public.team_members WHERE team_id = $1 "
                'ORDER BY added_at, user_id COLLATE "C"',
                team_id,
            )
        if row is None:  # deleted since it was listed
            continue
        yield ExportedTeam(
            team_id,
            str(row["name"]),
            str(row["created_by"]),
            time_text(row["created_at"]) or "",
            tuple(
                MemberRow(str(m["user_id"]), str(m["role"]), time_text(m["added_at"]) or "")
                for m in members
            ),
        )


async def import_team(connection: Connect, team: ExportedTeam) -> None:
    """Insert the team and its members in one transaction; ``Conflict`` (nothing written)
    when it exists."""
    async with connection() as conn, as_user(conn, team_key(team.team_id), readonly=False):
        if await conn.fetchval("SELECT 1 FROM public.teams WHERE team_id = $1", team.team_id):
            raise Conflict(
                f"team {team.team_id!r} already exists", details={"team_id": team.team_id}
            )
        await conn.execute(
            "INSERT INTO public.teams (team_id, name, created_by, created_at) "
            "VALUES ($1, $2, $3, CAST($4::text AS timestamptz))",
            team.team_id,
            team.name,
            team.created_by,
            team.created_at,
        )
        await conn.executemany(
            "INSERT INTO public.team_members (team_id, user_id, role, added_at) "
            "VALUES ($1, $2, $3, CAST($4::text AS timestamptz))",
            [(team.team_id, m.user_id, m.role, m.added_at) for m in team.members],
        )
