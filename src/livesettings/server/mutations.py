"""Every write, from a request to a durable mutation: the one write path of DESIGN §3.

The adapters — HTTP ``PATCH``/``PUT``/revert, the service ``PATCH`` and the WebSocket
``update`` — only parse their input into an :class:`Edit` and answer. Here a write is
checked, charged to the user's rate limit, given its clamped edit time and body hash, and
handed to the writer as a :class:`~livesettings.store.base.PendingMutation`; its outcome is
counted in the metrics::

    adapter ─ check_write_rate ─ read the body ─ patch/put/revert_mutation ─ commit/enqueue
                                                                    └─ Writer → Store.commit
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..document import validate_patch
from ..errors import LiveSettingsError, RateLimited
from ..merge import Mutation, clamp_edited_at
from ..replacement import checked_replacement
from ..store.base import CommitOutcome, MutationKind, PendingMutation
from ..store.idempotency import body_hash
from ..teams import check_mutation
from .services import Services
from .writer import rate_cost

__all__ = [
    "Edit",
    "Member",
    "check_write_rate",
    "commit",
    "enqueue",
    "patch_mutation",
    "put_mutation",
    "revert_mutation",
]


@dataclass(frozen=True, slots=True)
class Edit:
    """Who sent a write and what it builds on, as an adapter read it from the request.

    ``edited_at`` is the client's clock (ms), clamped here to ``[0, now]``; ``None`` is now.
    ``expected_revision`` is the strict-mode ``If-Match`` revision.
    """

    mutation_id: str
    client_id: str
    base_revision: int | None = None
    edited_at: int | None = None
    expected_revision: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """Who writes a team's document, and their role there (checked before anything queues).

    The rate limit of a team write is the member's, per document (DESIGN §11).
    """

    user_id: str
    role: str


def _limit_key(key: str, member: Member | None) -> str:
    return key if member is None else f"{member.user_id} {key}"


def _refuse_if_limited(wait: float) -> None:
    if wait > 0:
        raise RateLimited(
            "too many writes; slow down", retry_after=wait, details={"retry_after": wait}
        )


def check_write_rate(services: Services, user_id: str, member: Member | None = None) -> None:
    """429 for a user at the write limit, before its body is read or checked.

    ``user_id`` is the document key; ``member`` the user writing a team's document."""
    _refuse_if_limited(services.write_limiter.wait_for(_limit_key(user_id, member)))


def patch_mutation(
    services: Services, user_id: str, patch: Any, edit: Edit, member: Member | None = None
) -> PendingMutation:
    """A merge patch (checked here, and against the member's role) as a pending mutation;
    takes its rate-limit cost."""
    checked = validate_patch(patch, services.config.limits, services.schema)
    return _pending(services, user_id, edit, checked, body_hash("patch", checked), member=member)


def put_mutation(
    services: Services, user_id: str, body: Any, edit: Edit, member: Member | None = None
) -> PendingMutation:
    """A whole document (checked here; masked secrets are kept) as a pending mutation."""
    checked = checked_replacement(body, services.config.limits, services.schema)
    digest = body_hash("put", body)
    return _pending(services, user_id, edit, checked, digest, kind="put", member=member)


def revert_mutation(
    services: Services, user_id: str, revision: int, edit: Edit, member: Member | None = None
) -> PendingMutation:
    """A revert to ``revision`` as a pending mutation (the store plans its patch); a revert
    restores no secret, so a team's members may revert, its viewers may not."""
    digest = body_hash("revert", revision)
    return _pending(
        services, user_id, edit, {}, digest, kind="revert", revert_to=revision, member=member
    )


def _pending(
    services: Services,
    user_id: str,
    edit: Edit,
    patch: dict[str, Any],
    digest: str,
    *,
    kind: MutationKind = "patch",
    revert_to: int | None = None,
    member: Member | None = None,
) -> PendingMutation:
    if member is not None:  # checked again at commit (store/commit.py), in its transaction
        check_mutation(member.role, kind, patch)
    cost = rate_cost(patch)
    _refuse_if_limited(services.write_limiter.take(_limit_key(user_id, member), cost))
    now_ms = services.clock.time_ms()
    mutation = Mutation(
        edit.mutation_id,
        edit.client_id,
        edit.base_revision,
        patch,
        clamp_edited_at(edit.edited_at, now_ms),
    )
    return PendingMutation(
        user_id,
        mutation,
        digest,
        kind=kind,
        expected_revision=edit.expected_revision,
        revert_to=revert_to,
        actor=None if member is None else member.user_id,
    )


def _count(services: Services, outcome: CommitOutcome) -> None:
    services.metrics.mutations.inc(outcome="repeated" if outcome.repeated else "committed")
    for conflict in outcome.conflict_payloads:
        services.metrics.conflicts.inc(kept=str(conflict.get("kept")))


async def commit(services: Services, pending: PendingMutation) -> CommitOutcome:
    """Submit ``pending`` and wait until it is durable; a refusal is raised."""
    outcome = await services.writer.submit(pending)
    if outcome.error is not None:
        raise outcome.error
    _count(services, outcome)
    return outcome


def enqueue(
    services: Services,
    pending: PendingMutation,
    answer: Callable[[CommitOutcome], None],
    refuse: Callable[[LiveSettingsError], None],
) -> None:
    """Queue ``pending`` without waiting: at its commit, before any push of it, ``answer``
    gets the outcome (or ``refuse`` the error), so a socket's ``ack`` precedes its ``change``.
    Raises when the writer takes no more work."""

    def done(outcome: CommitOutcome) -> None:
        if outcome.error is not None:
            refuse(outcome.error)
            return
        _count(services, outcome)
        answer(outcome)

    services.writer.enqueue(pending, done)
