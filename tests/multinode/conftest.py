"""Several real ``livesettings serve`` processes on one PostgreSQL database.

Each test gets a database of its own, set up by ``livesettings setup`` run as the owner, and an
app role (created by that setup) that the nodes connect as; both are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from livesettings.auth import TokenIssuer
from tests.conftest import require_service
from tests.support.server import TEST_JWT_SECRET, ServerProcess

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def sql(query: str, *args: Any, url: str = PG_ADMIN_URL) -> list[dict[str, Any]]:
    """Run one statement on a fresh connection (superuser by default); the rows as dicts."""
    import asyncpg

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


@dataclass(frozen=True)
class Database:
    name: str
    owner: str
    app_role: str
    owner_url: str
    app_url: str
    master_keys: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        """What every node of the test is started with."""
        return {"database_url": self.app_url, "master_keys": self.master_keys, **extra}


def run_setup(db: Database) -> str:
    env = dict(os.environ)
    env.update(
        {
            "LIVESETTINGS_ADMIN_DATABASE_URL": db.owner_url,
            "LIVESETTINGS_DATABASE_URL": db.app_url,
            "LIVESETTINGS_MASTER_KEYS": db.master_keys,
            "LIVESETTINGS_JWT_SECRET": TEST_JWT_SECRET,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "livesettings", "setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def database(postgres_available: bool) -> Iterator[Database]:
    """A fresh database owned by a fresh owner role, set up by ``livesettings setup``."""
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    suffix = uuid.uuid4().hex[:10]
    name, owner, app = f"ls_mn_{suffix}", f"ls_owner_{suffix}", f"ls_app_{suffix}"
    key = base64.b64encode(os.urandom(32)).decode()
    db = Database(
        name=name,
        owner=owner,
        app_role=app,
        owner_url=f"postgresql://{owner}@127.0.0.1:5432/{name}",
        app_url=f"postgresql://{app}:app-password-{suffix}@127.0.0.1:5432/{name}",
        master_keys=f"k1:{key}",
    )
    sql(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
    # The SECURITY DEFINER functions carry `SET livesettings.scope`, which PostgreSQL 15
    # lets only a superuser or a grantee declare.
    sql(f'GRANT SET ON PARAMETER livesettings.scope TO "{owner}"')
    sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    try:
        run_setup(db)
        yield db
    finally:
        sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        sql(f'DROP ROLE IF EXISTS "{app}"')
        sql(f'REVOKE SET ON PARAMETER livesettings.scope FROM "{owner}"')
        sql(f'DROP ROLE IF EXISTS "{owner}"')


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
