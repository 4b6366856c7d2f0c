"""The statements of the group commit on PostgreSQL (the sequence is :mod:`.commit`'s).

Each mutation's savepoint also sets ``livesettings.user_id``, so row-level security confines
the mutation to its user; the release of one savepoint rides on the next one's round trip
(``COMMIT`` releases the last). A winning mutation is written in one statement. Before
``COMMIT`` the batch's changes are notified (``bus.notify.change_payloads``): each user's
newest revision, with the change rows themselves when they fit, so other nodes push without
reading the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import asyncpg

from ..bus.notify import NOTIFY_CHANNEL, change_payloads
from ..errors import LiveSettingsError
from .base import AppliedMutation, CommitOutcome, PendingMutation, StoredDocument
from .codec import (
    CHANGE_COLUMNS,
    DOCUMENT_COLUMNS,
    applied_from_row,
    change_to_columns,
    dumps,
)
from .doc_cache import DocumentCache, PendingDocuments, document_columns
from .pg_errors import DRIVER_ERRORS, translate
from .pg_sql import (
    LOCK_USERS,
    PgKeyTable,
    Statements,
    document_from_pg,
    lock_key,
    oldest_known,
    set_user_sql,
    text_param,
    user_id_problem,
)
from .planning import Plan

__all__ = ["PgCommit", "PgCommitting"]


class PgCommit(PgKeyTable):
    """A :class:`~livesettings.store.commit.CommitTransaction` on one pooled connection."""

    mutation_errors: tuple[type[Exception], ...] = (LiveSettingsError, asyncpg.PostgresError)

    def __init__(
        self,
        conn: Any,
        sql: Statements,
        *,
        notify: bool,
        delay_s: float,
        documents: PendingDocuments | None = None,
    ) -> None:
        super().__init__(conn)
        self._sql = sql
        self._cached_sql = cached_statements(sql)
        self._notify = notify
        self._delay_s = delay_s
        self._savepoint = False
        self._documents = documents or PendingDocuments(None)

    def refusal(self, user_id: str) -> LiveSettingsError | None:
        return user_id_problem(user_id, uuid_column=self._sql.uuid_ids)

    def translate(self, exc: BaseException) -> LiveSettingsError:
        return translate(exc, None)

    async def begin_mutation(self, user_id: str) -> None:
        release = "RELEASE SAVEPOINT mutation; " if self._savepoint else ""
        await self._conn.execute(f"{release}SAVEPOINT mutation; {set_user_sql(user_id)}")
        self._savepoint = True

    async def rollback_mutation(self) -> None:
        await self._conn.execute("ROLLBACK TO SAVEPOINT mutation")

    async def end_mutation(self) -> None:
        """Nothing yet: the next :meth:`begin_mutation` (or ``COMMIT``) releases it."""

    async def team_role(self, team_id: str, user_id: str) -> str | None:
        role = await self._conn.fetchval(
            "SELECT role FROM public.team_members WHERE team_id = $1 AND user_id = $2",
            team_id,
            user_id,
        )
        return None if role is None else str(role)

    async def load(
        self, pending: PendingMutation, known: StoredDocument | None
    ) -> tuple[StoredDocument, AppliedMutation | None]:
        """The document and the remembered mutation id in one round trip; the document's
        columns come back only when the row is not the version cached (:mod:`.doc_cache`)."""
        user_id = pending.user_id
        mutation_id = pending.mutation.mutation_id
        sql = self._sql
        cache = self._documents.cache
        sent = _KNOWN if known is not None else None if cache is None else cache.token_of(user_id)
        key = sql.doc_key(user_id)
        row = await self._conn.fetchrow(
            self._cached_sql.load, user_id, key, mutation_id, None if sent is None else str(sent)
        )
        if known is not None:
            doc = known
        elif sent is not None and row["has_doc"] and row["d_xmin"] == sent:
            cached = cache.get(user_id, sent) if cache is not None else None
            # None only if the cache changed since token_of (another commit of this process).
            doc = cached or document_from_pg(
                user_id, await self._conn.fetchrow(sql.load, user_id, key, mutation_id)
            )
        else:
            doc = document_from_pg(user_id, row)
            if row["has_doc"]:
                size = sum(
                    len(row[name]) for name in DOCUMENT_COLUMNS if isinstance(row[name], str)
                )
                self._documents.add(user_id, doc, row["d_xmin"], size)
        if row["a_body_hash"] is None:
            return doc, None
        prior = applied_from_row(
            {
                "mutation_id": mutation_id,
                "body_hash": row["a_body_hash"],
                "revision": row["a_revision"],
                "conflicts": row["a_conflicts"],
            }
        )
        return doc, prior

    async def inverses_after(self, user_id: str, revision: int) -> list[Any]:
        rows = await self._conn.fetch(
            "SELECT inverse FROM public.settings_changes "
            "WHERE user_id = $1 AND revision > $2 ORDER BY revision DESC",
            user_id,
            revision,
        )
        return [row["inverse"] for row in rows]

    async def oldest_known(self, user_id: str, revision: int) -> int:
        return await oldest_known(self._conn, user_id, revision)

    async def write(self, plan: Plan, now: int) -> None:
        """One round trip: the document, the change row and the mutation id together."""
        remember = plan.remember
        if remember is None:  # pragma: no cover - every plan that is not refused remembers
            return
        remembered = (
            remember.mutation_id,
            remember.body_hash,
            remember.revision,
            dumps(list(remember.conflicts)),
            now,
        )
        user_id = plan.outcome.user_id
        if plan.document is None or plan.change is None:
            await self._conn.execute(self._sql.remember, user_id, *remembered)
            return
        doc = document_columns(plan.document)
        change = change_to_columns(plan.change)
        values = [text_param(doc[name]) for name in DOCUMENT_COLUMNS]
        xmin = await self._conn.fetchval(
            self._cached_sql.write,
            user_id,
            *values,
            *(change[name] for name in CHANGE_COLUMNS[1:]),
            *remembered,
        )
        size = sum(len(value) for value in values if isinstance(value, str))
        self._documents.add(user_id, plan.document, xmin, size, validated=True)

    async def trim_changes(self, user_id: str, cutoff: int) -> None:
        await self._conn.execute(set_user_sql(user_id))
        await self._conn.execute(
            "DELETE FROM public.settings_changes WHERE user_id = $1 AND revision <= $2",
            user_id,
            cutoff,
        )

    async def prune(self, before_ms: int) -> None:
        await self._conn.execute(
            "SELECT public.livesettings_prune($1, $2)", before_ms, before_ms // 1000
        )

    async def finish(self, outcomes: Sequence[CommitOutcome]) -> None:
        if self._notify:
            # The changes themselves ride along when they fit: other nodes push without a read.
            created = [o.change for o in outcomes if o.change is not None]
            payloads = change_payloads(created)
            if len(payloads) == 1:
                await self._conn.execute(
                    "SELECT pg_catalog.pg_notify($1, $2)", NOTIFY_CHANNEL, payloads[0]
                )
            elif payloads:
                await self._conn.execute(
                    "SELECT pg_catalog.pg_notify($1, p) FROM unnest($2::text[]) AS p",
                    NOTIFY_CHANNEL,
                    payloads,
                )
        if self._delay_s:
            await asyncio.sleep(self._delay_s)


class PgCommitting:
    """How :class:`~livesettings.store.commit.CommitTemplate` opens a group commit here: a
    pooled connection, one transaction, the batch's per-user advisory locks in one order."""

    batch_errors: tuple[type[Exception], ...] = (LiveSettingsError, *DRIVER_ERRORS)

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[Any]],
        statements: Callable[[], Statements],
        *,
        notify: bool,
        delay_s: float,
    ) -> None:
        self._connection = connection
        self._statements = statements
        self._notify = notify
        self._delay_s = delay_s

    @asynccontextmanager
    async def transaction(
        self, batch: Sequence[PendingMutation], documents: DocumentCache | None = None
    ) -> AsyncIterator[PgCommit]:
        pending = PendingDocuments(documents)
        try:
            async with self._connection() as conn:
                sql = self._statements()
                async with conn.transaction():
                    await conn.execute(LOCK_USERS, sorted({lock_key(p.user_id) for p in batch}))
                    yield PgCommit(
                        conn, sql, notify=self._notify, delay_s=self._delay_s, documents=pending
                    )
        except BaseException:
            pending.failed()
            raise
        pending.committed()


_KNOWN: Final = "*"
"""The token a load sends when the batch already holds the document (no columns wanted)."""


@dataclass(frozen=True, slots=True)
class CachedStatements:
    """The load and write of a commit that know the row version (``xmin``) of a document."""

    load: str
    write: str


@lru_cache(maxsize=8)
def cached_statements(sql: Statements) -> CachedStatements:
    """``sql.load`` with the row version, and the document columns only when the version is
    not ``$4``; ``sql.write`` returning the version it wrote."""
    same = "($4 = '*' OR d.xmin::text = $4)"
    columns = ", ".join(
        f"CASE WHEN {same} THEN NULL ELSE d.{name} END AS {name}"
        for name in DOCUMENT_COLUMNS
        if name != "revision"
    )
    load = (
        f"SELECT {columns}, d.revision, d.revision IS NOT NULL AS has_doc, "
        "d.xmin::text AS d_xmin, a.body_hash AS a_body_hash, a.revision AS a_revision, "
        "a.conflicts AS a_conflicts FROM (SELECT 1) AS one "
        "LEFT JOIN public.user_preferences d "
        f"ON d.user_id = $2::text::{sql.columns.user_id_type} "
        "LEFT JOIN public.applied_mutations a ON a.user_id = $1 AND a.mutation_id = $3"
    )
    upsert = f"WITH doc AS ({sql.upsert})"
    head, applied, tail = sql.write.rpartition(" INSERT INTO public.applied_mutations")
    if not sql.write.startswith(upsert) or not applied:
        raise RuntimeError("the commit's write statement has an unexpected shape")
    head = f"WITH doc AS ({sql.upsert} RETURNING xmin::text AS version)" + head[len(upsert) :]
    write = (
        f"{head}, applied AS (INSERT INTO public.applied_mutations{tail}) SELECT version FROM doc"
    )
    return CachedStatements(load, write)
