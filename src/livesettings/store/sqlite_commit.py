"""The statements of the group commit on SQLite (the sequence is :mod:`.commit`'s).

They are plain ``sqlite3`` calls on the writer thread's connection, so the async template
runs through without ever suspending (:func:`~livesettings.store.commit.run_sync`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ..crypto import WrappedKey
from ..errors import LiveSettingsError, StorageError
from .base import AppliedMutation, CommitOutcome, PendingMutation, StoredDocument
from .codec import applied_from_row
from .planning import Plan
from .sqlite_sql import (
    insert_change,
    insert_wrapped_key,
    load_document,
    oldest_known,
    remember,
    select_wrapped_key,
    upsert_document,
    write_transaction,
)

__all__ = ["SqliteCommit"]

logger = logging.getLogger(__name__)


class SqliteCommit:
    """The statements of :class:`~livesettings.store.commit.CommitTemplate` on the writer
    connection: plain ``sqlite3`` calls, so the template runs through without suspending."""

    batch_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    mutation_errors: tuple[type[Exception], ...] = (Exception,)

    def __init__(self, conn: sqlite3.Connection, delay_s: float) -> None:
        self._conn = conn
        self._delay_s = delay_s

    @asynccontextmanager
    async def transaction(self, batch: Sequence[PendingMutation]) -> AsyncIterator[SqliteCommit]:
        with write_transaction(self._conn):
            yield self

    def refusal(self, user_id: str) -> LiveSettingsError | None:
        return None

    def translate(self, exc: BaseException) -> LiveSettingsError:
        if isinstance(exc, sqlite3.Error):
            return StorageError(f"the mutation could not be stored: {exc}")
        logger.error("a mutation failed unexpectedly", exc_info=exc)
        return LiveSettingsError("the mutation failed on the server", code="internal_error")

    async def begin_mutation(self, user_id: str) -> None:
        self._conn.execute("SAVEPOINT mutation")

    async def rollback_mutation(self) -> None:
        self._conn.execute("ROLLBACK TO mutation")

    async def end_mutation(self) -> None:
        self._conn.execute("RELEASE mutation")

    async def team_role(self, team_id: str, user_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT role FROM team_members WHERE team_id = ? AND user_id = ?", (team_id, user_id)
        ).fetchone()
        return None if row is None else str(row[0])

    async def load(
        self, pending: PendingMutation, known: StoredDocument | None
    ) -> tuple[StoredDocument, AppliedMutation | None]:
        user_id = pending.user_id
        doc = known or load_document(self._conn, user_id)
        row = self._conn.execute(
            "SELECT mutation_id, body_hash, revision, conflicts FROM applied_mutations "
            "WHERE user_id = ? AND mutation_id = ?",
            (user_id, pending.mutation.mutation_id),
        ).fetchone()
        return doc, None if row is None else applied_from_row(row)

    async def inverses_after(self, user_id: str, revision: int) -> list[Any]:
        rows = self._conn.execute(
            "SELECT inverse FROM settings_changes WHERE user_id = ? AND revision > ? "
            "ORDER BY revision DESC",
            (user_id, revision),
        )
        return [row["inverse"] for row in rows]

    async def oldest_known(self, user_id: str, revision: int) -> int:
        return oldest_known(self._conn, user_id, revision)

    async def select_wrapped_key(self, user_id: str) -> WrappedKey | None:
        return select_wrapped_key(self._conn, user_id)

    async def insert_wrapped_key(self, user_id: str, wrapped: WrappedKey, created_at: str) -> None:
        insert_wrapped_key(self._conn, user_id, wrapped, created_at)

    async def write(self, plan: Plan, now: int) -> None:
        if plan.document is not None:
            upsert_document(self._conn, plan.document)
        if plan.change is not None:
            insert_change(self._conn, plan.change)
        if plan.remember is not None:
            remember(self._conn, plan.outcome.user_id, plan.remember, now)

    async def trim_changes(self, user_id: str, cutoff: int) -> None:
        self._conn.execute(
            "DELETE FROM settings_changes WHERE user_id = ? AND revision <= ?", (user_id, cutoff)
        )

    async def prune(self, before_ms: int) -> None:
        self._conn.execute("DELETE FROM applied_mutations WHERE created_at_ms < ?", (before_ms,))
        self._conn.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (before_ms // 1000,))

    async def finish(self, outcomes: Sequence[CommitOutcome]) -> None:
        if self._delay_s:  # on the writer thread (run_sync), never on the event loop
            time.sleep(self._delay_s)  # noqa: ASYNC251
