"""The CLI against a real PostgreSQL: setup as the owner, verify's row-level security facts,
check-db's pool, rotation, and a migration from PostgreSQL to SQLite through export/import."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from livesettings.crypto import Keyring, open_secret, unwrap_data_key
from livesettings.store import SCHEMA_VERSION, Store, open_store
from tests.conftest import require_service

from .conftest import NEW, OLD, Cli, edit, ok

pytestmark = pytest.mark.postgres

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
USERS = [str(uuid.UUID(int=n)) for n in (1, 2)]
SECRET = "sk-postgres-0123456789"


def sql(query: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(query)
        finally:
            await conn.close()

    asyncio.run(go())


@dataclass(frozen=True)
class Database:
    owner_url: str
    app_url: str
    app_role: str


@pytest.fixture
def database(postgres_available: bool) -> Iterator[Database]:
    """A fresh database owned by a fresh role with CREATEROLE; dropped afterwards."""
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    suffix = uuid.uuid4().hex[:10]
    name, owner, app = f"ls_cli_{suffix}", f"ls_cli_owner_{suffix}", f"ls_cli_app_{suffix}"
    sql(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
    sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    try:
        yield Database(
            f"postgresql://{owner}@127.0.0.1:5432/{name}",
            f"postgresql://{app}:app-pw-{suffix}@127.0.0.1:5432/{name}",
            app,
        )
    finally:
        sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        sql(f'DROP ROLE IF EXISTS "{app}"')
        sql(f'DROP ROLE IF EXISTS "{owner}"')


def on_store(url: str, keys: str, fn: Any) -> Any:
    async def go() -> Any:
        store = open_store(url, keyring=Keyring.parse(keys))
        try:
            await store.open()
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def write(store: Store) -> None:
    for n, user_id in enumerate(USERS):
        await store.commit([edit(user_id, f"m{n}", {"api_keys": {"k": SECRET}, "theme": "dark"})])


def read(keys: str) -> Any:
    keyring = Keyring.parse(keys)

    async def go(store: Store) -> list[str]:
        out = []
        for user_id in USERS:
            wrapped = await store.get_wrapped_key(user_id)
            assert wrapped is not None
            envelope = (await store.get_document(user_id)).settings["api_keys"]["k"]
            out.append(
                open_secret(user_id, "k", envelope, unwrap_data_key(keyring, user_id, wrapped))
            )
        return out

    return go


def test_the_cli_on_postgresql(database: Database, tmp_path: Path) -> None:
    run = Cli(
        tmp_path / "data",
        LIVESETTINGS_ADMIN_DATABASE_URL=database.owner_url,
        LIVESETTINGS_DATABASE_URL=database.app_url,
        LIVESETTINGS_MASTER_KEYS=OLD,
    )
    first = ok(run("setup"))
    assert first.endswith(
        f"master keys: old (active)\nsetup complete: schema version {SCHEMA_VERSION}\n"
    )
    again = ok(run("setup"))
    assert again.endswith(
        f"master keys: old (active)\nsetup complete: schema version {SCHEMA_VERSION}\n"
    )
    assert "app-pw" not in first + again

    verified = run("verify")
    assert (verified.exit_code, verified.stderr) == (0, ""), verified.stdout
    lines = verified.stdout.splitlines()
    assert (
        lines[0]
        == f"ok   database: postgresql://{database.app_role}:***@127.0.0.1:5432/"
        + (database.app_url.rsplit("/", 1)[1])
    )
    assert lines[1] == f"ok   schema version: {SCHEMA_VERSION}"
    assert (
        lines[2]
        == f"ok   app role: {database.app_role} (no superuser, no BYPASSRLS, owns no table)"
    )
    assert re.fullmatch(r"ok   row-level security: enabled and forced on \d+ tables", lines[3])
    assert re.fullmatch(
        r"ok   definer functions: \d+ functions, each SECURITY DEFINER with a fixed search_path",
        lines[4],
    )
    assert lines[5] == "ok   synchronous commit: on"
    assert lines[6] == "ok   SQL-write trigger: on user_preferences, enabled"
    assert lines[7] == "ok   SQL-write queue: empty"
    assert re.fullmatch(r"ok   NOTIFY round trip: \d+\.\d ms", lines[8])
    assert re.fullmatch(r"ok   bus: postgres \(publish round trip \d+\.\d ms\)", lines[-2])

    as_owner = run("verify", database_url=database.owner_url)
    assert as_owner.exit_code == 1
    assert as_owner.stdout.startswith("FAIL database: refusing to connect as 'ls_cli_owner_")
    assert as_owner.stderr == "error: verify: 1 check failed: database\n"

    checked = ok(run("check-db"))
    assert re.search(r"^ok   server: \d+", checked, re.M)
    assert re.search(r"^-    pool: size 10, open \d+, in use \d+, waits \d+$", checked, re.M)

    on_store(database.app_url, OLD, write)
    assert on_store(database.app_url, OLD, read(OLD)) == [SECRET, SECRET]
    assert ok(run("keys", "rotate", master_keys=f"{NEW},{OLD}")) == (
        "-    active master key: new\n"
        "ok   re-wrapped: 2 data keys under new\n"
        "-    data keys: new: 2\n"
        "ok   old key material: rewrote data_keys (VACUUM FULL): no dead row version keeps "
        "an old key\n"
        "ok   old key material: rewrote pg_statistic: no statistic sampled before keeps an "
        "old key\n"
        "ok   old: wraps no data key now; it can be removed from the keyring\n"
        "rotation complete: every data key is under new\n"
    )
    assert on_store(database.app_url, NEW, read(NEW)) == [SECRET, SECRET]
    assert ok(run("verify", master_keys=NEW)).endswith("checks passed\n")

    # Migration: PostgreSQL → SQLite, through the JSON lines.
    backup = tmp_path / "backup.jsonl"
    assert ok(run("export", "-o", str(backup), master_keys=NEW)).startswith("exported 2 users")
    sqlite = Cli(tmp_path / "sqlite", LIVESETTINGS_MASTER_KEYS=NEW)
    assert ok(sqlite("import", "-i", str(backup))) == (
        "imported 2 users\nok   data keys: 2 data keys wrapped by new, in the keyring\n"
    )
    assert sqlite.store_do(NEW, read(NEW)) == [SECRET, SECRET]
