"""`livesettings setup` on PostgreSQL as operators run it: as the `postgres` superuser or as a
plain owner role, run twice, on a database whose app role already exists, and on a second
database sharing the app role; then `verify`, and a real `serve` as the app role writing and
reading over HTTP."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livesettings.auth import TokenIssuer
from livesettings.store import SCHEMA_VERSION
from tests.conftest import require_service
from tests.support.postgres import SUPERUSER, sql, url
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import signup

from .conftest import Cli, ok

pytestmark = pytest.mark.postgres

SECRET = "sk-setup-test-7d1e0c9b5a"


@dataclass
class Cluster:
    """Databases and roles one test makes (random names); every one dropped afterwards."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    master_keys: str = field(
        default_factory=lambda: "k1:" + base64.b64encode(os.urandom(32)).decode()
    )
    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    @property
    def app_role(self) -> str:
        return f"ls_setup_app_{self.tag}"

    def role(self, name: str, options: str = "LOGIN") -> str:
        role = f"ls_setup_{name}_{self.tag}"
        sql(f'CREATE ROLE "{role}" {options}')
        self.roles.append(role)
        return role

    def database(self, name: str, owner: str = SUPERUSER) -> str:
        database = f"ls_setup_{name}_{self.tag}"
        sql(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        self.databases.append(database)
        return database

    def app_url(self, database: str) -> str:
        return url(self.app_role, database, f"app-pw-{self.tag}")

    def cli(self, tmp_path: Path, database: str, owner: str) -> Cli:
        """The CLI as an operator configures it: the owner sets up, the app role serves."""
        return Cli(
            tmp_path / database,
            LIVESETTINGS_ADMIN_DATABASE_URL=url(owner, database),
            LIVESETTINGS_DATABASE_URL=self.app_url(database),
            LIVESETTINGS_MASTER_KEYS=self.master_keys,
        )

    def drop(self) -> None:
        for database in self.databases:
            sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in [self.app_role, *reversed(self.roles)]:
            sql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def cluster(postgres_available: bool) -> Iterator[Cluster]:
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    made = Cluster()
    try:
        yield made
    finally:
        made.drop()


def set_up_twice(run: Cli) -> None:
    first = ok(run("setup"))
    assert first.endswith(f"setup complete: schema version {SCHEMA_VERSION}\n"), first
    assert "created trigger livesettings_sql_writes on user_preferences" in first, first
    again = ok(run("setup"))
    assert again.endswith(f"setup complete: schema version {SCHEMA_VERSION}\n"), again
    # Nothing left to create the second time.
    assert "created" not in again, again
    verified = run("verify")
    assert (verified.exit_code, verified.stderr) == (0, ""), verified.stdout
    assert "FAIL" not in verified.stdout


def serve_a_write_and_a_read(cluster: Cluster, tmp_path: Path, database: str) -> None:
    """A real server as the app role: a user signs up, writes a secret and a setting, reads
    them back; the service route opens the secret."""
    server = ServerProcess(
        tmp_path / f"serve-{database}",
        database_url=cluster.app_url(database),
        master_keys=cluster.master_keys,
        allow_signup="true",
    )
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
            r = http.patch(
                "/v1/settings",
                json={"theme": "dark", "api_keys": {"openai": SECRET}},
                headers=user.headers,
            )
            assert r.status_code == 200, r.text
            body = http.get("/v1/settings", headers=user.headers).json()
            assert body["settings"]["theme"] == "dark"
            assert body["settings"]["api_keys"]["openai"]["set"] is True
            token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue("backend", role="service")
            r = http.get(
                f"/v1/users/{user.user_id}/secrets/openai",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert (r.status_code, r.json()["value"]) == (200, SECRET), r.text
    finally:
        server.stop()


def test_setup_as_the_postgres_superuser_twice_then_serve(cluster: Cluster, tmp_path: Path) -> None:
    database = cluster.database("su")
    set_up_twice(cluster.cli(tmp_path, database, SUPERUSER))
    serve_a_write_and_a_read(cluster, tmp_path, database)
    # A second database, the same app role (which exists now): set up twice, served too.
    second = cluster.database("su2")
    set_up_twice(cluster.cli(tmp_path, second, SUPERUSER))
    serve_a_write_and_a_read(cluster, tmp_path, second)


def test_setup_as_a_plain_owner_twice_then_serve(cluster: Cluster, tmp_path: Path) -> None:
    owner = cluster.role("owner", "LOGIN CREATEROLE")
    database = cluster.database("plain", owner)
    set_up_twice(cluster.cli(tmp_path, database, owner))
    serve_a_write_and_a_read(cluster, tmp_path, database)
    second = cluster.database("plain2", owner)
    set_up_twice(cluster.cli(tmp_path, second, owner))
    serve_a_write_and_a_read(cluster, tmp_path, second)


def test_setup_as_the_superuser_when_the_app_role_already_exists(
    cluster: Cluster, tmp_path: Path
) -> None:
    sql(f"CREATE ROLE \"{cluster.app_role}\" LOGIN PASSWORD 'app-pw-{cluster.tag}'")
    database = cluster.database("pre")
    set_up_twice(cluster.cli(tmp_path, database, SUPERUSER))
    serve_a_write_and_a_read(cluster, tmp_path, database)
