"""``livesettings export``/``import`` on PostgreSQL: users (``PostgresStore.export_users``,
``import_user``) and teams (``export_teams``, ``import_team``).

The definer functions ``livesettings_user_ids_after`` and ``livesettings_list_teams`` name every
user and team; each one's rows are then read, and written back, in its own context (the user
id, or the team document's key ``team:<team_id>``, as the current user), which row-level
security lets see and insert them. Secrets stay sealed and data keys wrapped throughout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from ..errors import Conflict
from ..teams import team_key
from .base import EXPORT_PAGE, ExportedTeam, ExportedUser, StoredDocument, UserRow, username_taken
from .codec import DOCUMENT_COLUMNS, document_to_columns
from .pg_sql import (
    Statements,
    as_user,
    insert_user,
    insert_wrapped_key,
    load_document,
    select_wrapped_key,
    text_param,
    time_text,
    user_id_problem,
)
from .teams import MemberRow

__all__ = ["export_page", "export_teams", "import_team", "import_user"]

Connect = Callable[[], AbstractAsyncContextManager[Any]]


async def export_page(connection: Connect, sql: Statements, after: str) -> list[ExportedUser]:
    """The next page of users after the id ``after``: account, document, wrapped data key."""
    users: list[ExportedUser] = []
    async with connection() as conn:
        ids = [
            row[0]
            for row in await conn.fetch(
                "SELECT * FROM public.livesettings_user_ids_after($1, $2)", after, EXPORT_PAGE
            )
        ]
        for user_id in ids:
            async with as_user(conn, user_id, readonly=True):
                account = await conn.fetchrow(
                    "SELECT username, password_hash FROM public.users WHERE user_id = $1",
                    user_id,
                )
                users.append(
                    ExportedUser(
                        user_id,
                        None if account is None else account["username"],
                        None if account is None else account["password_hash"],
                        await load_document(conn, sql, user_id),
                        await select_wrapped_key(conn, user_id),
                    )
                )
    return users


async def import_user(conn: Any, sql: Statements, user: ExportedUser, now_text: str) -> None:
    """Write an exported user in ``conn``'s transaction as that user; ``Conflict`` when the
    user (or its username) already exists."""
    doc = user.document
    write_doc = doc.revision > 0 or doc.created_at is not None
    if write_doc:
        problem = user_id_problem(user.user_id, uuid_column=sql.uuid_ids)
        if problem is not None:
            raise problem
    exists = (
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM public.users WHERE user_id = $1) "
            "OR EXISTS (SELECT 1 FROM public.data_keys WHERE user_id = $1)",
            user.user_id,
        )
        or await conn.fetchval(sql.revision, sql.doc_key(user.user_id)) is not None
    )
    if exists:
        raise Conflict(f"user {user.user_id!r} already exists", details={"user_id": user.user_id})
    if user.username is not None:
        row = UserRow(user.user_id, user.username, user.password_hash or "", now_text)
        try:
            await insert_user(conn, row)
        except asyncpg.UniqueViolationError as exc:
            raise username_taken(user.user_id, user.username) from exc
    if write_doc:
        owned = StoredDocument(
            user.user_id, doc.revision, doc.settings, doc.records, doc.updated_at, doc.created_at
        )
        columns = document_to_columns(owned)
        await conn.execute(
            sql.upsert, user.user_id, *(text_param(columns[name]) for name in DOCUMENT_COLUMNS)
        )
    if user.wrapped_key is not None:
        await insert_wrapped_key(conn, user.user_id, user.wrapped_key, now_text)


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
