"""What ``backup`` and ``restore`` refuse, and what they warn about: each refusal exits
non-zero with a clear message and leaves every file as it was."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from livesettings.store.base import SCHEMA_VERSION
from tests.backup.helpers import SECRET_VALUE, invoke, livesettings
from tests.support.server import ServerProcess
from tests.support.users import signup


@dataclass(frozen=True)
class Made:
    data_dir: Path
    backup: Path
    key_id: str
    user_id: str


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """A data dir written by a real server (a user with a secret), and its backup."""
    root = tmp_path_factory.mktemp("made")
    server = ServerProcess(root / "data")
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
            r = http.patch(
                "/v1/settings",
                json={"theme": "dark", "api_keys": {"openai": SECRET_VALUE}},
                headers=user.headers,
            )
            assert r.status_code == 200, r.text
        done = livesettings("backup", root / "backup", data_dir=root / "data")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.stop()
    key_id = (root / "data" / "master.keys").read_text().split(":", 1)[0]
    yield Made(root / "data", root / "backup", key_id, user.user_id)


def copy_of(made: Made, tmp_path: Path) -> Path:
    backup = tmp_path / "backup"
    shutil.copytree(made.backup, backup)
    return backup


def manifest_of(backup: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((backup / "manifest.json").read_text())
    return loaded


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def test_restore_refuses_a_data_dir_that_has_a_database(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "livesettings.db").write_bytes(b"the operator's live database")
    before = files_in(target)
    result = invoke("restore", made.backup, data_dir=target)
    assert result.exit_code == 1
    assert "livesettings.db already exists" in result.stderr
    assert "never overwrites" in result.stderr
    assert files_in(target) == before


def test_restore_refuses_a_leftover_wal_file(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "livesettings.db-wal").write_bytes(b"")
    result = invoke("restore", made.backup, data_dir=target)
    assert result.exit_code == 1
    assert "livesettings.db-wal already exists" in result.stderr
    assert sorted(files_in(target)) == ["livesettings.db-wal"]


def test_restore_refuses_a_damaged_database_file(made: Made, tmp_path: Path) -> None:
    backup = copy_of(made, tmp_path)
    db = backup / "livesettings.db"
    data = bytearray(db.read_bytes())
    data[len(data) // 2] ^= 0xFF
    db.write_bytes(bytes(data))
    target = tmp_path / "data"
    result = invoke("restore", backup, data_dir=target)
    assert result.exit_code == 1
    assert "does not match its manifest" in result.stderr
    assert "damaged" in result.stderr
    assert files_in(target) == {}  # no database, no temporary file left behind


def test_restore_refuses_a_newer_schema(made: Made, tmp_path: Path) -> None:
    backup = copy_of(made, tmp_path)
    manifest = manifest_of(backup)
    manifest["schema_version"] = SCHEMA_VERSION + 2
    (backup / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "data"
    result = invoke("restore", backup, data_dir=target)
    assert result.exit_code == 1
    assert f"schema version {SCHEMA_VERSION + 2}" in result.stderr
    assert f"serves schema versions up to {SCHEMA_VERSION + 1}" in result.stderr
    assert files_in(target) == {}


def with_schema_version(made: Made, tmp_path: Path, version: int) -> tuple[Path, bytes]:
    """A copy of the backup whose database and manifest record schema ``version``."""
    backup = copy_of(made, tmp_path)
    db = backup / "livesettings.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE livesettings_meta SET value = ? WHERE key = 'schema_version'", (str(version),)
        )
    conn.close()
    manifest = manifest_of(backup)
    data = db.read_bytes()
    manifest.update(
        schema_version=version,
        database_size=len(data),
        database_sha256=hashlib.sha256(data).hexdigest(),
    )
    (backup / "manifest.json").write_text(json.dumps(manifest))
    return backup, data


@pytest.mark.parametrize(
    ("version", "note"),
    [
        (SCHEMA_VERSION + 1, f"version {SCHEMA_VERSION + 1}, from a newer livesettings"),
        (SCHEMA_VERSION - 1, "run `livesettings migrate` (or `setup`)"),
    ],
)
def test_restore_takes_the_previous_and_the_next_schema_version(
    made: Made, tmp_path: Path, version: int, note: str
) -> None:
    """A release serves N and N+1 (expand/contract), and migrates an older one: both restore,
    with a note."""
    backup, data = with_schema_version(made, tmp_path, version)
    target = tmp_path / "data"
    result = invoke("restore", backup, data_dir=target)
    assert result.exit_code == 0, result.stderr
    assert note in result.stdout
    assert (target / "livesettings.db").read_bytes() == data


def test_restore_refuses_a_database_that_contradicts_its_manifest(
    made: Made, tmp_path: Path
) -> None:
    backup, _ = with_schema_version(made, tmp_path, SCHEMA_VERSION - 1)
    manifest = manifest_of(backup)
    manifest["schema_version"] = SCHEMA_VERSION
    (backup / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "data"
    result = invoke("restore", backup, data_dir=target)
    assert result.exit_code == 1
    assert "the backup is inconsistent" in result.stderr
    assert files_in(target) == {}


def test_restore_without_the_keyring_warns_loudly(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "data"
    result = invoke("restore", made.backup, data_dir=target)
    assert result.exit_code == 0, result.stderr
    assert f"MISSING master key id(s) {made.key_id}" in result.stdout
    assert "WARNING: the secrets of 1 user or team cannot be opened" in result.stderr
    assert "no keyring is configured" in result.stderr
    assert "1 user, 1 document, 1 change row, 0 teams" in result.stdout
    assert stat.S_IMODE((target / "livesettings.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_restore_with_another_keyring_names_the_missing_id(made: Made, tmp_path: Path) -> None:
    other = "other:" + base64.b64encode(os.urandom(32)).decode()
    result = invoke("restore", made.backup, data_dir=tmp_path / "data", master_keys=other)
    assert result.exit_code == 0, result.stderr
    assert f"master key id(s) {made.key_id} is configured" in result.stderr
    assert "LIVESETTINGS_MASTER_KEYS holds other" in result.stderr


def test_restore_of_a_folder_that_is_no_backup(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    result = invoke("restore", tmp_path / "nothing", data_dir=tmp_path / "data")
    assert result.exit_code == 1
    assert "is not a livesettings backup: it has no manifest.json" in result.stderr


def test_backup_refuses_a_folder_that_is_not_empty(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "backup"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = invoke("backup", target, data_dir=made.data_dir)
    assert result.exit_code == 1
    assert "is not empty" in result.stderr
    assert files_in(target) == {"notes.txt": b"keep me"}


def test_backup_of_a_missing_database(tmp_path: Path) -> None:
    result = invoke("backup", tmp_path / "backup", data_dir=tmp_path / "data")
    assert result.exit_code == 4
    assert "does not exist: nothing to back up" in result.stderr
    assert not (tmp_path / "backup").exists()


def test_backup_of_a_database_that_is_not_livesettings(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    conn = sqlite3.connect(tmp_path / "data" / "livesettings.db")
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    result = invoke("backup", tmp_path / "backup", data_dir=tmp_path / "data")
    assert result.exit_code == 1
    assert "is not a livesettings database" in result.stderr
    assert not (tmp_path / "backup").exists()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_postgres_points_to_the_pg_dump_procedure(command: str, tmp_path: Path) -> None:
    (tmp_path / "backup").mkdir()
    result = invoke(
        command,
        tmp_path / "backup",
        database_url="postgresql://app:pw@127.0.0.1:1/livesettings",
        data_dir=tmp_path / "data",
    )
    assert result.exit_code == 1
    assert "pg_dump -Fc" in result.stderr and "pg_restore" in result.stderr
    assert files_in(tmp_path / "backup") == {}
