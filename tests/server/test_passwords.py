"""Password hashing runs on its own threads with a bounded backlog, never on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from livesettings.auth import PasswordHasher
from livesettings.errors import RateLimited
from livesettings.server.passwords import PasswordPool

# Deliberately expensive (64 MiB, 4 passes: about 0.3 s here), so that a hash on the loop
# could not hide among scheduling noise.
SLOW = PasswordHasher(time_cost=4, memory_cost=65536)
HASHED = SLOW.hash("correct horse 1")


@pytest.fixture
def pool() -> Iterator[PasswordPool]:
    made = PasswordPool(SLOW, workers=1, queue=1)
    try:
        yield made
    finally:
        made.close()


async def test_the_loop_keeps_ticking_while_passwords_are_checked(pool: PasswordPool) -> None:
    started = time.perf_counter()
    assert await pool.verify(HASHED, "correct horse 1") is True
    one = time.perf_counter() - started

    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(
            pool.verify(HASHED, "correct horse 1"), pool.verify(HASHED, "wrong horse 1")
        )
    finally:
        ticking.cancel()
    assert results == [True, False]
    assert len(gaps) >= 10
    # On the loop, one gap would last a whole verify; off it, the loop barely notices.
    assert max(gaps) < one / 2, (max(gaps), one)


async def test_a_full_backlog_is_refused_at_once_with_retry_after(pool: PasswordPool) -> None:
    first = asyncio.ensure_future(pool.verify(HASHED, "a"))
    second = asyncio.ensure_future(pool.hash("b"))
    await asyncio.sleep(0)
    assert pool.in_flight == 2
    started = time.perf_counter()
    with pytest.raises(RateLimited) as refused:
        await pool.dummy_verify("c")
    assert time.perf_counter() - started < 0.1  # refused, not queued
    assert refused.value.status == 429 and refused.value.retry_after > 0
    assert await first is False
    assert (await second).startswith("$argon2id$")
    assert pool.in_flight == 0
    assert await pool.dummy_verify("c") is False


async def test_a_cancelled_request_holds_its_slot_until_the_thread_is_done(
    pool: PasswordPool,
) -> None:
    waiting = asyncio.ensure_future(pool.verify(HASHED, "a"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.in_flight == 1  # the hash still runs on its thread
    # The next job waits for that thread, and finds the slot given back afterwards.
    assert await pool.verify(HASHED, "correct horse 1") is True
    assert pool.in_flight == 0
