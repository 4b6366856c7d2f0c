"""The admin dashboard's statements on PostgreSQL: the admin flag and the bounded searches.

The app role reads (and, removing an account, deletes) only the ``admins`` row of the user its
transaction names; granting, listing and the cross-user searches go through the SECURITY
DEFINER functions of :mod:`.pg_functions` (``livesettings_set_admin``,
``livesettings_admin_ids``, ``livesettings_search_users``, ``livesettings_search_teams``),
each returning at most the rows asked for.
"""

from __future__ import annotations

from typing import Any

from .base import TeamSummary, UserSummary
from .pg_sql import time_text

__all__ = ["admin_ids", "is_admin", "search_teams", "search_users", "set_admin"]


async def is_admin(conn: Any, user_id: str) -> bool:
    """In a transaction as ``user_id`` (the row-level security policy shows its row only)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM public.admins WHERE user_id = $1)", user_id
        )
    )


async def set_admin(conn: Any, user_id: str, on: bool) -> bool:
    return bool(await conn.fetchval("SELECT public.livesettings_set_admin($1, $2)", user_id, on))


async def admin_ids(conn: Any) -> set[str]:
    rows = await conn.fetch("SELECT * FROM public.livesettings_admin_ids()")
    return {row[0] for row in rows}


async def search_users(conn: Any, q: str, limit: int) -> list[UserSummary]:
    rows = await conn.fetch("SELECT * FROM public.livesettings_search_users($1, $2)", q, limit)
    return [
        UserSummary(
            user_id=row["user_id"],
            username=row["username"],
            created_at=time_text(row["created_at"]),
            admin=bool(row["admin"]),
            revision=int(row["revision"]),
            updated_at=time_text(row["updated_at"]),
            teams=int(row["teams"]),
        )
        for row in rows
    ]


async def search_teams(conn: Any, q: str, limit: int) -> list[TeamSummary]:
    rows = await conn.fetch("SELECT * FROM public.livesettings_search_teams($1, $2)", q, limit)
    return [
        TeamSummary(
            team_id=row["team_id"],
            name=row["name"],
            members=int(row["members"]),
            revision=int(row["revision"]),
            created_at=time_text(row["created_at"]) or "",
        )
        for row in rows
    ]
