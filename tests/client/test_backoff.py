"""Reconnect delays: exponential, capped, fully jittered."""

from __future__ import annotations

import itertools

import pytest

from livesettings.client import backoff


def test_ceiling_doubles_up_to_the_cap() -> None:
    delays = backoff(0.5, 2.0, 5.0, rng=lambda: 1.0)
    assert list(itertools.islice(delays, 7)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_full_jitter_scales_the_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.25, 0.999])
    delays = backoff(1.0, 3.0, 100.0, rng=lambda: next(draws))
    assert list(itertools.islice(delays, 4)) == [0.0, 1.5, 2.25, 26.973]


def test_default_jitter_stays_within_bounds() -> None:
    for n, delay in enumerate(itertools.islice(backoff(0.1, 2.0, 1.0), 50)):
        assert 0.0 <= delay <= min(1.0, 0.1 * 2**n)


def test_long_outages_do_not_overflow() -> None:
    last = list(itertools.islice(backoff(1.0, 10.0, 30.0, rng=lambda: 1.0), 2000))[-1]
    assert last == 30.0


@pytest.mark.parametrize(("initial", "factor", "cap"), [(-1, 2, 1), (1, 0.5, 1), (1, 2, -1)])
def test_bad_parameters(initial: float, factor: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        next(backoff(initial, factor, cap))
