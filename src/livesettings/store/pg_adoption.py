"""The data migration of PostgreSQL setup: a seed-style ``user_preferences`` table adopted in
place. The rule is :mod:`livesettings.store.adoption`'s; this module reads the rows, page by
page, and writes what it decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..crypto import Keyring
from ..document import FIELDS, rfc3339
from .adoption import (
    ADOPTED_COLUMNS,
    adopt_rows,
    adopted_line,
    cleared_line,
    keyring_for_sealing,
)
from .commit import sealer
from .datakeys import get_or_create_data_key
from .pg_sql import PgKeyTable, row_count
from .pg_tables import Columns

if TYPE_CHECKING:
    import asyncpg

__all__ = ["adopt_seed_rows"]

_ADOPT_PAGE: Final = 500


async def adopt_seed_rows(
    conn: asyncpg.Connection, columns: Columns, keyring: Keyring | None, now_ms: int
) -> tuple[int, list[str]]:
    """Bring rows livesettings never wrote (``leaf_meta`` NULL) into the document shape, by
    :func:`~livesettings.store.adoption.adopt_rows`. Returns how many rows were rewritten or
    deleted, and report lines."""
    lines: list[str] = []
    touched = 0
    text_id = columns.user_id_text()
    # A row without a user is nobody's settings, but its secrets must not stay in clear.
    cleared = await conn.execute(
        "UPDATE public.user_preferences "
        f"SET api_keys = '{{}}'::text::{columns.type_of('api_keys')} "
        "WHERE user_id IS NULL AND api_keys IS NOT NULL AND api_keys::text <> '{}'"
    )
    if (count := row_count(cleared)) > 0:
        touched += count
        lines.append(cleared_line(count))
    users = sorted(
        row["uid"]
        for row in await conn.fetch(
            f"SELECT DISTINCT {text_id} AS uid FROM public.user_preferences "
            "WHERE leaf_meta IS NULL AND user_id IS NOT NULL"
        )
    )
    if not users:
        return touched, lines
    # Each page below looks its users up by id: without an index on user_id (a seed that
    # allowed duplicates may have none) every page would scan the whole table.
    temporary_index = not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = 'public.user_preferences'::regclass AND a.attname = 'user_id')"
    )
    if temporary_index:
        await conn.execute(
            "CREATE INDEX livesettings_adopting ON public.user_preferences (user_id)"
        )
    update = (
        "UPDATE public.user_preferences SET "
        + ", ".join(
            f"{name} = ${index}::text::{columns.type_of(name)}"
            for index, name in enumerate(ADOPTED_COLUMNS[:-2], start=2)
        )
        + ", created_at = $7, updated_at = $8, leaf_meta = '{}'::jsonb WHERE ctid = $1"
    )
    keys = PgKeyTable(conn)
    for start in range(0, len(users), _ADOPT_PAGE):
        page = users[start : start + _ADOPT_PAGE]
        rows = await conn.fetch(
            f"SELECT ctid, {text_id} AS uid, {', '.join(FIELDS)}, created_at, updated_at "
            "FROM public.user_preferences "
            f"WHERE user_id = ANY($1::text[]::{columns.user_id_type}[]) AND leaf_meta IS NULL "
            "ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST, ctid DESC",
            page,
        )
        by_user: dict[str, list[Any]] = {user: [] for user in page}
        for row in rows:
            by_user[row["uid"]].append(row)
        updates: list[tuple[Any, ...]] = []
        deletions: list[tuple[Any]] = []
        for user_id, group in by_user.items():
            adoption = adopt_rows(user_id, group)
            if adoption.plaintext:
                key = await get_or_create_data_key(
                    keys, keyring_for_sealing(keyring), user_id, lambda: rfc3339(now_ms)
                )
                adoption = adoption.sealed(sealer(user_id, key, now_ms))
            lines.extend(adoption.lines)
            kept, *others = group
            updates.append((kept["ctid"], *adoption.columns()))
            deletions.extend((row["ctid"],) for row in others)
            touched += len(group)
        await conn.executemany(update, updates)
        if deletions:
            await conn.executemany("DELETE FROM public.user_preferences WHERE ctid = $1", deletions)
    if temporary_index:
        await conn.execute("DROP INDEX public.livesettings_adopting")
    lines.append(adopted_line(len(users)))
    return touched, lines
