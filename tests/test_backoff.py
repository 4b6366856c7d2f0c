"""The one backoff generator (``livesettings.backoff``), shared by the client and the buses."""

from __future__ import annotations

import itertools

import pytest

from livesettings import backoff as backoff_module
from livesettings.backoff import backoff
from livesettings.client import backoff as client_backoff


def test_the_client_re_exports_the_same_generator() -> None:
    assert client_backoff is backoff
    assert backoff_module.__all__ == ["DelayFactory", "backoff"]


def test_half_jitter_draws_from_the_upper_half() -> None:
    # What the buses used: delay * uniform(0.5, 1.0), doubling from 0.05 up to 5 s.
    low = list(itertools.islice(backoff(0.05, 2.0, 5.0, jitter=0.5, rng=lambda: 0.0), 9))
    high = list(itertools.islice(backoff(0.05, 2.0, 5.0, jitter=0.5, rng=lambda: 1.0), 9))
    assert high == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert low == [d / 2 for d in high]


def test_no_jitter_is_the_plain_exponential() -> None:
    delays = backoff(1.0, 3.0, 20.0, jitter=0.0, rng=lambda: 0.123)
    assert list(itertools.islice(delays, 5)) == [1.0, 3.0, 9.0, 20.0, 20.0]


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_out_of_range_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        next(backoff(jitter=jitter))
