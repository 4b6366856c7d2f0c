"""This machine's PostgreSQL for tests: superuser SQL, scratch roles and databases, setup.

Other engineers and test runs share the cluster, so every role and database made here carries
a random tag and is dropped afterwards, and nothing here ever stops or reconfigures the cluster
itself. A test database belongs to a non-superuser owner role (CREATEROLE, so ``setup`` can
create the app role), as it would in production; the helpers' own connections use the
superuser (trust authentication on this machine).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from tests.support.server import TEST_JWT_SECRET

__all__ = [
    "HOST",
    "SUPERUSER",
    "SUPERUSER_URL",
    "Database",
    "clone_database",
    "create_database",
    "drop_database",
    "drop_roles",
    "run_setup",
    "set_up_database",
    "sql",
    "superuser",
    "url",
]

HOST = "127.0.0.1:5432"
SUPERUSER = "postgres"


def url(role: str, database: str, password: str | None = None) -> str:
    """``postgresql://role[:password]@HOST/database``."""
    secret = f":{password}" if password else ""
    return f"postgresql://{role}{secret}@{HOST}/{database}"


SUPERUSER_URL = url(SUPERUSER, "postgres")


async def superuser(database: str = "postgres") -> Any:
    """A superuser connection (asyncpg) to ``database``."""
    return await asyncpg.connect(url(SUPERUSER, database))


def sql(query: str, *args: Any, url: str = SUPERUSER_URL) -> list[dict[str, Any]]:
    """Run one statement on a fresh connection (superuser by default); the rows as dicts.

    Synchronous, for tests and fixtures that are not coroutines.
    """

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


@dataclass(frozen=True)
class Database:
    """One scratch database, its owner role and the app role ``setup`` creates in it."""

    name: str
    owner: str
    app_role: str
    owner_url: str
    app_url: str
    master_keys: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        """``ServerProcess`` settings of a node on this database, as the app role."""
        return {"database_url": self.app_url, "master_keys": self.master_keys, **extra}

    def setup_env(self) -> dict[str, str]:
        """The environment ``livesettings setup`` runs with: the owner sets up the app role."""
        return {
            "LIVESETTINGS_ADMIN_DATABASE_URL": self.owner_url,
            "LIVESETTINGS_DATABASE_URL": self.app_url,
            "LIVESETTINGS_MASTER_KEYS": self.master_keys,
            "LIVESETTINGS_JWT_SECRET": TEST_JWT_SECRET,
        }


def create_database(prefix: str = "ls") -> Database:
    """A fresh empty database owned by a fresh owner role; the app role is only named."""
    tag = uuid.uuid4().hex[:10]
    name, owner, app = f"{prefix}_{tag}", f"{prefix}_owner_{tag}", f"{prefix}_app_{tag}"
    key = base64.b64encode(os.urandom(32)).decode()
    sql(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
    try:
        sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    except BaseException:
        sql(f'DROP ROLE IF EXISTS "{owner}"')
        raise
    return Database(
        name=name,
        owner=owner,
        app_role=app,
        owner_url=url(owner, name),
        app_url=url(app, name, f"app-password-{tag}"),
        master_keys=f"k1:{key}",
    )


def run_setup(db: Database, timeout: float = 60.0) -> str:
    """``python -m livesettings setup`` as the owner; its stdout (fails the test otherwise)."""
    done = subprocess.run(
        [sys.executable, "-m", "livesettings", "setup"],
        env={**os.environ, **db.setup_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def set_up_database(prefix: str = "ls") -> Iterator[Database]:
    """A fresh database set up by ``livesettings setup``; dropped with its roles afterwards."""
    db = create_database(prefix)
    try:
        run_setup(db)
        yield db
    finally:
        drop_database(db)
        drop_roles(db)


def clone_database(template: Database) -> Database:
    """A fresh copy of a set-up ``template`` (same roles and keys), much faster than setup.

    The template must have no open connections while it is copied.
    """
    name = f"{template.name}_{uuid.uuid4().hex[:6]}"[:63]
    sql(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}" OWNER "{template.owner}"')
    return replace(
        template,
        name=name,
        owner_url=url(template.owner, name),
        app_url=template.app_url.rsplit("/", 1)[0] + "/" + name,
    )


def drop_database(db: Database) -> None:
    """Drop the database, ending whatever is still connected to it."""
    sql(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def drop_roles(db: Database) -> None:
    """Drop the app and owner roles (after every database that uses them is gone)."""
    sql(f'DROP ROLE IF EXISTS "{db.app_role}"')
    sql(f'DROP ROLE IF EXISTS "{db.owner}"')
