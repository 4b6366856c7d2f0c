"""The offline cache is private: the file and SQLite's sidecars 0600, created folders 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesettings.client.cache import OfflineCache, QueuedMutation


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The usual 022 umask, under which a plain create gives 0644 files and 0755 folders."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_cache_and_its_sidecars_are_0600_in_folders_made_0700(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "profile" / "livesettings" / "cache.db"
    with OfflineCache.open(path) as cache:
        cache.save_document("", 1, {"theme": "dark"})
        cache.add_pending(QueuedMutation("", "m1", 1, {"language": "fr"}, 1))
        sidecars = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)  # WAL mode: both exist while open
        assert {p.name: _mode(p) for p in (path, *sidecars)} == {
            "cache.db": 0o600,
            "cache.db-wal": 0o600,
            "cache.db-shm": 0o600,
        }
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o700
    assert _mode(tmp_path) == 0o755  # a folder the client did not make is left alone


def test_an_existing_cache_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with OfflineCache.open(path) as cache:
        cache.set_meta("client_id", "py-1")
    path.chmod(0o644)
    with OfflineCache.open(path) as cache:
        assert cache.get_meta("client_id") == "py-1"
        assert _mode(path) == 0o600
        assert _mode(path.with_name("cache.db-wal")) == 0o600


def test_a_replacement_for_a_corrupt_cache_is_private_too(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(b"not a database" * 100)
    path.chmod(0o644)
    with OfflineCache.open(path) as cache:
        cache.set_meta("client_id", "py-2")
        assert _mode(path) == 0o600
