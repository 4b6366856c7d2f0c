"""Reconnect delays: exponential backoff with jitter and a cap — the one generator.

Every reconnecting part (the Python client, the PostgreSQL and Redis buses) takes a *factory*
of delay iterators (``reconnect_delays=``), calls it afresh after every connection that
reached its server, and draws one delay per failed attempt. Tests pass short real delays
(``lambda: itertools.repeat(0.05)``) instead of mocking time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["DelayFactory", "backoff"]

DelayFactory = Callable[[], Iterator[float]]
"""What ``reconnect_delays=`` accepts: a callable returning a fresh iterator of seconds."""


def backoff(
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    *,
    jitter: float = 1.0,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Delays ``d * (1 - jitter + jitter * rng())`` with ``d = min(cap, initial * factor**n)``
    for n = 0, 1, 2, … (never ends).

    The default full jitter (``jitter=1.0``: AWS Architecture Blog, "Exponential Backoff And
    Jitter") spreads the reconnects of many clients after a server restart instead of having
    them arrive in waves; ``jitter=0.5`` draws from ``[d/2, d]`` so no delay is near zero.
    ``rng`` returns a float in [0, 1); pass ``lambda: 1.0`` for the un-jittered ceiling.

    >>> import itertools
    >>> list(itertools.islice(backoff(1, 2, 5, rng=lambda: 1.0), 5))
    [1.0, 2.0, 4.0, 5.0, 5.0]
    >>> list(itertools.islice(backoff(1, 2, 5, jitter=0.5, rng=lambda: 0.0), 4))
    [0.5, 1.0, 2.0, 2.5]
    """
    if initial < 0 or cap < 0 or factor < 1:
        raise ValueError("backoff needs initial >= 0, cap >= 0 and factor >= 1")
    if not 0 <= jitter <= 1:
        raise ValueError("backoff needs 0 <= jitter <= 1")
    ceiling = float(initial)
    floor = 1.0 - jitter
    while True:
        yield min(cap, ceiling) * (floor + jitter * rng())
        # Stop growing once past the cap, so the float never overflows on long outages.
        if ceiling < cap:
            ceiling *= factor
