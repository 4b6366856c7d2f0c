"""Password hashing off the event loop: a few threads and a bounded backlog.

An Argon2id hash or verify takes tens of milliseconds of CPU by design. Run on the event loop,
every sign-in stalls every socket and request of the node meanwhile; so each one runs on one of
``ARGON2_WORKERS`` threads (argon2's C code releases the GIL). At most ``ARGON2_QUEUE`` more
wait for a thread; past that the node answers 429 ``rate_limited`` with ``Retry-After`` at
once instead of queueing without bound (memory: each running hash holds
``ARGON2_MEMORY_COST`` KiB).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..auth import PasswordHasher
from ..errors import RateLimited

__all__ = ["PasswordPool"]

_T = TypeVar("_T")

RETRY_AFTER = 1.0  # seconds: a full backlog drains in about that long at the defaults


class PasswordPool:
    """A :class:`~livesettings.auth.PasswordHasher` whose work runs on ``workers`` threads,
    with at most ``queue`` jobs waiting; a job beyond that raises :class:`RateLimited`."""

    def __init__(self, hasher: PasswordHasher, *, workers: int, queue: int) -> None:
        self.hasher = hasher
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Jobs running or waiting for a thread."""
        return self._in_flight

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        return await self._run(self.hasher.verify, hashed, password)

    async def dummy_verify(self, password: str) -> bool:
        """The time of a real verify (an unknown username), then False."""
        return await self._run(self.hasher.dummy_verify, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        with self._lock:
            if self._in_flight >= self.capacity:
                raise RateLimited(
                    "the server is busy checking passwords; try again shortly",
                    retry_after=RETRY_AFTER,
                    details={"retry_after": RETRY_AFTER},
                )
            self._in_flight += 1
        try:
            job: Future[_T] = self._executor.submit(fn, *args)
        except RuntimeError:  # shut down
            self._done(None)
            raise
        # Counted until the thread is done, even when the request that asked is cancelled.
        job.add_done_callback(self._done)
        return await asyncio.wrap_future(job)

    def _done(self, _: object) -> None:
        with self._lock:
            self._in_flight -= 1
