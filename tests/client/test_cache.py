"""The SQLite offline cache: real files, reopened, corrupted on purpose."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from livesettings.client.cache import OfflineCache, QueuedMutation
from livesettings.errors import OfflineSecret


def test_documents_queue_and_identity_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with OfflineCache.open(path) as cache:
        cache.set_meta("client_id", "py-abc")
        cache.save_document("", 4, {"theme": "dark", "api_keys": {"k": {"set": True}}})
        cache.save_document("", 5, {"theme": "system"})
        cache.add_pending(QueuedMutation("", "m1", 5, {"language": "fr"}, 100))
        cache.add_pending(QueuedMutation("bob", "m2", None, {"theme": "dark"}, 101))
        cache.add_pending(QueuedMutation("", "m3", 5, {"preferences": {"a": [1, 2]}}, 102))
        cache.add_pending(QueuedMutation("", "m1", 9, {"language": "de"}, 103))  # same id: kept
    with OfflineCache.open(path) as cache:
        assert cache.get_meta("client_id") == "py-abc"
        assert cache.get_meta("user_id") is None
        document = cache.load_document("")
        assert document is not None
        assert (document.revision, document.settings) == (5, {"theme": "system"})
        assert cache.load_document("bob") is None
        assert [m.mutation_id for m in cache.load_pending()] == ["m1", "m2", "m3"]
        assert cache.load_pending("") == [
            QueuedMutation("", "m1", 5, {"language": "fr"}, 100),
            QueuedMutation("", "m3", 5, {"preferences": {"a": [1, 2]}}, 102),
        ]
        cache.remove_pending("m1")
        assert [m.mutation_id for m in cache.load_pending()] == ["m2", "m3"]
        assert cache.forget("") == 1
        assert cache.load_document("") is None
        assert [m.mutation_id for m in cache.load_pending()] == ["m2"]


def test_a_secret_is_never_queued(tmp_path: Path) -> None:
    with OfflineCache.open(tmp_path / "cache.db") as cache:
        with pytest.raises(OfflineSecret) as error:
            cache.add_pending(QueuedMutation("", "m1", 1, {"api_keys": {"openai": "sk-1"}}, 1))
        assert error.value.code == "offline_secret"
        cache.add_pending(QueuedMutation("", "m2", 1, {"api_keys": {"openai": None}}, 1))
        assert [m.mutation_id for m in cache.load_pending()] == ["m2"]
    assert b"sk-1" not in (tmp_path / "cache.db").read_bytes()


def test_a_garbage_file_is_moved_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with caplog.at_level(logging.WARNING, logger="livesettings.client"):
        cache = OfflineCache.open(path)
    with cache:
        assert cache.load_pending() == []
        cache.save_document("", 1, {"theme": "dark"})
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a database")
    assert f"moved it to {aside[0]}" in caplog.text


def test_rows_that_do_not_decode_count_as_corruption(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.db"
    with OfflineCache.open(path) as cache:
        cache.add_pending(QueuedMutation("", "m1", 1, {"theme": "dark"}, 1))
    db = sqlite3.connect(path)
    db.execute("UPDATE pending SET patch = '{not json'")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="livesettings.client"):
        cache = OfflineCache.open(path)
    with cache:
        assert cache.load_pending() == []
    assert "is unusable" in caplog.text
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 1


def test_a_cache_of_an_unknown_format_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with OfflineCache.open(path) as cache:
        cache.set_meta("format", "99")
    with OfflineCache.open(path) as cache:
        assert cache.get_meta("format") == "1"
