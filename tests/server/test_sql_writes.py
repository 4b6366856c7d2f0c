"""Writes made in SQL to ``user_preferences`` on PostgreSQL reach every device: real server
processes, a real ``--sql-writer`` role writing with plain SQL, real WebSocket subscribers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from livesettings.auth import TokenIssuer
from livesettings.document import apply_patch, default_document
from tests.conftest import require_service
from tests.support.postgres import (
    Database,
    create_database,
    drop_database,
    drop_roles,
    sql,
    url,
)
from tests.support.server import TEST_JWT_SECRET, ServerProcess, wait_for
from tests.support.ws import WsClient

pytestmark = pytest.mark.postgres


class Deployment:
    """One database set up with a SQL writer role, and one node serving it."""

    def __init__(self, db: Database, writer: str, node: ServerProcess) -> None:
        self.db, self.writer, self.node = db, writer, node

    @property
    def writer_url(self) -> str:
        return url(self.writer, self.db.name)

    def write(self, user: str, *statements: str) -> list[str]:
        """Run ``statements`` in one transaction as the SQL writer, for ``user``."""

        async def go() -> list[str]:
            conn = await asyncpg.connect(self.writer_url)
            try:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('livesettings.user_id', $1, true)", user)
                    return [await conn.execute(statement) for statement in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def on_db(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return sql(query, *args, url=url("postgres", self.db.name))


def setup(db: Database, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "livesettings", "setup"],
        env={**os.environ, **db.setup_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def deployment(
    postgres_available: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    db = create_database("ls_sqlw")
    writer = f"{db.name}_writer"
    sql(f'CREATE ROLE "{writer}" LOGIN')
    node = ServerProcess(tmp_path_factory.mktemp("sqlw"), **db.settings())
    try:
        out = setup(db, LIVESETTINGS_SQL_WRITER=writer)
        assert f"role {writer} may write user_preferences in SQL" in out, out
        assert "created trigger livesettings_sql_writes on user_preferences" in out, out
        node.start()
        yield Deployment(db, writer, node)
    finally:
        node.stop()
        drop_database(db)
        sql(f'DROP ROLE IF EXISTS "{writer}"')
        drop_roles(db)


def token_for(user_id: str) -> str:
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue(user_id)
    return token


def patch(node: ServerProcess, user: str, body: dict[str, Any], mutation_id: str) -> int:
    with httpx.Client(base_url=node.url, timeout=10.0) as http:
        r = http.patch(
            "/v1/settings",
            json=body,
            headers={"Authorization": f"Bearer {token_for(user)}", "Idempotency-Key": mutation_id},
        )
    assert r.status_code == 200, r.text
    revision: int = r.json()["revision"]
    return revision


def settings_of(node: ServerProcess, user: str) -> dict[str, Any]:
    with httpx.Client(base_url=node.url, timeout=10.0) as http:
        r = http.get("/v1/settings", headers={"Authorization": f"Bearer {token_for(user)}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def subscribe(node: ServerProcess, user: str) -> WsClient:
    ws = WsClient(node.ws_url)
    assert ws.auth(token_for(user))["type"] == "auth_ok"
    frames = ws.subscribe(None)
    assert frames[-1]["type"] == "synced", frames
    return ws


def changes(ws: WsClient, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    frames = [ws.recv(timeout=timeout) for _ in range(count)]
    assert [f["type"] for f in frames] == ["change"] * count, frames
    return frames


def metric(node: ServerProcess, name: str) -> float:
    with httpx.Client(base_url=node.url, timeout=10.0) as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def new_user() -> str:
    return "u-" + uuid.uuid4().hex[:10]


def test_sql_update_insert_upsert_and_delete_are_pushed_once_in_order(
    deployment: Deployment,
) -> None:
    node, user = deployment.node, new_user()
    with subscribe(node, user) as ws:
        # A user with no row yet: an INSERT creates the document at revision 1.
        assert deployment.write(
            user,
            f"INSERT INTO user_preferences (user_id, theme, preferences) "
            f"""VALUES ('{user}', 'dark', '{{"font": 12, "a": {{"b": 1}}}}')""",
        ) == ["INSERT 0 0"]
        (first,) = changes(ws, 1)
        assert (first["revision"], first["client_id"], first["mutation_id"][:4]) == (
            1,
            "sql",
            "sql-",
        )
        assert first["patch"] == {"theme": "dark", "preferences": {"font": 12, "a": {"b": 1}}}
        deployment.write(
            user,
            "UPDATE user_preferences SET preferences = preferences - 'font' || '{\"x\": true}'",
            "UPDATE user_preferences SET language = 'fr'",
        )
        deployment.write(
            user,
            f"INSERT INTO user_preferences (user_id, theme) VALUES ('{user}', 'system') "
            "ON CONFLICT (user_id) DO UPDATE SET theme = excluded.theme",
        )
        frames = changes(ws, 3)
        assert [(f["revision"], f["client_id"], f["patch"]) for f in frames] == [
            (2, "sql", {"preferences": {"font": None, "x": True}}),
            (3, "sql", {"language": "fr"}),
            (4, "sql", {"theme": "system"}),
        ]
        body = settings_of(node, user)
        assert body["revision"] == 4
        assert body["settings"]["theme"] == "system"
        assert body["settings"]["language"] == "fr"
        assert body["settings"]["preferences"] == {"a": {"b": 1}, "x": True}
        # Deleting the row in SQL resets the document; its history stays.
        assert deployment.write(user, "DELETE FROM user_preferences") == ["DELETE 0"]
        (reset,) = changes(ws, 1)
        assert (reset["revision"], reset["client_id"]) == (5, "sql")
        assert settings_of(node, user)["settings"] == default_document()
        assert ws.no_frame(0.3)
    log = deployment.on_db(
        "SELECT revision, client_id, mutation_id FROM settings_changes "
        "WHERE user_id = $1 ORDER BY revision",
        user,
    )
    assert [(r["revision"], r["client_id"]) for r in log] == [(i, "sql") for i in range(1, 6)]
    assert len({r["mutation_id"] for r in log}) == 5
    assert deployment.on_db("SELECT count(*) AS n FROM sql_writes")[0]["n"] == 0
    assert metric(node, 'livesettings_sql_writes_total{outcome="applied"}') >= 5


def test_the_servers_own_writes_are_not_captured_twice(deployment: Deployment) -> None:
    node, user = deployment.node, new_user()
    with subscribe(node, user) as ws:
        for i in range(15):
            assert patch(node, user, {"preferences": {"n": i}}, f"own-{i}") == i + 1
        frames = changes(ws, 15)
        assert [f["revision"] for f in frames] == list(range(1, 16))
        assert {f["client_id"] for f in frames} != {"sql"}
        assert ws.no_frame(0.5)
    assert deployment.on_db("SELECT count(*) AS n FROM sql_writes")[0]["n"] == 0
    revisions = deployment.on_db(
        "SELECT revision FROM settings_changes WHERE user_id = $1 ORDER BY revision", user
    )
    assert [r["revision"] for r in revisions] == list(range(1, 16))


def test_sql_writes_racing_server_writes_leave_one_revision_sequence(
    deployment: Deployment,
) -> None:
    node, user = deployment.node, new_user()
    rounds = 15
    patch(node, user, {"theme": "dark"}, "start")
    with subscribe(node, user) as ws:
        errors: list[BaseException] = []

        def server_writes() -> None:
            try:
                for i in range(rounds):
                    patch(node, user, {"preferences": {f"http{i}": i}, "language": "de"}, f"h{i}")
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=server_writes)
        thread.start()
        for i in range(rounds):
            deployment.write(
                user,
                f"UPDATE user_preferences SET preferences = preferences || '{{\"sql{i}\": {i}}}', "
                "theme = CASE WHEN theme = 'dark' THEN 'light' ELSE 'dark' END",
            )
        thread.join()
        assert not errors, errors
        total = 1 + 2 * rounds
        frames = changes(ws, 2 * rounds)
        assert ws.no_frame(0.5)
    revisions = [f["revision"] for f in frames]
    assert revisions == list(range(2, total + 1))  # each once, in order
    assert sum(f["client_id"] == "sql" for f in frames) == rounds
    log = deployment.on_db(
        "SELECT revision FROM settings_changes WHERE user_id = $1 ORDER BY revision", user
    )
    assert [r["revision"] for r in log] == list(range(1, total + 1))
    replayed = apply_patch(default_document(), {"theme": "dark"})
    for frame in frames:
        replayed = apply_patch(replayed, frame["patch"])
    body = settings_of(node, user)
    assert body["revision"] == total
    assert body["settings"] == replayed
    assert all(f"sql{i}" in replayed["preferences"] for i in range(rounds))
    assert all(f"http{i}" in replayed["preferences"] for i in range(rounds))


def test_api_keys_in_sql_are_refused_and_removals_pushed(deployment: Deployment) -> None:
    node, user = deployment.node, new_user()
    patch(node, user, {"api_keys": {"openai": "sk-test-0123456789abcdef"}}, "k1")
    with subscribe(node, user) as ws:
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="API keys cannot be written"):
            deployment.write(
                user, """UPDATE user_preferences SET api_keys = '{"openai": "sk-plain-1"}'"""
            )
        assert deployment.on_db("SELECT count(*) AS n FROM sql_writes")[0]["n"] == 0
        deployment.write(user, "UPDATE user_preferences SET api_keys = api_keys - 'openai'")
        (frame,) = changes(ws, 1)
        assert (frame["revision"], frame["client_id"]) == (2, "sql")
        assert frame["patch"] == {"api_keys": {"openai": None}}
    assert settings_of(node, user)["settings"]["api_keys"] == {}


def test_a_refused_sql_write_is_finished_logged_and_counted(deployment: Deployment) -> None:
    """A value the trigger lets by but the document refuses (a malformed language tag)."""
    node, user = deployment.node, new_user()
    refused = metric(node, 'livesettings_sql_writes_total{outcome="refused"}')
    patch(node, user, {"theme": "dark"}, "t1")
    with subscribe(node, user) as ws:
        deployment.write(user, "UPDATE user_preferences SET language = 'not a tag!'")
        deployment.write(user, "UPDATE user_preferences SET theme = 'light'")
        (frame,) = changes(ws, 1)  # the refused one is skipped; the next one is applied
        assert (frame["revision"], frame["patch"]) == (2, {"theme": "light"})
    assert metric(node, 'livesettings_sql_writes_total{outcome="refused"}') == refused + 1
    assert deployment.on_db("SELECT count(*) AS n FROM sql_writes")[0]["n"] == 0
    log = node.log_text()
    assert f"a write made in SQL to user {user}" in log and "invalid_value at /language" in log
    assert "not a tag!" not in log


def test_a_node_pushes_a_sql_write_another_node_applied(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The subscriber's node cannot claim the queue (its role lost EXECUTE on the claim), so
    the module's node applies every write and the bus brings them over."""
    db = deployment.db
    other = f"{db.name}_app2"
    other_url = url(other, db.name, "other-app-password")
    setup(db, LIVESETTINGS_DATABASE_URL=other_url)
    sql(
        f'REVOKE EXECUTE ON FUNCTION public.livesettings_claim_sql_writes(integer) FROM "{other}"',
        url=url("postgres", db.name),
    )
    viewer = ServerProcess(tmp_path / "viewer", **{**db.settings(), "database_url": other_url})
    user = new_user()
    try:
        viewer.start()
        applied = metric(deployment.node, 'livesettings_sql_writes_total{outcome="applied"}')
        with subscribe(viewer, user) as ws:
            frames: list[dict[str, Any]] = []
            for i in range(3):
                # An upsert sets the columns it names: each replaces the preferences.
                deployment.write(
                    user,
                    f"INSERT INTO user_preferences (user_id, preferences) "
                    f"""VALUES ('{user}', '{{"k{i}": {i}}}') ON CONFLICT (user_id) """
                    "DO UPDATE SET preferences = excluded.preferences",
                )
                frames += changes(ws, 1)
            assert [(f["revision"], f["client_id"], f["patch"]) for f in frames] == [
                (1, "sql", {"preferences": {"k0": 0}}),
                (2, "sql", {"preferences": {"k0": None, "k1": 1}}),
                (3, "sql", {"preferences": {"k1": None, "k2": 2}}),
            ]
            assert ws.no_frame(0.3)
        wait_for(
            lambda: (
                metric(deployment.node, 'livesettings_sql_writes_total{outcome="applied"}')
                == applied + 3
            )
        )
        assert metric(viewer, "livesettings_sql_writes_total") == 0
        assert settings_of(viewer, user)["settings"]["preferences"] == {"k2": 2}
    finally:
        viewer.stop()
        # The role goes with the database (module teardown) — only its grants live here.
        sql(f'DROP OWNED BY "{other}"', url=url("postgres", db.name))
        sql(f'DROP ROLE IF EXISTS "{other}"')


def test_setup_names_what_is_wrong_with_a_sql_writer(
    deployment: Deployment, tmp_path: Path
) -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "livesettings", "setup", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("--sql-writer", f"{deployment.db.name}_nobody", **deployment.db.setup_env())
    assert missing.returncode == 3, missing.stdout + missing.stderr
    assert "does not exist; create it first" in missing.stderr
    embedded = run("--sql-writer", "someone", LIVESETTINGS_DATA_DIR=str(tmp_path / "data"))
    assert embedded.returncode == 3, embedded.stdout + embedded.stderr
    assert "--sql-writer needs PostgreSQL" in embedded.stderr


def test_a_sql_write_older_than_a_rival_edit_loses_under_the_merge_rule(
    deployment: Deployment,
) -> None:
    """The SQL write's edit time is its transaction's: an edit made later elsewhere wins."""
    node, user = deployment.node, new_user()
    lost = metric(node, 'livesettings_sql_writes_total{outcome="lost"}')
    patch(node, user, {"theme": "system"}, "t0")
    revisions: list[int] = []

    async def go() -> None:
        conn = await asyncpg.connect(deployment.writer_url)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("SELECT set_config('livesettings.user_id', $1, true)", user)
            await conn.execute("UPDATE user_preferences SET theme = 'light'")
            # The server's write waits for the row the open transaction holds, then commits
            # first: the SQL write reaches the queue only at its COMMIT.
            rival = threading.Thread(
                target=lambda: revisions.append(patch(node, user, {"theme": "dark"}, "rival"))
            )
            rival.start()
            await asyncio.sleep(0.3)
            await tx.commit()
            await asyncio.to_thread(rival.join)
        finally:
            await conn.close()

    with subscribe(node, user) as ws:
        asyncio.run(go())
        assert revisions == [2]
        (frame,) = changes(ws, 1)
        assert (frame["revision"], frame["mutation_id"]) == (2, "rival")
        wait_for(lambda: metric(node, 'livesettings_sql_writes_total{outcome="lost"}') == lost + 1)
        assert ws.no_frame(0.3)
    assert settings_of(node, user)["settings"]["theme"] == "dark"


def test_a_missed_notification_is_caught_up_by_the_poll(deployment: Deployment) -> None:
    node, user = deployment.node, new_user()
    patch(node, user, {"theme": "dark"}, "t0")
    ended = deployment.on_db(
        "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'livesettings-sql-writes'"
    )
    assert [row["ended"] for row in ended] == [True]  # the node's one LISTEN connection
    with subscribe(node, user) as ws:
        deployment.write(user, "UPDATE user_preferences SET theme = 'light'")
        (frame,) = changes(ws, 1, timeout=15.0)
        assert (frame["revision"], frame["client_id"], frame["patch"]) == (
            2,
            "sql",
            {"theme": "light"},
        )
    # And the node listens again.
    wait_for(
        lambda: (
            deployment.on_db(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'livesettings-sql-writes'"
            )[0]["n"]
            == 1
        ),
        timeout=15.0,
    )
