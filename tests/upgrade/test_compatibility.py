"""The compatibility rule at the edges: one schema version newer is served, two are refused;
the previous release's SQLite data dir is upgraded by ``migrate`` and by the embedded server;
released migration files never change."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from livesettings.store import SCHEMA_VERSION
from livesettings.store.migrations import Backend, migration_files
from tests.support.postgres import SUPERUSER, Database, run_setup, sql, url
from tests.support.server import ServerProcess
from tests.upgrade.conftest import PREVIOUS_RELEASE, OldServer
from tests.upgrade.old_release import REPO_ROOT, OldRelease
from tests.upgrade.support import new_cli, token_for

OLD_SCHEMA = SCHEMA_VERSION - 1


def _set_version(db: Database, version: int) -> None:
    sql(
        "UPDATE livesettings_meta SET value = $1 WHERE key = 'schema_version'",
        str(version),
        url=url(SUPERUSER, db.name),
    )


@pytest.mark.postgres
def test_one_version_newer_is_served_with_a_warning_two_are_refused(
    pg_database: Database, tmp_path: Path
) -> None:
    db = pg_database
    run_setup(db)
    newer = SCHEMA_VERSION + 1
    _set_version(db, newer)  # as if the next release had migrated it, mid rolling upgrade
    node = ServerProcess(tmp_path / "node", **db.settings())
    node.start()
    try:
        token = token_for("u-newer")
        with httpx.Client(base_url=node.url, timeout=10.0) as http:
            answer = http.patch(
                "/v1/settings",
                json={"theme": "dark"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 200, answer.text
    finally:
        node.stop()
    assert (
        f"has schema version {newer}, newer than this livesettings (schema {SCHEMA_VERSION}): "
        "serving it, as during a rolling upgrade" in node.log_text()
    )
    verified = new_cli("verify", env=db.setup_env())
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"warn schema version: {newer}, newer than this livesettings" in verified.stdout
    refused = new_cli("migrate", env=db.setup_env())
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert (
        f"has schema version {newer}, newer than this livesettings (schema {SCHEMA_VERSION}) "
        "can set up or migrate; upgrade livesettings" in refused.stderr
    )

    too_new = SCHEMA_VERSION + 2
    _set_version(db, too_new)
    served = new_cli("serve", env={**node.env(), "LIVESETTINGS_PORT": "0"}, timeout=30)
    assert served.returncode == 3, served.stdout + served.stderr
    assert (
        f"has schema version {too_new}, newer than this livesettings supports: "
        f"this livesettings (schema {SCHEMA_VERSION}) serves "
        f"{SCHEMA_VERSION} and {SCHEMA_VERSION + 1} only; upgrade livesettings"
    ) in served.stderr
    checked = new_cli("check-db", env=db.setup_env())
    assert checked.returncode == 1
    assert (
        f"FAIL open: the database 127.0.0.1:5432/{db.name} has schema version {too_new}, newer"
        in (checked.stdout)
    )


def _sqlite_version(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "livesettings.db")
    try:
        row = conn.execute(
            "SELECT value FROM livesettings_meta WHERE key = 'schema_version'"
        ).fetchone()
    finally:
        conn.close()
    return str(row[0])


def test_a_sqlite_data_dir_of_the_previous_release_is_upgraded(
    old_release: OldRelease, tmp_path: Path
) -> None:
    made = tmp_path / "made-by-old"
    old = OldServer(old_release, made)
    old.start()
    token = token_for("u-sqlite")
    try:
        with httpx.Client(base_url=old.url, timeout=10.0) as http:
            answer = http.patch(
                "/v1/settings",
                json={"preferences": {"kept": "yes"}, "api_keys": {"openai": "sk-kept-secret"}},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 200, answer.text
    finally:
        old.stop()
    assert _sqlite_version(made) == str(OLD_SCHEMA)

    # By `migrate`: the dry run prints the SQL and changes nothing, then the real one.
    by_cli = tmp_path / "by-migrate"
    shutil.copytree(made, by_cli)
    env = {"LIVESETTINGS_DATA_DIR": str(by_cli)}
    pending = ", ".join(
        name.removesuffix(".sql") for _, name in migration_files("sqlite")[OLD_SCHEMA:]
    )
    verified = new_cli("verify", env=env)
    assert verified.returncode == 1
    assert verified.stdout.splitlines()[1] == (
        f"FAIL schema version: {OLD_SCHEMA}, older than {SCHEMA_VERSION}; pending migrations: "
        f"{pending}; run `livesettings migrate`"
    )
    checked = new_cli("check-db", env=env)
    assert checked.returncode == 1
    assert f"-    pending migrations: {pending}" in checked.stdout.splitlines()
    dry = new_cli("migrate", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"schema version {OLD_SCHEMA} → {SCHEMA_VERSION}: pending" in dry.stdout
    assert (
        "INSERT INTO livesettings_meta (key, value) VALUES ('schema_version', "
        f"'{SCHEMA_VERSION}')" in dry.stdout
    )
    assert f"schema version stays {OLD_SCHEMA}" in dry.stdout
    assert _sqlite_version(by_cli) == str(OLD_SCHEMA)
    migrated = new_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"migrated: schema version {OLD_SCHEMA} → {SCHEMA_VERSION}" in migrated.stdout
    assert _sqlite_version(by_cli) == str(SCHEMA_VERSION)
    again = new_cli("migrate", env=env)
    assert again.stdout == f"schema is up to date (version {SCHEMA_VERSION}); nothing to do\n"

    # By the embedded server's start: the same upgrade, the old write and secret still there.
    by_serve = tmp_path / "by-serve"
    shutil.copytree(made, by_serve)
    new = ServerProcess(by_serve)
    new.start()
    try:
        with httpx.Client(base_url=new.url, timeout=10.0) as http:
            answer = http.get("/v1/settings", headers={"Authorization": f"Bearer {token}"})
    finally:
        new.stop()
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["revision"] == 1
    assert document["settings"]["preferences"] == {"kept": "yes"}
    assert "sk-kept-secret" not in answer.text  # masked, yet still there to be masked
    assert document["settings"]["api_keys"]["openai"]
    assert _sqlite_version(by_serve) == str(SCHEMA_VERSION)


def test_released_migration_files_are_never_edited(old_release: OldRelease) -> None:
    """The previous release's files are byte for byte the current ones (a database migrated by
    it must not miss what a later edit added)."""
    backends: tuple[Backend, ...] = ("sqlite", "postgres")
    for backend in backends:
        folder = f"src/livesettings/store/migrations/{backend}"
        listed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "ls-tree", "--name-only", PREVIOUS_RELEASE, folder + "/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        released = sorted(Path(name).name for name in listed if name.endswith(".sql"))
        assert len(released) == OLD_SCHEMA
        current = dict((name, version) for version, name in migration_files(backend))
        for name in released:
            assert name in current, f"{backend}/{name} of the previous release is gone"
            shipped = old_release.venv.glob(
                f"lib/python*/site-packages/livesettings/store/migrations/{backend}/{name}"
            )
            (path,) = list(shipped)
            now = REPO_ROOT / folder / name
            assert path.read_bytes() == now.read_bytes(), f"{backend}/{name} was edited"
