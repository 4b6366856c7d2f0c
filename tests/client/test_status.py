"""Status snapshots and the trailing sync rate, on a clock passed in."""

from __future__ import annotations

import dataclasses

import pytest

from livesettings.client import ConnectionState, Status
from livesettings.client.status import SyncRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sync_rate_counts_the_trailing_minute() -> None:
    clock = Clock()
    rate = SyncRate(clock)
    for _ in range(3):
        rate.add()
        clock.now += 10
    assert rate.count() == 3  # at 1030: syncs at 1000, 1010, 1020
    clock.now = 1060.0
    assert rate.count() == 2  # the one at 1000 is a minute old
    clock.now = 1080.5
    assert rate.count() == 0


def test_status_is_an_immutable_snapshot() -> None:
    status = Status()
    assert (status.connection, status.syncing, status.unsaved) == (
        ConnectionState.CONNECTING,
        False,
        0,
    )
    assert (status.last_sync_at, status.error_count, status.syncs_per_minute, status.error) == (
        None,
        0,
        0,
        None,
    )
    assert not status.online
    assert Status(connection=ConnectionState.ONLINE).online
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.unsaved = 3  # type: ignore[misc]
    assert [state.value for state in ConnectionState] == [
        "connecting",
        "online",
        "offline",
        "error",
    ]
