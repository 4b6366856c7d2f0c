"""Mutations as the request layer hands them to the writer, for in-process tests."""

from __future__ import annotations

import uuid
from typing import Any

from livesettings.merge import Mutation
from livesettings.store.base import PendingMutation

EDITED_AT_MS = 1_764_349_200_000  # 2025-11-28T17:00:00.000Z


def pending(user_id: str, patch: dict[str, Any], *, client_id: str = "c1") -> PendingMutation:
    """A merge-patch mutation of ``user_id`` with a fresh mutation id, based on the revision
    current when it commits."""
    mutation_id = uuid.uuid4().hex
    mutation = Mutation(mutation_id, client_id, None, patch, EDITED_AT_MS)
    return PendingMutation(user_id, mutation, body_hash="sha256:" + mutation_id)
