"""Revoked token ids (``token revoke --jti``), on every backend: polled in order, and pruned
once long expired."""

from __future__ import annotations

import time

from livesettings.store import Store
from livesettings.store.base import TOKEN_REVOCATION_GRACE_S


async def test_token_revocations_are_polled_in_order(store: Store) -> None:
    now = int(time.time())
    assert await store.token_revocations_since(0) == []
    await store.revoke_token("jti-1", now + 600)
    await store.revoke_token("jti-2", now + 60)
    rows = await store.token_revocations_since(0)
    assert [(jti, until) for _, jti, until in rows] == [("jti-1", now + 600), ("jti-2", now + 60)]
    assert rows[0][0] < rows[1][0]
    assert await store.token_revocations_since(rows[0][0]) == rows[1:]
    assert await store.token_revocations_since(rows[1][0]) == []


async def test_long_expired_token_revocations_are_pruned_by_the_next_one(store: Store) -> None:
    now = int(time.time())
    await store.revoke_token("long-gone", now - TOKEN_REVOCATION_GRACE_S - 60)
    await store.revoke_token("just-expired", now - 60)  # kept: a clock leeway may still apply
    await store.revoke_token("live", now + 600)
    rows = await store.token_revocations_since(0)
    assert [jti for _, jti, _ in rows] == ["just-expired", "live"]
