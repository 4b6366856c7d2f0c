"""Fixtures of the team tests: a fresh set-up PostgreSQL database per test."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import require_service
from tests.multinode.conftest import REDIS_URL


@pytest.fixture
def redis_bus_url(redis_available: bool) -> str:
    """A Redis bus URL on a channel no other test uses."""
    require_service("Redis (127.0.0.1:6379)", redis_available)
    return f"{REDIS_URL}?channel=ls-teams-{uuid.uuid4().hex[:12]}"
