"""A rolling upgrade on PostgreSQL: a node of the previous release keeps serving while the new
release migrates the database and serves beside it, and no acknowledged write is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from livesettings.store import SCHEMA_VERSION
from tests.support.postgres import SUPERUSER, Database, sql, url
from tests.support.server import ServerProcess
from tests.upgrade.conftest import OldServer
from tests.upgrade.old_release import OldRelease
from tests.upgrade.support import SocketRecorder, SteadyWriter, new_cli, token_for

pytestmark = pytest.mark.postgres

OLD_SCHEMA = SCHEMA_VERSION - 1


def _version(db: Database) -> str:
    rows = sql("SELECT value FROM livesettings_meta WHERE key = 'schema_version'", url=_su(db))
    return str(rows[0]["value"])


def _su(db: Database) -> str:
    """The superuser on ``db`` (row-level security does not confine it)."""
    return url(SUPERUSER, db.name)


def _document(node: ServerProcess, token: str) -> dict[str, object]:
    with httpx.Client(timeout=10.0) as http:
        answer = http.get(f"{node.url}/v1/settings", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    document: dict[str, object] = answer.json()
    return document


def test_the_previous_release_serves_through_the_migration_beside_the_new_one(
    old_release: OldRelease, pg_database: Database, tmp_path: Path
) -> None:
    db = pg_database
    setup = old_release.run("setup", env=db.setup_env())
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert f"setup complete: schema version {OLD_SCHEMA}" in setup.stdout
    token = token_for("upgrade-user")
    settings = db.settings(bus_url="postgres", write_rate=1000, write_burst=1000)

    old = OldServer(old_release, tmp_path / "old", **settings)
    new = ServerProcess(tmp_path / "new", **settings)
    writer = SteadyWriter(token, nodes=[("old", old)])
    watchers: list[SocketRecorder] = []
    try:
        old.start()
        on_old = SocketRecorder(old, token)
        watchers.append(on_old)
        writer.start()
        writer.wait_for(30)

        # The dry run prints the new table's SQL and changes nothing, writes going on.
        dry = new_cli("migrate", "--dry-run", env=db.setup_env())
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "CREATE TABLE IF NOT EXISTS public.sql_writes" in dry.stdout
        assert f"schema version stays {OLD_SCHEMA}" in dry.stdout
        assert _version(db) == str(OLD_SCHEMA)
        assert not sql("SELECT to_regclass('public.sql_writes') AS t", url=_su(db))[0]["t"]

        migrated = new_cli("migrate", env=db.setup_env())
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert f"migrated: schema version {OLD_SCHEMA} → {SCHEMA_VERSION}" in migrated.stdout
        assert _version(db) == str(SCHEMA_VERSION)
        at_migration = len(writer.acks)
        writer.wait_for(30)  # the old node, started before, keeps acknowledging writes

        # The previous release had the strict rule: it does not *start* on the newer schema.
        refused = subprocess.run(
            [str(old_release.livesettings), "serve"],
            env=old_release.env(
                old.env()
                | {"LIVESETTINGS_DATA_DIR": str(tmp_path / "old2"), "LIVESETTINGS_PORT": "0"}
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"has schema version {SCHEMA_VERSION}, newer than this livesettings" in (
            refused.stderr
        )

        new.start()
        on_new = SocketRecorder(new, token)
        watchers.append(on_new)
        writer.nodes.append(("new", new))
        writer.wait_for(60)
        writer.stop()
        final = writer.acks[-1].revision
        for watcher in watchers:
            watcher.wait_for_revision(final)

        # Every acknowledged write, once, in a contiguous sequence of revisions.
        assert writer.failures == []
        acks = sorted(writer.acks, key=lambda ack: ack.revision)
        assert [ack.revision for ack in acks] == list(range(1, len(acks) + 1))
        logged = sql(
            "SELECT revision, mutation_id, client_id FROM settings_changes "
            "WHERE user_id = 'upgrade-user' ORDER BY revision",
            url=_su(db),
        )
        assert [(row["revision"], row["mutation_id"]) for row in logged] == [
            (ack.revision, ack.mutation_id) for ack in acks
        ]
        after = acks[at_migration:]
        assert {"old", "new"} <= {ack.node for ack in after}

        # Each node pushed the other's writes: the notification format is shared.
        for watcher in watchers:
            changes = [f for f in watcher.frames if f["type"] == "change"]
            assert [f["type"] for f in watcher.frames] == ["change"] * len(changes)
            expected = [a for a in acks if a.revision > watcher.start_revision]
            assert [(f["revision"], f["mutation_id"]) for f in changes] == [
                (a.revision, a.mutation_id) for a in expected
            ]
        assert {a.node for a in acks if a.revision > on_new.start_revision} == {"old", "new"}

        # Both nodes converge on the last acknowledged write.
        documents = [_document(node, token) for node in (old, new)]
        assert documents[0] == documents[1]
        assert documents[0]["revision"] == final
        last = acks[-1]
        assert documents[0]["settings"]["preferences"] == {  # type: ignore[index]
            "n": last.value,
            "via": last.node,
        }
        for node in (old, new):
            assert "Traceback" not in node.log_text(), node.log_text()
    finally:
        writer.stop()
        for watcher in watchers:
            watcher.close()
        new.stop()
        old.stop()
