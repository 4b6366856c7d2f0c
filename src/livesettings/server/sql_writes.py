"""Writes made in SQL on PostgreSQL, applied by the server: the drain of the ``sql_writes`` queue.

The triggers (:mod:`livesettings.store.pg_triggers`) queue each write made in SQL to
``user_preferences`` as a merge patch, and notify. Every node drains the queue — at start, on
each notification (a LISTEN connection of its own), and on a poll every few seconds in case
one was missed — through the one write path of DESIGN §3::

    claim (a lease per user) ─ per user, in queue order: validate → writer.submit → outcome
                             └─ finish the rows applied or refused

A row is a mutation by client ``sql`` with mutation id ``sql-<queue id>``, so a row applied
again after a crash (its lease ran out before it was finished) is a repeat, not a second
revision. Its base revision and edit time are the row's: the merge rule treats it like any
client's edit. The commit notifies the bus as every write does, so each node pushes it to its
subscribers. A row the write path refuses (a value the document does not accept) is finished
too — logged without its values, audited and counted (``livesettings_sql_writes_total``); a
row that fails for a passing reason (the database, a shutdown) stays queued for a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ..audit import audit
from ..document import validate_patch
from ..errors import ConnectionClosed, LiveSettingsError, StorageError, ValidationError
from ..merge import Mutation, clamp_edited_at
from ..store.base import PendingMutation
from ..store.idempotency import body_hash
from ..store.pg_triggers import SqlWrite, SqlWriteStatus

if TYPE_CHECKING:
    from .services import Services

__all__ = [
    "SQL_CLIENT_ID",
    "SqlWriteDrain",
    "SqlWriteQueue",
]

log = logging.getLogger("livesettings.sql_writes")

SQL_CLIENT_ID: Final = "sql"
"""The client id of every write made in SQL."""

_CLAIM: Final = 100  # rows per claim
_RETRY_S: Final = 1.0  # after a failed claim or a lost LISTEN connection


@runtime_checkable
class SqlWriteQueue(Protocol):
    """What the drain needs of a store: the PostgreSQL store has it, SQLite has no triggers."""

    async def claim_sql_writes(self, limit: int) -> list[SqlWrite]: ...

    async def finish_sql_writes(self, ids: Sequence[int]) -> None: ...

    async def listen_sql_writes(self, on_write: Callable[[], None]) -> Any: ...

    async def sql_write_status(self) -> SqlWriteStatus: ...


class _Transient(Exception):
    """A row could not be applied now (database, shutdown): it stays queued."""


class SqlWriteDrain:
    """Applies queued SQL writes through the node's writer; one task per node."""

    def __init__(
        self, services: Services, queue: SqlWriteQueue, *, poll_interval: float = 5.0
    ) -> None:
        self._services = services
        self._queue = queue
        self._poll = poll_interval
        self._wakeup = asyncio.Event()
        self._listener: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="livesettings-sql-writes")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_listener()

    def wake(self) -> None:
        """A write was queued (its NOTIFY arrived): drain soon."""
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._listen()
            self._wakeup.clear()  # before draining: a NOTIFY during the drain drains again
            try:
                while await self.drain_once():
                    pass
            except LiveSettingsError as exc:
                log.warning("could not drain the writes made in SQL: %s", exc.message)
                await asyncio.sleep(_RETRY_S)
            except Exception:  # never let the drain die: the poll retries
                log.exception("draining the writes made in SQL failed")
                await asyncio.sleep(_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll)

    async def _listen(self) -> None:
        """(Re)open the LISTEN connection; without one the poll still drains."""
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        try:
            self._listener = await self._queue.listen_sql_writes(self.wake)
        except LiveSettingsError as exc:
            log.warning("cannot listen for writes made in SQL (polling): %s", exc.message)

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            try:
                await asyncio.wait_for(listener.close(), _RETRY_S)
            except Exception:  # closing a broken connection must not fail shutdown
                listener.terminate()

    async def drain_once(self) -> int:
        """Claim one batch and apply it (each user's rows in order, users side by side);
        how many rows were claimed."""
        rows = await self._queue.claim_sql_writes(_CLAIM)
        if not rows:
            return 0
        by_user: dict[str, list[SqlWrite]] = {}
        for row in rows:
            by_user.setdefault(row.user_id, []).append(row)
        done = await asyncio.gather(
            *(self._apply_user(user_rows) for user_rows in by_user.values())
        )
        finished = [row_id for ids in done for row_id in ids]
        if finished:
            await self._queue.finish_sql_writes(finished)
        return len(rows)

    async def _apply_user(self, rows: list[SqlWrite]) -> list[int]:
        """Apply one user's rows in order; the ids to finish. A passing failure stops there:
        the rest keep their order and are claimed again once the lease runs out."""
        finished: list[int] = []
        for row in rows:
            try:
                outcome = await self._apply(row)
            except _Transient as exc:
                log.warning(
                    "a write made in SQL to user %s (queue id %d) waits for a retry: %s",
                    row.user_id,
                    row.id,
                    exc,
                )
                break
            except Exception:  # a bug, not the row's fault: keep it queued, keep the order
                log.exception(
                    "applying a write made in SQL to user %s (queue id %d) failed",
                    row.user_id,
                    row.id,
                )
                break
            self._services.metrics.sql_writes.inc(outcome=outcome)
            finished.append(row.id)
        return finished

    async def _apply(self, row: SqlWrite) -> str:
        """``applied``, ``lost`` (committed without a revision: every edit lost to a newer
        one, under the merge rule) or ``refused``; ``_Transient`` when it must wait."""
        services = self._services
        try:
            patch = validate_patch(json.loads(row.patch), services.config.limits, services.schema)
        except (ValueError, RecursionError, LiveSettingsError) as exc:
            # Finished, never retried: a row no node can apply must not hold up the user's
            # later ones.
            return self._refused(row, exc)
        mutation = Mutation(
            f"sql-{row.id}",
            SQL_CLIENT_ID,
            row.base_revision,
            patch,
            clamp_edited_at(row.edited_at, services.clock.time_ms()),
        )
        pending = PendingMutation(row.user_id, mutation, body_hash("patch", patch))
        try:
            outcome = await services.writer.submit(pending)
        except ConnectionClosed as exc:  # the writer stopped: another node (or restart) will
            raise _Transient(exc.message) from exc
        error = outcome.error
        if isinstance(error, StorageError | ConnectionClosed):
            raise _Transient(error.message)
        if error is not None:
            return self._refused(row, error)
        services.metrics.mutations.inc(outcome="repeated" if outcome.repeated else "committed")
        for conflict in outcome.conflict_payloads:
            services.metrics.conflicts.inc(kept=str(conflict.get("kept")))
        if outcome.change is None and not outcome.repeated:
            return "lost"
        return "applied"

    def _refused(self, row: SqlWrite, exc: Exception) -> str:
        # Never the values: the code, and the path of the value that was refused.
        code = exc.code if isinstance(exc, LiveSettingsError) else "invalid_json"
        path = exc.path if isinstance(exc, ValidationError) else None
        log.warning(
            "a write made in SQL to user %s (queue id %d, by %s) was refused: %s%s",
            row.user_id,
            row.id,
            row.written_by,
            code,
            f" at {path}" if path else "",
        )
        audit(
            "sql_write_refused",
            user_id=row.user_id,
            queue_id=row.id,
            written_by=row.written_by,
            code=code,
            path=path,
        )
        return "refused"
