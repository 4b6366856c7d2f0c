"""Bad PostgreSQL configurations and a database that goes away, against real processes.

``serve``, ``verify`` and ``check-db`` given a wrong URL, a database without the schema or a
role without rights answer with one ``error:`` line and the documented exit code (3 for a
configuration to fix, 4 for a database that cannot be reached, 1 for a failed check). Then
two nodes lose their database in the middle of a client's writes: the database refuses new
connections and every backend of the nodes is terminated (only this test's database — the
cluster is shared and stays up). Writes fail fast with a clear 503 or error frame, ``/readyz``
says not ready, nothing acknowledged is lost, and once connections are allowed again the
nodes serve again and a subscriber catches up with what was written meanwhile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from livesettings.cli import cli
from tests.multinode.conftest import cluster
from tests.support.postgres import Database, clone_database, drop_database, sql, url
from tests.support.server import TEST_JWT_SECRET, ServerProcess, wait_for
from tests.support.users import signup
from tests.support.ws import WsClient

pytestmark = pytest.mark.postgres

BOUND_S = 5.0  # a write that fails must say so within this (the driver's timeouts are 5 and 10 s)


@pytest.fixture
def database(pg_template: Database) -> Iterator[Database]:
    """A fresh, set-up database of this test (a copy of the session's template)."""
    db = clone_database(pg_template)
    try:
        yield db
    finally:
        sql(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS true')
        drop_database(db)


@pytest.fixture
def role_without_rights() -> Iterator[str]:
    """A login role that exists but was granted nothing by ``setup``."""
    role = f"ls_norights_{uuid.uuid4().hex[:10]}"
    sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield role
    finally:
        sql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def empty_database(pg_template: Database) -> Iterator[str]:
    """A database with no livesettings schema, owned by the template's (non-superuser) owner."""
    name = f"ls_empty_{uuid.uuid4().hex[:10]}"
    sql(f'CREATE DATABASE "{name}" OWNER "{pg_template.owner}"')
    try:
        yield name
    finally:
        sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- a wrong database URL, no schema, no rights ---------------------------------------------


def _bad_urls(db: Database, role_without_rights: str, empty_database: str) -> dict[str, str]:
    """A URL per case; the ones with a password check that no message repeats it."""
    password = urlsplit(db.app_url).password
    return {
        "unreachable": f"postgresql://{db.app_role}:{password}@127.0.0.1:1/{db.name}",
        "missing database": url(db.app_role, f"{db.name}_missing", password),
        "unknown role": url(f"{db.app_role}_missing", db.name),
        "malformed": f"postgresql://{db.app_role}:{password}@127.0.0.1:notaport/{db.name}",
        "no schema": url(db.owner, empty_database),
        "no rights": url(role_without_rights, db.name),
    }


def _expected(db: Database, empty: str) -> dict[str, tuple[int, str]]:
    """Per case: the exit code and the ``error:`` line (a regular expression) of ``serve``."""
    where = f"127\\.0\\.0\\.1:5432/{db.name}"
    return {
        "unreachable": (4, rf"cannot reach PostgreSQL at 127\.0\.0\.1:1/{db.name}: .+"),
        "missing database": (
            3,
            rf"the database {where}_missing does not exist: "
            rf'database "{db.name}_missing" does not exist',
        ),
        "unknown role": (
            3,
            rf"PostgreSQL at {where} refused role '{db.app_role}_missing': "
            rf'role "{db.app_role}_missing" does not exist; run `livesettings setup` '
            r"\(with LIVESETTINGS_ADMIN_DATABASE_URL\) to create it",
        ),
        "malformed": (
            3,
            rf"the database URL 'postgresql://{db.app_role}:\*\*\*@127\.0\.0\.1:notaport/"
            rf"{db.name}' "
            r"is malformed: .+",
        ),
        "no schema": (
            3,
            rf"the database 127\.0\.0\.1:5432/{empty} has no livesettings schema; "
            r"run `livesettings setup` first",
        ),
        "no rights": (
            3,
            r"the role of LIVESETTINGS_DATABASE_URL may not read the livesettings tables "
            r"\(permission denied for table livesettings_meta\); run `livesettings setup`, "
            r"which grants the app role what it needs",
        ),
    }


def _env(db: Database, database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "LIVESETTINGS_DATABASE_URL": database_url,
        "LIVESETTINGS_MASTER_KEYS": db.master_keys,
        "LIVESETTINGS_JWT_SECRET": TEST_JWT_SECRET,
        "LIVESETTINGS_DATA_DIR": str(data_dir),
        "LIVESETTINGS_HOST": "127.0.0.1",
        "LIVESETTINGS_PORT": "0",
    }


def test_serve_refuses_a_bad_database_with_one_line(
    database: Database, role_without_rights: str, empty_database: str, tmp_path: Path
) -> None:
    urls = _bad_urls(database, role_without_rights, empty_database)
    expected = _expected(database, empty_database)
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVESETTINGS_")}
    # All at once: each is a process start, and none of them may get as far as listening.
    procs = {
        case: subprocess.Popen(
            [sys.executable, "-m", "livesettings", "serve"],
            env={**base, **_env(database, database_url, tmp_path / "data")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, database_url in urls.items()
    }
    results: dict[str, tuple[int, str, str]] = {}
    try:
        for case, proc in procs.items():
            out, err = proc.communicate(timeout=30)
            results[case] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for case, (code, pattern) in expected.items():
        got_code, out, err = results[case]
        assert got_code == code, (case, got_code, out, err)
        assert out == "", (case, out)
        assert re.fullmatch(f"error: {pattern}\n", err), (case, err)
        assert "app-password" not in err, (case, err)


def _cli(db: Database, database_url: str, data_dir: Path, *args: str) -> Any:
    # Nothing from the outer environment leaks in: every LIVESETTINGS_* is unset first.
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LIVESETTINGS_")}
    env.update(_env(db, database_url, data_dir))
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("command", ["verify", "check-db"])
def test_verify_and_check_db_say_what_is_wrong(
    command: str,
    database: Database,
    role_without_rights: str,
    empty_database: str,
    tmp_path: Path,
) -> None:
    urls = _bad_urls(database, role_without_rights, empty_database)
    expected = _expected(database, empty_database)
    for case, database_url in urls.items():
        result = _cli(database, database_url, tmp_path / "data", command)
        code, pattern = expected[case]
        if case == "no schema":
            # The connection works, so this is a failed check (exit 1), named on stdout.
            label = "database" if command == "verify" else "open"
            assert result.exit_code == 1, (case, result.stdout, result.stderr)
            assert re.search(f"^FAIL {label}: {pattern}$", result.stdout, re.M), result.stdout
            assert result.stderr == f"error: {command}: 1 check failed: {label}\n"
            continue
        assert result.exit_code == code, (case, result.exit_code, result.stdout, result.stderr)
        assert result.stdout == "", (case, result.stdout)
        assert re.fullmatch(f"error: {pattern}\n", result.stderr), (case, result.stderr)
        assert "app-password" not in result.stderr, (case, result.stderr)

    # And the app role on the set-up database passes, so the checks above are about the URL.
    assert _cli(database, database.app_url, tmp_path / "data", command).exit_code == 0


# --- PostgreSQL going away mid-stream -------------------------------------------------------


def _cut(db: Database) -> list[str]:
    """Refuse new connections to ``db`` and end every backend on it; what was ended."""
    sql(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS false')
    rows = sql(
        "SELECT application_name, pg_catalog.pg_terminate_backend(pid) AS ended "
        "FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        db.name,
    )
    assert all(row["ended"] for row in rows), rows
    return sorted(row["application_name"] for row in rows)


class _Writer(threading.Thread):
    """Writes ``preferences.k<i>`` over a WebSocket one at a time, recording every answer
    (ack or error frame) and how long it took, until stopped."""

    def __init__(self, ws_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ws = WsClient(ws_url)
        assert self.ws.auth(token, "writer")["type"] == "auth_ok"
        self.answers: list[tuple[int, dict[str, Any], float]] = []
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        i = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                mid = self.ws.update({"preferences": {f"k{i}": i}}, mutation_id=f"w{i}")
                frame = self.ws.recv(timeout=30)
                assert frame.get("mutation_id") == mid, frame
                self.answers.append((i, frame, time.monotonic() - started))
                i += 1
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    def count(self, kind: str) -> int:
        return sum(1 for _, frame, _ in self.answers if frame["type"] == kind)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=40)
        self.ws.close()
        assert self.failure is None, self.failure


def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_database_going_away_mid_stream(database: Database, tmp_path: Path) -> None:
    settings = database.settings(allow_signup="true")
    with cluster(tmp_path, 2, **settings) as (a, b), a.client() as http_a, b.client() as http_b:
        user = signup(http_a)
        sub = WsClient(a.ws_url)
        assert sub.auth(user.token, "subscriber")["type"] == "auth_ok"
        assert [f["type"] for f in sub.subscribe(None)] == ["snapshot", "synced"]
        writer = _Writer(a.ws_url, user.token)
        writer.start()
        try:
            wait_for(lambda: writer.count("ack") >= 20, timeout=20)
            ended = _cut(database)
            # Both nodes had their pools and their bus listeners on this database.
            assert sum(name.startswith("livesettings-bus/") for name in ended) == 2, ended

            # Writes fail, fast and clearly, on both nodes and both protocols.
            for node, http in ((a, http_a), (b, http_b)):
                for _ in range(2):
                    response, took = _timed(
                        lambda http=http: http.patch(
                            "/v1/settings", json={"theme": "dark"}, headers=user.headers
                        )
                    )
                    assert response.status_code == 503, response.text
                    error = response.json()["error"]
                    assert error["code"] == "storage_unavailable"
                    assert error["message"].startswith("the commit failed: "), error
                    assert "PostgreSQL" in error["message"], error
                    assert str(urlsplit(database.app_url).password) not in error["message"]
                    assert took < BOUND_S, (node.url, took)
                response, took = _timed(lambda http=http: http.get("/readyz"))
                assert response.status_code == 503 and took < BOUND_S
                assert response.json()["error"]["code"] == "storage_unavailable"
                assert http.get("/healthz").json() == {"status": "ok"}  # alive, not ready
            errors_before = writer.count("error")
            wait_for(lambda: writer.count("error") >= errors_before + 3, timeout=10)
            acked_in_outage = writer.count("ack")
            time.sleep(0.2)
            assert writer.count("ack") == acked_in_outage  # no ack while nothing is durable

            sql(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS true')
            # Written through the other node, likely before node A's bus listens again.
            meanwhile = wait_for(
                lambda: _ok(
                    http_b.patch("/v1/settings", json={"language": "fr"}, headers=user.headers)
                ),
                timeout=10,
            )
            # Ready again once the pool connects and the bus listens again (its backoff).
            for http in (http_a, http_b):
                wait_for(lambda http=http: http.get("/readyz").status_code == 200, timeout=15)
                assert http.get("/readyz").json() == {"status": "ready"}
            acked_after = writer.count("ack")
            wait_for(lambda: writer.count("ack") >= acked_after + 5, timeout=10)
        finally:
            writer.stop()

        # Every write was answered in bounded time; errors were clear, frames kept the socket.
        assert max(took for _, _, took in writer.answers) < BOUND_S
        failed = [frame for _, frame, _ in writer.answers if frame["type"] == "error"]
        assert failed and all(f["code"] == "storage_unavailable" for f in failed), failed
        acked = [i for i, frame, _ in writer.answers if frame["type"] == "ack"]

        # Nothing acknowledged is lost.
        doc = http_a.get("/v1/settings", headers=user.headers).json()
        prefs = doc["settings"]["preferences"]
        assert [i for i in acked if prefs.get(f"k{i}") != i] == []
        assert doc["settings"]["language"] == "fr"

        # The subscriber on node A saw every revision once, in order, including the one
        # written through node B while A was reconnecting.
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["revision"] < doc["revision"]:
            frame = sub.recv(timeout=10)
            if frame["type"] == "change":
                seen.append(frame)
        assert [f["revision"] for f in seen] == list(range(1, doc["revision"] + 1))
        from_b = [f for f in seen if f["revision"] == meanwhile["revision"]]
        assert from_b[0]["patch"] == {"language": "fr"}
        assert sub.no_frame()
        sub.close()
        assert _metric(a, "livesettings_bus_reconnects") >= 1


def _ok(response: httpx.Response) -> dict[str, Any] | None:
    if response.status_code != 200:
        assert response.status_code == 503, response.text
        return None
    body: dict[str, Any] = response.json()
    return body


def _metric(node: ServerProcess, name: str) -> float:
    with node.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")
