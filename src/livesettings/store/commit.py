"""The group commit, written once for every backend over a small transaction protocol.

One batch is one transaction; each mutation runs in its own savepoint, so a refused one rolls
back alone::

    transaction ─┬─ per mutation: refusal? → savepoint → (team) the writer's role
                 │      → load document (cached copy if its row is unchanged) + remembered id
                 │      → (revert) inverse patches + oldest known → (secrets) data key
                 │      → plan_mutation → write the plan → release (or roll back)
                 ├─ trim each touched change log to CHANGELOG_RETAIN
                 ├─ hourly: forget old mutation ids and long-expired tokens
                 └─ finish (the backend's last words: NOTIFY, a test's delay) → COMMIT

A backend supplies only its SQL and driver calls (:class:`CommitTransaction`) and how it opens
the transaction (:class:`CommitBackend`). The template is async; SQLite runs it on its writer
thread with :func:`run_sync`, because its transaction never suspends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol, TypeVar

from ..crypto import DataKey, Keyring, seal_secret
from ..document import Limits, PreferencesSchema, rfc3339
from ..errors import ConfigError, LiveSettingsError, StorageError
from ..teams import check_mutation, team_id_of
from .base import AppliedMutation, CommitOutcome, PendingMutation, StoredDocument
from .codec import loads
from .datakeys import DataKeyCache, KeyTable, get_or_create_data_key
from .doc_cache import DEFAULT_MAX_BYTES, DEFAULT_MAX_DOCUMENTS, DocumentCache
from .idempotency import BodyHasher
from .planning import Plan, Sealer, has_secrets, plan_mutation

__all__ = [
    "APPLIED_RETAIN_MS",
    "PRUNE_EVERY_MS",
    "CommitBackend",
    "CommitTemplate",
    "CommitTransaction",
    "all_failed",
    "run_sync",
    "wall_ms",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLIED_RETAIN_MS: Final = 7 * 24 * 3600 * 1000  # DESIGN §3: mutation ids kept ≥ 7 days
PRUNE_EVERY_MS: Final = 3600 * 1000


class CommitTransaction(KeyTable, Protocol):
    """One backend's statements inside the open transaction of a group commit."""

    mutation_errors: tuple[type[Exception], ...]
    """What a mutation may raise and still fail alone (its savepoint rolled back)."""

    def refusal(self, user_id: str) -> LiveSettingsError | None:
        """Why this backend cannot store ``user_id`` at all (checked before any SQL)."""

    def translate(self, exc: BaseException) -> LiveSettingsError:
        """A driver error of one mutation as one of ours."""

    async def begin_mutation(self, user_id: str) -> None:
        """Open the mutation's savepoint, acting as ``user_id`` (the document's user, or the
        member writing a team's document)."""

    async def rollback_mutation(self) -> None: ...

    async def end_mutation(self) -> None:
        """Release the savepoint (rolled back or not)."""

    async def load(
        self, pending: PendingMutation, known: StoredDocument | None
    ) -> tuple[StoredDocument, AppliedMutation | None]:
        """The user's document (``known`` when an earlier mutation of the batch wrote it) and
        what is remembered of the mutation id."""

    async def team_role(self, team_id: str, user_id: str) -> str | None:
        """``user_id``'s role in the team, read in this transaction (None: not a member)."""

    async def inverses_after(self, user_id: str, revision: int) -> list[Any]:
        """The stored inverse patches of the revisions after ``revision``, newest first."""

    async def oldest_known(self, user_id: str, revision: int) -> int: ...

    async def write(self, plan: Plan, now: int) -> None:
        """Store what the plan says: document, change row, remembered mutation id."""

    async def trim_changes(self, user_id: str, cutoff: int) -> None:
        """Delete the user's change rows of revisions ``<= cutoff``."""

    async def prune(self, before_ms: int) -> None:
        """Forget mutation ids remembered before ``before_ms``, and tokens long expired."""

    async def finish(self, outcomes: Sequence[CommitOutcome]) -> None:
        """The last statements before ``COMMIT``."""


class CommitBackend(Protocol):
    batch_errors: tuple[type[Exception], ...]
    """What fails a batch as a whole (nothing written)."""

    def transaction(
        self, batch: Sequence[PendingMutation], documents: DocumentCache | None = None
    ) -> AbstractAsyncContextManager[CommitTransaction]:
        """Begin the batch's transaction; commit it when the block ends without an error.

        ``documents`` holds decoded documents between batches (:mod:`.doc_cache`): the
        backend's ``load`` uses a copy only when its row is unchanged, and what the batch
        loaded or wrote is cached once it committed."""


class CommitTemplate:
    """The commit sequence and what it keeps between batches (data keys, decoded documents,
    the last prune)."""

    def __init__(
        self,
        keyring: Keyring | None,
        limits: Limits | None,
        schema: PreferencesSchema | None,
        changelog_retain: int,
        now_ms: Callable[[], int],
        *,
        cached_documents: int = DEFAULT_MAX_DOCUMENTS,
        cached_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if changelog_retain < 1:
            raise ConfigError(f"CHANGELOG_RETAIN must be at least 1, got {changelog_retain}")
        self.keyring = keyring
        self.changelog_retain = changelog_retain
        self.now_ms = now_ms
        self.keys = DataKeyCache()
        self.documents = DocumentCache(cached_documents, cached_bytes)
        self._limits = limits
        self._schema = schema
        self._hasher = BodyHasher(keyring)
        self._last_prune_ms = 0

    def now_text(self) -> str:
        return rfc3339(self.now_ms())

    async def commit(
        self, backend: CommitBackend, batch: Sequence[PendingMutation]
    ) -> list[CommitOutcome]:
        """Apply every pending mutation in one transaction, each atomic; a failure of the
        transaction as a whole fails every outcome with ``StorageError``."""
        now = self.now_ms()
        try:
            async with backend.transaction(batch, self.documents) as tx:
                outcomes = await self._apply(tx, batch, now)
                pruned = now - self._last_prune_ms >= PRUNE_EVERY_MS
                if pruned:
                    await tx.prune(now - APPLIED_RETAIN_MS)
                await tx.finish(outcomes)
        except backend.batch_errors as exc:
            logger.warning("group commit of %d mutation(s) failed: %s", len(batch), exc)
            return all_failed(batch, exc)
        if pruned:
            self._last_prune_ms = now
        return outcomes

    async def _apply(
        self, tx: CommitTransaction, batch: Sequence[PendingMutation], now: int
    ) -> list[CommitOutcome]:
        docs: dict[str, StoredDocument] = {}  # later mutations of a user see earlier ones
        outcomes = [await self._commit_one(tx, pending, docs, now) for pending in batch]
        for user_id, doc in docs.items():
            cutoff = doc.revision - self.changelog_retain
            if cutoff >= 1:
                await tx.trim_changes(user_id, cutoff)
        return outcomes

    async def _commit_one(
        self,
        tx: CommitTransaction,
        pending: PendingMutation,
        docs: dict[str, StoredDocument],
        now: int,
    ) -> CommitOutcome:
        user_id = pending.user_id
        refused = tx.refusal(user_id)
        if refused is not None:
            return CommitOutcome(user_id, pending.mutation.mutation_id, 0, error=refused)
        await tx.begin_mutation(pending.actor or user_id)  # a team's writer acts as themself
        try:
            if pending.actor is not None and (team_id := team_id_of(user_id)) is not None:
                # The writer's role now, in this transaction: a member removed or demoted
                # since the request arrived is refused here.
                role = await tx.team_role(team_id, pending.actor)
                check_mutation(role, pending.kind, pending.mutation.patch)
            plan = await self._plan(tx, pending, docs.get(user_id), now)
            if plan.outcome.error is None:
                await tx.write(plan, now)
        except tx.mutation_errors as exc:
            # Rolling back to the savepoint raises if the database already dropped the whole
            # transaction (disk full, connection gone): then the batch fails as one.
            await tx.rollback_mutation()
            await tx.end_mutation()
            error = exc if isinstance(exc, LiveSettingsError) else tx.translate(exc)
            if error is not exc:
                error.__cause__ = exc
            return CommitOutcome(user_id, pending.mutation.mutation_id, 0, error=error)
        if plan.outcome.error is not None:
            await tx.rollback_mutation()  # e.g. a data key made for a refused write
        await tx.end_mutation()
        if plan.document is not None:
            docs[user_id] = plan.document
        return plan.outcome

    async def _plan(
        self,
        tx: CommitTransaction,
        pending: PendingMutation,
        known: StoredDocument | None,
        now: int,
    ) -> Plan:
        user_id = pending.user_id
        doc, prior = await tx.load(pending, known)
        inverses: list[dict[str, Any]] = []
        oldest = 0
        if prior is None and pending.kind == "revert" and pending.revert_to is not None:
            inverses, oldest = await load_revert(tx, user_id, pending.revert_to, doc.revision)
        seal: Sealer | None = None
        if prior is None and has_secrets(pending):
            seal = sealer(user_id, await self.data_key(tx, user_id), now)
        # A document planned earlier in this batch, or the cached copy of one planned in an
        # earlier batch, was validated under these limits: only what changes is walked again.
        validated = known is not None or self.documents.validated(user_id, doc)
        return plan_mutation(
            pending,
            doc,
            prior,
            now_ms=now,
            seal=seal,
            limits=self._limits,
            schema=self._schema,
            inverses=inverses,
            oldest_revertable=oldest,
            changelog_retain=self.changelog_retain,
            hasher=self._hasher,
            validated=validated,
        )

    async def data_key(self, table: KeyTable, user_id: str) -> DataKey:
        """The user's data key, made (and stored wrapped) on the user's first secret."""
        if self.keyring is None:
            raise ConfigError("storing a secret needs a master key, and none is configured")
        return await get_or_create_data_key(
            table, self.keyring, user_id, self.now_text, cache=self.keys
        )


async def load_revert(
    tx: CommitTransaction, user_id: str, target: int, revision: int
) -> tuple[list[dict[str, Any]], int]:
    """What a revert to ``target`` needs: the inverse patches back to it (none when it is out
    of range) and the oldest revision the retained log can rebuild."""
    inverses: list[dict[str, Any]] = []
    if 0 <= target <= revision:
        inverses = [loads(raw, "inverse patch") for raw in await tx.inverses_after(user_id, target)]
    return inverses, await tx.oldest_known(user_id, revision)


def sealer(user_id: str, key: DataKey, now: int) -> Sealer:
    def seal(name: str, plaintext: str) -> dict[str, Any]:
        return seal_secret(user_id, name, plaintext, key, now_ms=now)

    return seal


def all_failed(batch: Sequence[PendingMutation], exc: BaseException) -> list[CommitOutcome]:
    """Every outcome of a batch whose transaction failed as a whole (nothing was written)."""
    error = StorageError(f"the commit failed: {exc}")
    error.__cause__ = exc
    return [CommitOutcome(p.user_id, p.mutation.mutation_id, 0, error=error) for p in batch]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (all it awaits is synchronous work) to its end,
    without an event loop: how SQLite's writer thread runs the template."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a synchronous transaction suspended")


def wall_ms() -> int:
    """The wall clock in milliseconds (a store's default ``now_ms``)."""
    return time.time_ns() // 1_000_000
