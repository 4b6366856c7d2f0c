"""Scratch databases and roles on this machine's PostgreSQL, made per test and dropped after.

Roles are cluster-wide, so every name carries a random tag. A test's databases belong to a
non-superuser owner role (CREATEROLE, to let ``setup`` create the app role), as they would in
production; this module's own connections use the superuser.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from livesettings.crypto import Keyring
from livesettings.store.postgres import PostgresStore
from tests.support.postgres import HOST, superuser, url

__all__ = ["HOST", "Scratch", "drop_scratch", "scratch_for", "superuser", "url"]


class Scratch:
    """One test's databases (by name), its owner role and the name of its app role."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)
        self.owner = f"ls_own_{self.tag}"
        self.app = f"ls_app_{self.tag}"
        self.databases: dict[str, str] = {}
        self.stores: list[PostgresStore] = []
        self._owner_made = False

    async def database(self, name: str = "main", *, owner: str | None = None) -> str:
        """The database for ``name``, created (empty, owned by the owner role) on first use."""
        if name in self.databases:
            return self.databases[name]
        database = f"ls_{self.tag}_{name}"[:63]
        conn = await superuser()
        try:
            # A scratch database need not survive a crash: don't wait for the WAL flush.
            await conn.execute("SET synchronous_commit = off")
            if not self._owner_made:
                await conn.execute(f'CREATE ROLE "{self.owner}" LOGIN CREATEROLE')
                self._owner_made = True
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner or self.owner}"')
        finally:
            await conn.close()
        self.databases[name] = database
        return database

    async def store(
        self,
        name: str = "main",
        *,
        setup: bool = True,
        keyring: Keyring | None = None,
        **kwargs: Any,
    ) -> PostgresStore:
        """A store on database ``name`` as the app role (set up and opened unless told not
        to); closed when the scratch is dropped."""
        database = await self.database(name)
        kwargs.setdefault("admin_url", self.admin_url(database))
        kwargs.setdefault("pool_size", 4)
        store = PostgresStore(self.app_url(database), keyring=keyring, **kwargs)
        self.stores.append(store)
        if setup:
            await store.setup()
            await store.open()
        return store

    def admin_url(self, database: str) -> str:
        return url(self.owner, database)

    def app_url(self, database: str) -> str:
        return url(self.app, database)

    async def drop(self) -> None:
        for store in self.stores:
            await store.close()
        conn = await superuser()
        try:
            for database in self.databases.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in (self.app, self.owner):
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()


_SCRATCHES: dict[Path, Scratch] = {}


def scratch_for(tmp_path: Path) -> Scratch:
    """The scratch of the test that owns ``tmp_path`` (made on first use)."""
    return _SCRATCHES.setdefault(tmp_path, Scratch())


async def drop_scratch(tmp_path: Path) -> None:
    scratch = _SCRATCHES.pop(tmp_path, None)
    if scratch is not None:
        await scratch.drop()
