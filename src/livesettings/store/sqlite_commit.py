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
from typing import Any, Final

from ..crypto import WrappedKey
from ..errors import LiveSettingsError, StorageError
from .base import AppliedMutation, CommitOutcome, PendingMutation, StoredDocument
from .codec import DOCUMENT_COLUMNS, applied_from_row, document_from_row
from .doc_cache import DocumentCache, PendingDocuments, document_columns
from .planning import Plan
from .sqlite_sql import (
    DOC_UPSERT,
    insert_change,
    insert_wrapped_key,
    oldest_known,
    remember,
    select_wrapped_key,
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
        self._documents = PendingDocuments(None)

    @asynccontextmanager
    async def transaction(
        self, batch: Sequence[PendingMutation], documents: DocumentCache | None = None
    ) -> AsyncIterator[SqliteCommit]:
        self._documents = PendingDocuments(documents)
        try:
            with write_transaction(self._conn):
                yield self
        except BaseException:
            self._documents.failed()
            raise
        self._documents.committed()

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
        """The document and the remembered mutation id in one statement; the cached copy of
        the document when its row holds exactly what it was decoded from or written as (see
        :mod:`.doc_cache`)."""
        user_id = pending.user_id
        mutation_id = pending.mutation.mutation_id
        row = self._conn.execute(_LOAD, (user_id, mutation_id)).fetchone()
        prior = None
        if row["a_body_hash"] is not None:
            prior = applied_from_row(
                {
                    "mutation_id": mutation_id,
                    "body_hash": row["a_body_hash"],
                    "revision": row["a_revision"],
                    "conflicts": row["a_conflicts"],
                }
            )
        if known is not None:
            return known, prior
        if not row["has_doc"]:
            return document_from_row(user_id, None), prior
        token = tuple(row[name] for name in DOCUMENT_COLUMNS)
        cache = self._documents.cache
        cached = None if cache is None else cache.get(user_id, token)
        if cached is not None:
            return cached, prior
        doc = document_from_row(user_id, row)
        self._documents.add(user_id, doc, token, _stored_size(token))
        return doc, prior

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
            doc = plan.document
            columns = document_columns(doc)
            values = tuple(columns[name] for name in DOCUMENT_COLUMNS)
            self._conn.execute(DOC_UPSERT, (doc.user_id, *values))
            token = _written_token(values)
            self._documents.add(doc.user_id, doc, token, _stored_size(values), validated=True)
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


_LOAD: Final = (
    f"SELECT {', '.join(f'd.{name} AS {name}' for name in DOCUMENT_COLUMNS)}, "
    "d.user_id IS NOT NULL AS has_doc, a.body_hash AS a_body_hash, a.revision AS a_revision, "
    "a.conflicts AS a_conflicts FROM (SELECT 1) AS one "
    "LEFT JOIN user_preferences d ON d.user_id = ?1 "
    "LEFT JOIN applied_mutations a ON a.user_id = ?1 AND a.mutation_id = ?2"
)
"""The document (``has_doc`` false: no row) and the remembered mutation id, in one statement."""

_CREATED_AT = DOCUMENT_COLUMNS.index("created_at")


def _written_token(values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The row as the upsert leaves it, or None (never equal to a row) when the upsert may
    keep an older ``created_at`` than the one written (a row adopted without one)."""
    return None if values[_CREATED_AT] is None else values


def _stored_size(values: tuple[Any, ...]) -> int:
    return sum(len(v) for v in values if isinstance(v, str | bytes))
