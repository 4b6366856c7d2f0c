"""The documented PostgreSQL procedure, run for real: ``pg_dump -Fc`` of a served database,
``pg_restore`` into a new empty one, ``livesettings setup`` on it, and a server with the same
keyring that finds every setting, revision, team and secret."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.backup.helpers import SECRET_VALUE, all_changes, read_secret
from tests.conftest import require_service
from tests.support.postgres import (
    SUPERUSER,
    Database,
    drop_database,
    run_setup,
    set_up_database,
    sql,
    url,
)
from tests.support.server import ServerProcess
from tests.support.users import signup

pytestmark = pytest.mark.postgres

# Who may do what, and where row-level security is on: tables, sequences, functions, schema.
_ACCESS = """
    SELECT 'relation ' || relname AS name, relacl::text AS acl,
           relrowsecurity AS rls, relforcerowsecurity AS forced
    FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'function ' || proname, proacl::text, prosecdef, false
    FROM pg_catalog.pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'schema', nspacl::text, false, false
    FROM pg_catalog.pg_namespace WHERE nspname = 'public'
    UNION ALL
    SELECT 'policy ' || tablename || '.' || policyname, roles::text || qual, false, false
    FROM pg_catalog.pg_policies WHERE schemaname = 'public'
"""


def access(database: str) -> dict[str, tuple[object, ...]]:
    """What :data:`_ACCESS` finds in ``database``, by object."""
    rows = sql(_ACCESS, url=url(SUPERUSER, database))
    return {row["name"]: (row["acl"], row["rls"], row["forced"]) for row in rows}


def client_binary(name: str) -> str | None:
    """A PostgreSQL 15 client program: this machine's version-15 directory, else the PATH."""
    versioned = Path("/usr/lib/postgresql/15/bin") / name
    if versioned.exists():
        return str(versioned)
    return shutil.which(name)


@pytest.fixture
def source(postgres_available: bool) -> Iterator[Database]:
    """A database set up by ``livesettings setup``; dropped with its roles afterwards."""
    require_service("PostgreSQL on 127.0.0.1:5432", postgres_available)
    with set_up_database("ls_dump") as db:
        yield db


def dump_command(pg_dump: str, dumper: str, source: Database) -> list[str]:
    """``pg_dump -Fc`` as the operator guide gives it: as a superuser; or as the owner, whom
    forced row-level security shows every row only with ``livesettings.scope=all`` and
    ``--enable-row-security`` (otherwise pg_dump stops: "query would be affected by
    row-level security policy")."""
    if dumper == "superuser":
        return [pg_dump, "-Fc", "-U", SUPERUSER, "-d", source.name]
    return [pg_dump, "-Fc", "--enable-row-security", "-U", source.owner, "-d", source.name]


@pytest.mark.parametrize("dumper", ["superuser", "owner"])
def test_pg_dump_and_pg_restore_keep_settings_revisions_teams_and_secrets(
    source: Database, tmp_path: Path, dumper: str
) -> None:
    pg_dump, pg_restore = client_binary("pg_dump"), client_binary("pg_restore")
    require_service("pg_dump and pg_restore", pg_dump is not None and pg_restore is not None)
    assert pg_dump is not None and pg_restore is not None
    pg_env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": "5432"}

    server = ServerProcess(tmp_path / "a", **source.settings(allow_signup="true"))
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
            for patch in (
                {"theme": "dark"},
                {"language": "fr", "preferences": {"model": "gpt"}},
                {"api_keys": {"openai": SECRET_VALUE}},
            ):
                r = http.patch("/v1/settings", json=patch, headers=user.headers)
                assert r.status_code == 200, r.text
            r = http.post("/v1/teams", json={"name": "ops"}, headers=user.headers)
            assert r.status_code == 201, r.text
            team_id = r.json()["team_id"]
            r = http.patch(
                f"/v1/teams/{team_id}/settings", json={"theme": "system"}, headers=user.headers
            )
            assert r.status_code == 200, r.text
            before = http.get("/v1/settings", headers=user.headers).json()
            changes_before = all_changes(http, user)
        # 1. Dump while the server still serves: pg_dump reads one consistent snapshot.
        dump = tmp_path / "livesettings.dump"
        env = {**pg_env, "PGOPTIONS": "-c livesettings.scope=all"} if dumper == "owner" else pg_env
        done = subprocess.run(
            [*dump_command(pg_dump, dumper, source), "-f", str(dump)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()

    # What a restore must bring back: who may do what, read before the source is gone.
    expected = access(source.name)
    # The cluster the dump is restored on knows neither the database nor the app role: drop
    # both here. The owner role stays (the test's cluster-wide owner; on a new cluster it is
    # created first, like the app role below).
    drop_database(source)
    sql(f'DROP ROLE "{source.app_role}"')

    # 2. The roles, under the same names (the policies name them), then a new empty database
    # owned by the owner role, restored without the dump's owners and grants: every object
    # is created as the owner (--role), and setup grants the app role what it needs.
    password = urlsplit(source.app_url).password
    sql(f"CREATE ROLE \"{source.app_role}\" LOGIN PASSWORD '{password}'")
    name = f"ls_restored_{uuid.uuid4().hex[:8]}"
    restored = replace(
        source,
        name=name,
        owner_url=url(source.owner, name),
        app_url=source.app_url.rsplit("/", 1)[0] + "/" + name,
    )
    sql(f'CREATE DATABASE "{name}" OWNER "{source.owner}"')
    try:
        done = subprocess.run(
            [
                pg_restore,
                "-U",
                SUPERUSER,
                "--no-owner",
                "--no-privileges",
                f"--role={source.owner}",
                "--exit-on-error",
                "-d",
                name,
                str(dump),
            ],
            env=pg_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        # Nothing in the restored database belongs to the superuser that ran pg_restore.
        owners = sql(
            "SELECT DISTINCT pg_catalog.pg_get_userbyid(relowner) AS owner "
            "FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace",
            url=url(SUPERUSER, name),
        )
        assert owners == [{"owner": source.owner}]
        # 3. setup on the restored database grants what --no-privileges left out (until it
        # has run, the functions are executable by PUBLIC and the app role may read nothing).
        assert access(name) != expected
        run_setup(restored)
        assert access(name) == expected

        # 4. A server on it with the same keyring (and JWT secret: the user's token still works).
        again = ServerProcess(tmp_path / "b", **restored.settings())
        again.start()
        try:
            with again.client() as http:
                after = http.get("/v1/settings", headers=user.headers).json()
                assert after == before
                assert after["revision"] == 3
                assert after["settings"]["language"] == "fr"
                assert all_changes(http, user) == changes_before
                assert read_secret(http, user.user_id) == SECRET_VALUE
                team = http.get(f"/v1/teams/{team_id}/settings", headers=user.headers)
                assert team.status_code == 200, team.text
                assert team.json()["settings"]["theme"] == "system"
                r = http.patch("/v1/settings", json={"theme": "light"}, headers=user.headers)
                assert r.status_code == 200, r.text
                assert r.json()["revision"] == 4
        finally:
            again.stop()
    finally:
        drop_database(restored)
