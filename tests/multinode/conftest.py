"""Several real ``livesettings serve`` processes on one PostgreSQL database.

Each test gets a database of its own, set up by ``livesettings setup`` run as the owner, and an
app role (created by that setup) that the nodes connect as; both are dropped afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from livesettings.auth import TokenIssuer
from tests.conftest import require_service
from tests.support.postgres import (
    Database,
    set_up_database,
    sql,
)
from tests.support.server import TEST_JWT_SECRET, ServerProcess

__all__ = ["REDIS_URL", "Database", "cluster", "sql", "token_for"]

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def database(postgres_available: bool) -> Iterator[Database]:
    """A fresh database owned by a fresh owner role, set up by ``livesettings setup``."""
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    with set_up_database("ls_mn") as db:
        yield db


@pytest.fixture
def redis_bus_url(redis_available: bool) -> str:
    """A Redis bus URL on a channel no other test uses."""
    require_service("Redis (127.0.0.1:6379)", redis_available)
    return f"{REDIS_URL}?channel=ls-test-{uuid.uuid4().hex[:12]}"


def token_for(user_id: str) -> str:
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue(user_id)
    return token


@contextmanager
def cluster(tmp_path: Path, count: int, **settings: Any) -> Iterator[list[ServerProcess]]:
    """``count`` nodes with the same settings, started side by side, stopped at the end."""
    nodes = [ServerProcess(tmp_path / f"node{i + 1}", **settings) for i in range(count)]
    errors: list[BaseException] = []

    def start(node: ServerProcess) -> None:
        try:
            node.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield nodes
    finally:
        for node in nodes:
            node.stop()
