"""The PostgreSQL backend's SQL: statements shaped by the ``user_preferences`` column types,
the per-user transaction that row-level security keys on, and row conversions.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any, Final

from ..crypto import WrappedKey
from ..document import rfc3339
from ..errors import ValidationError
from .base import ChangeRow, StoredDocument, UserRow
from .codec import (
    CHANGE_COLUMNS,
    DOCUMENT_COLUMNS,
    change_from_row,
    document_from_row,
    wrapped_key_from_row,
)
from .pg_errors import DRIVER_ERRORS
from .pg_tables import USER_SETTING, Columns, is_canonical_uuid

__all__ = [
    "LOCK_USERS",
    "PgKeyTable",
    "Statements",
    "account_from_row",
    "as_user",
    "changes_after",
    "document_from_pg",
    "insert_token",
    "insert_user",
    "insert_wrapped_key",
    "load_document",
    "lock_key",
    "needs_reset",
    "oldest_known",
    "row_count",
    "select_wrapped_key",
    "set_user_sql",
    "text_param",
    "time_text",
    "user_id_problem",
]

logger = logging.getLogger(__name__)

_MAX_USER_ID: Final = 1000  # characters; DESIGN §2 promises ≤ 128, this only guards NOTIFY

LOCK_USERS: Final = "SELECT public.livesettings_lock_users($1::integer[])"
"""The per-user advisory locks of a commit, taken in one order (``$1``: sorted lock keys)."""

_DOC_READ: Final = (
    "d.theme, d.language, d.preferences, d.ai_providers, d.api_keys, d.revision, d.leaf_meta, "
    "d.created_at, d.updated_at, d.revision IS NOT NULL AS has_doc"
)


class Statements:
    """SQL that depends on the ``user_preferences`` column types (a seed's may differ)."""

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.uuid_ids = columns.user_id_is_uuid
        uid_type = columns.user_id_type
        # $2 is the document key: the user id, or NULL when it cannot be one (not a UUID in a
        # uuid column), so such a user simply has no row.
        self.load = (
            f"SELECT {_DOC_READ}, a.body_hash AS a_body_hash, a.revision AS a_revision, "
            "a.conflicts AS a_conflicts FROM (SELECT 1) AS one "
            f"LEFT JOIN public.user_preferences d ON d.user_id = $2::text::{uid_type} "
            "LEFT JOIN public.applied_mutations a ON a.user_id = $1 AND a.mutation_id = $3"
        )
        self.doc_select = (
            f"SELECT {_DOC_READ} FROM public.user_preferences d "
            f"WHERE d.user_id = $1::text::{uid_type}"
        )
        self.revision = (
            f"SELECT revision FROM public.user_preferences WHERE user_id = $1::text::{uid_type}"
        )
        self.row_id = f"SELECT id FROM public.user_preferences WHERE user_id = $1::text::{uid_type}"
        self.delete_doc = (
            f"DELETE FROM public.user_preferences WHERE user_id = $1::text::{uid_type}"
        )
        types = {name: columns.type_of(name) for name in DOCUMENT_COLUMNS}
        types["revision"] = "bigint"
        types["leaf_meta"] = "jsonb"
        values = ", ".join(
            f"${n}::bigint" if name == "revision" else f"${n}::text::{types[name]}"
            for n, name in enumerate(DOCUMENT_COLUMNS, start=2)
        )
        updates = ", ".join(
            # A row adopted from the seed keeps its own creation time.
            "created_at = COALESCE(user_preferences.created_at, excluded.created_at)"
            if name == "created_at"
            else f"{name} = excluded.{name}"
            for name in DOCUMENT_COLUMNS
        )
        self.upsert = (
            f"INSERT INTO public.user_preferences (user_id, {', '.join(DOCUMENT_COLUMNS)}) "
            f"VALUES ($1::text::{uid_type}, {values}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}"
        )
        # $1 user id, $2.. the document columns, then the change row's columns (its user id
        # is $1 again), then the remembered mutation's.
        first = len(DOCUMENT_COLUMNS) + 2
        change_values = ", ".join(
            [
                "$1",
                *(
                    f"${n}::text::jsonb" if name in ("patch", "conflicts", "inverse") else f"${n}"
                    for n, name in enumerate(CHANGE_COLUMNS[1:], start=first)
                ),
            ]
        )
        n = first + len(CHANGE_COLUMNS) - 1
        # One round trip writes a winning mutation: its document, change row and mutation id.
        self.write = (
            f"WITH doc AS ({self.upsert}), "
            f"change AS (INSERT INTO public.settings_changes ({', '.join(CHANGE_COLUMNS)}) "
            f"VALUES ({change_values})) "
            "INSERT INTO public.applied_mutations "
            "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
            f"VALUES ($1, ${n}, ${n + 1}, ${n + 2}, ${n + 3}::text::jsonb, ${n + 4})"
        )
        self.remember = (
            "INSERT INTO public.applied_mutations "
            "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
            "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)"
        )

    def doc_key(self, user_id: str) -> str | None:
        """The value compared with ``user_preferences.user_id``; None when no row can match."""
        if self.uuid_ids and not is_canonical_uuid(user_id):
            return None
        return user_id


def _literal(text: str) -> str:
    """An SQL string literal (``standard_conforming_strings`` is on for our sessions)."""
    return "'" + text.replace("'", "''") + "'"


def set_user_sql(user_id: str) -> str:
    return f"SELECT pg_catalog.set_config('{USER_SETTING}', {_literal(user_id)}, true)"


def user_id_problem(user_id: str, *, uuid_column: bool) -> ValidationError | None:
    """Why ``user_id`` cannot be stored here, if it cannot (checked before any SQL)."""
    if not user_id or "\x00" in user_id or len(user_id) > _MAX_USER_ID:
        # Long ids are refused so that one [user_id, revision] always fits a NOTIFY.
        return ValidationError(
            f"a user id must be 1 to {_MAX_USER_ID} characters, without U+0000",
            path="",
            code="invalid_user_id",
        )
    if uuid_column and not is_canonical_uuid(user_id):
        return ValidationError(
            f"user id {user_id!r} is not a lowercase UUID, which this database's "
            "user_preferences.user_id (uuid) requires",
            path="",
            code="invalid_user_id",
        )
    return None


@asynccontextmanager
async def as_user(conn: Any, user_id: str, *, readonly: bool) -> AsyncIterator[None]:
    """A transaction whose statements see only ``user_id``'s rows (one round trip to begin)."""
    problem = user_id_problem(user_id, uuid_column=False)
    if problem is not None:
        raise problem
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if readonly else "BEGIN"
    await conn.execute(f"{begin}; {set_user_sql(user_id)}")
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            try:
                await conn.execute("ROLLBACK")
            except DRIVER_ERRORS:
                logger.warning("rollback failed")
        raise
    await conn.execute("COMMIT")


def lock_key(user_id: str) -> int:
    """A stable 32-bit key for the user's advisory lock (collisions only serialise)."""
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def time_text(value: Any) -> str | None:
    """A stored time as the text the rows speak (RFC 3339 for timestamp columns)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def text_param(value: Any) -> Any:
    """Document columns are bound as text (cast in SQL to the column's own type)."""
    return value if value is None or isinstance(value, int | str) else str(value)


def document_from_pg(user_id: str, row: Any) -> StoredDocument:
    if row is None or not row["has_doc"]:
        return document_from_row(user_id, None)
    values = {name: row[name] for name in DOCUMENT_COLUMNS}
    values["created_at"] = time_text(values["created_at"])
    values["updated_at"] = time_text(values["updated_at"])
    return document_from_row(user_id, values)


async def load_document(conn: Any, sql: Statements, user_id: str) -> StoredDocument:
    key = sql.doc_key(user_id)
    row = None if key is None else await conn.fetchrow(sql.doc_select, key)
    return document_from_pg(user_id, row)


async def oldest_known(conn: Any, user_id: str, revision: int) -> int:
    """The oldest revision the retained log can rebuild (see the SQLite backend)."""
    oldest = await conn.fetchval(
        "SELECT min(revision) FROM public.settings_changes WHERE user_id = $1", user_id
    )
    return revision if oldest is None else int(oldest) - 1


async def needs_reset(conn: Any, user_id: str, since: int, revision: int) -> bool:
    return since > revision or since < await oldest_known(conn, user_id, revision)


async def changes_after(conn: Any, user_id: str, since: int, limit: int) -> tuple[ChangeRow, ...]:
    rows = await conn.fetch(
        f"SELECT {', '.join(CHANGE_COLUMNS)} FROM public.settings_changes "
        "WHERE user_id = $1 AND revision > $2 ORDER BY revision LIMIT $3",
        user_id,
        since,
        limit,
    )
    return tuple(change_from_row(row) for row in rows)


def account_from_row(row: Any) -> UserRow:
    return UserRow(
        row["user_id"], row["username"], row["password_hash"], time_text(row["created_at"]) or ""
    )


async def insert_user(conn: Any, user: UserRow) -> None:
    await conn.execute(
        "INSERT INTO public.users (user_id, username, password_hash, created_at) "
        "VALUES ($1, $2, $3, $4::text::timestamptz)",
        user.user_id,
        user.username,
        user.password_hash,
        user.created_at,
    )


async def insert_token(
    conn: Any, token_hash: str, user_id: str, family_id: str, expires_at: int
) -> None:
    await conn.execute(
        "INSERT INTO public.refresh_tokens (token_hash, user_id, family_id, expires_at) "
        "VALUES ($1, $2, $3, $4)",
        token_hash,
        user_id,
        family_id,
        expires_at,
    )


async def select_wrapped_key(conn: Any, user_id: str) -> WrappedKey | None:
    row = await conn.fetchrow(
        "SELECT key_id, master_key_id, blob FROM public.data_keys WHERE user_id = $1", user_id
    )
    return None if row is None else wrapped_key_from_row(row)


def row_count(status: str) -> int:
    """The row count of a command tag (``"UPDATE 3"`` → 3)."""
    return int(status.rpartition(" ")[2] or 0)


async def insert_wrapped_key(conn: Any, user_id: str, key: WrappedKey, created_at: str) -> None:
    await conn.execute(
        "INSERT INTO public.data_keys (user_id, key_id, master_key_id, blob, created_at) "
        "VALUES ($1, $2, $3, $4, $5::text::timestamptz)",
        user_id,
        key.id,
        key.master_key_id,
        key.blob,
        created_at,
    )


class PgKeyTable:
    """``data_keys`` on one connection, in its open transaction (a :class:`~.datakeys.KeyTable`)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def select_wrapped_key(self, user_id: str) -> WrappedKey | None:
        return await select_wrapped_key(self._conn, user_id)

    async def insert_wrapped_key(self, user_id: str, wrapped: WrappedKey, created_at: str) -> None:
        await insert_wrapped_key(self._conn, user_id, wrapped, created_at)
