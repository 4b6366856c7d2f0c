"""Fixtures of the PostgreSQL-only tests: a scratch (databases and roles) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import require_service

from .cluster import Scratch


@pytest.fixture
async def scratch(postgres_available: bool) -> AsyncIterator[Scratch]:
    require_service("PostgreSQL on 127.0.0.1:5432", postgres_available)
    made = Scratch()
    try:
        yield made
    finally:
        await made.drop()
