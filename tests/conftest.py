"""Shared fixtures: hypothesis profiles, service checks, real server processes on each backend."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from livesettings.store import Store
from livesettings.store.postgres import PostgresStore
from livesettings.store.sqlite import SqliteStore
from tests.support.postgres import (
    SUPERUSER,
    Database,
    clone_database,
    create_database,
    drop_database,
    drop_roles,
    run_setup,
    sql,
    url,
)
from tests.support.server import ServerProcess

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

IN_CI = os.environ.get("CI") == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool) -> None:
    """In CI a missing service fails the test; elsewhere it skips with the reason."""
    if available:
        return
    message = f"{name} is not available on this machine"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests that need it must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return _reachable("127.0.0.1", 5432)


@pytest.fixture(scope="session")
def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    require_service("Chromium (/usr/bin/chromium)", path is not None)
    assert path is not None
    return path


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""The storage backends the API suite runs on (``-m "not postgres"`` leaves PostgreSQL out)."""

SHARED_SERVER_SETTINGS = {"signup_limit_per_address": 1000, "connect_burst": 1000}
"""A server that every test of a module shares signs up far more users than one client would."""


@pytest.fixture(scope="session")
def pg_template(postgres_available: bool) -> Iterator[Database]:
    """A database set up by ``livesettings setup`` (as its owner role, creating the app role),
    copied for every server of the session; dropped with both roles at the end."""
    require_service("PostgreSQL on 127.0.0.1:5432", postgres_available)
    template = create_database("ls_api")
    try:
        run_setup(template)
        yield template
    finally:
        drop_database(template)
        drop_roles(template)


@pytest.fixture
def pg_database(pg_template: Database) -> Iterator[Database]:
    """A copy of the session's set-up database, dropped after the test."""
    db = clone_database(pg_template)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend (PostgreSQL: a set-up copy, served as the app role)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    db: Database = request.getfixturevalue("pg_database")
    return db.app_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store on ``store_url`` (SQLite is set up first; PostgreSQL's copy already is)."""
    made: Store
    if store_url.startswith("sqlite"):
        made = SqliteStore(store_url)
        await made.setup()
    else:
        made = PostgresStore(store_url)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


class Backend:
    """Makes server processes on one backend, each with a fresh database, and removes them.

    SQLite: the database lives in the server's data dir. PostgreSQL: a fresh copy of the set-up
    template, served as the app role with explicit master keys, JWT secret and signup on.
    """

    def __init__(self, name: str, template: Database | None) -> None:
        self.name = name
        self.template = template
        self.servers: list[ServerProcess] = []
        self.databases: dict[int, Database] = {}

    def server(self, data_dir: Path, **settings: Any) -> ServerProcess:
        """An unstarted server on a fresh database of this backend, stopped by :meth:`close`."""
        db: Database | None = None
        if self.template is not None:
            db = clone_database(self.template)
            settings = {**db.settings(allow_signup="true"), **settings}
        proc = ServerProcess(data_dir, **settings)
        self.servers.append(proc)
        if db is not None:
            self.databases[id(proc)] = db
        return proc

    def stored(self, proc: ServerProcess) -> dict[str, bytes]:
        """Everything the backend stored for ``proc``, raw: SQLite's files in the data dir,
        or every row of every PostgreSQL table as text (read as the superuser, past RLS)."""
        db = self.databases.get(id(proc))
        if db is None:
            return {p.name: p.read_bytes() for p in proc.data_dir.iterdir() if p.is_file()}
        on_db = url(SUPERUSER, db.name)
        tables = sql(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public'", url=on_db
        )
        out: dict[str, bytes] = {}
        for row in tables:
            name = row["tablename"]
            rows = sql(
                f'SELECT pg_catalog.string_agg(t::text, chr(10)) AS rows FROM public."{name}" t',
                url=on_db,
            )
            out[name] = (rows[0]["rows"] or "").encode()
        return out

    def close(self) -> None:
        for proc in self.servers:
            proc.stop()
        for db in self.databases.values():
            drop_database(db)


def _backend(name: str, request: pytest.FixtureRequest) -> Backend:
    template = request.getfixturevalue("pg_template") if name == "postgres" else None
    return Backend(name, template)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend a test of the API suite runs on; every such test runs on each."""
    name: str = request.param
    return name


@pytest.fixture
def backend(backend_name: str, request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The test's backend: servers it makes are stopped and their databases dropped after."""
    made = _backend(backend_name, request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def server(
    backend_name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real ``livesettings serve`` process on a random port and a fresh database of the
    backend, shared by the tests of one module (each test signs up its own users, so they
    stay apart); a test that needs a server of its own, or other settings, uses ``backend``."""
    made = _backend(backend_name, request)
    try:
        proc = made.server(tmp_path_factory.mktemp("server") / "data", **SHARED_SERVER_SETTINGS)
        proc.start()
        yield proc
    finally:
        made.close()
