"""The client's offline cache: one SQLite file holding the last known documents and the queue.

Per document (the token's own one under the key ``""``, a service's followed users under their
user id, a team's under ``team:<team_id>``) it keeps the last confirmed settings and their
revision, so a client starts with data and resumes with ``since=<revision>``; and the pending
mutations, in order, with their ids, so that a queue left by a process that exited is replayed
— exactly once, thanks to the server's idempotency — by the next one.

What the server sent is already masked, so no secret reaches the file; a mutation carrying a
secret is refused here too (:class:`~livesettings.errors.OfflineSecret`), as a last guard.

A file that SQLite cannot read, or whose content is not what this module wrote, is moved aside
(``<name>.corrupt-<ms>``) with a logged warning and a fresh cache is started: losing a cache
costs a snapshot download, never a crash. One cache file serves one client per document at a
time: a personal and a team client may share it, each keeping to its own documents (the keys
never mix, so format 1 holds team documents as it is).

The file (and SQLite's ``-wal``/``-shm`` beside it) is private to its user, mode 0600, and the
folders the cache creates above it are 0700: cached settings are masked, but still the user's.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from livesettings.errors import OfflineSecret, StorageError

__all__ = ["CachedDocument", "OfflineCache", "QueuedMutation", "carries_secret"]

log = logging.getLogger("livesettings.client")

_FORMAT: Final = "1"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    mutation_id TEXT NOT NULL UNIQUE,
    base_revision INTEGER,
    patch TEXT NOT NULL,
    edited_at INTEGER NOT NULL
);
"""


def carries_secret(patch: dict[str, Any]) -> bool:
    """Whether a merge patch writes a secret (a non-null value under ``api_keys``).

    Deleting a secret (``null``) carries no plaintext and may be queued.
    """
    keys = patch.get("api_keys")
    return isinstance(keys, dict) and any(value is not None for value in keys.values())


@dataclass(frozen=True, slots=True)
class CachedDocument:
    """A document as last confirmed by the server (masked)."""

    revision: int
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueuedMutation:
    """A mutation the server has not acknowledged yet, as it will be (re)sent."""

    key: str
    mutation_id: str
    base_revision: int | None
    patch: dict[str, Any]
    edited_at: int


class _Corrupt(Exception):
    """The file is not a cache this module can use."""


class OfflineCache:
    """The SQLite offline cache at ``path`` (created if missing). Use :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> OfflineCache:
        """Open (or create) the cache; a corrupted file is moved aside and replaced."""
        target = Path(path)
        _private_parents(target.parent)
        _private_file(target)
        try:
            return cls(target, _connect(target))
        except _Corrupt as exc:
            aside = _move_aside(target)
            log.warning(
                "the offline cache %s is unusable (%s); moved it to %s and started afresh",
                target,
                exc,
                aside,
            )
        _private_file(target)
        try:
            return cls(target, _connect(target))
        except _Corrupt as exc:  # pragma: no cover - a fresh file that fails is a disk problem
            raise StorageError(f"cannot create the offline cache {target}: {exc}") from exc

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    def __enter__(self) -> OfflineCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- identity -------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        """A value of the meta table (``client_id``, ``user_id``), or None."""
        row = self._run("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Set a value of the meta table."""
        self._run(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- documents ------------------------------------------------------------------------
    def load_document(self, key: str) -> CachedDocument | None:
        """The last confirmed document under ``key``, or None."""
        row = self._run("SELECT revision, settings FROM documents WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return CachedDocument(int(row[0]), json.loads(row[1]))

    def save_document(self, key: str, revision: int, settings: dict[str, Any]) -> None:
        """Replace the document under ``key`` (settings as the server sent them: masked)."""
        self._run(
            "INSERT INTO documents (key, revision, settings) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, "
            "settings = excluded.settings",
            (key, revision, _dumps(settings)),
        )

    def keys(self) -> list[str]:
        """The keys of every cached document and queued mutation, sorted."""
        rows = self._run("SELECT key FROM documents UNION SELECT key FROM pending ORDER BY 1")
        return [str(row[0]) for row in rows.fetchall()]

    def forget(self, key: str) -> int:
        """Drop the document and the queue under ``key``; return how many mutations went."""
        with self._db:
            self._db.execute("DELETE FROM documents WHERE key = ?", (key,))
            dropped = self._db.execute("DELETE FROM pending WHERE key = ?", (key,)).rowcount
        return int(dropped)

    # -- the queue ------------------------------------------------------------------------
    def add_pending(self, mutation: QueuedMutation) -> None:
        """Append a mutation to the queue. Refuses secrets (``OfflineSecret``)."""
        if carries_secret(mutation.patch):
            raise OfflineSecret("a secret is never written to the offline cache")
        self._run(
            "INSERT OR IGNORE INTO pending (key, mutation_id, base_revision, patch, edited_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                mutation.key,
                mutation.mutation_id,
                mutation.base_revision,
                _dumps(mutation.patch),
                mutation.edited_at,
            ),
        )

    def remove_pending(self, mutation_id: str) -> None:
        """Drop a mutation from the queue (acknowledged or refused)."""
        self._run("DELETE FROM pending WHERE mutation_id = ?", (mutation_id,))

    def load_pending(self, key: str | None = None) -> list[QueuedMutation]:
        """The queue in order, for one key or for all."""
        sql = "SELECT key, mutation_id, base_revision, patch, edited_at FROM pending"
        params: tuple[Any, ...] = ()
        if key is not None:
            sql += " WHERE key = ?"
            params = (key,)
        rows = self._run(sql + " ORDER BY seq", params).fetchall()
        return [QueuedMutation(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"the offline cache {self.path} failed: {exc}") from exc


def _private_parents(folder: Path) -> None:
    """Create the missing folders above the cache 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)


def _private_file(path: Path) -> None:
    """Create the cache file 0600 before SQLite opens it (SQLite gives its -wal, -shm and
    -journal files the database file's mode), and take group and other access away from a
    file an older client created."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot create the offline cache {path}: {exc.strerror}") from exc
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        each = path.with_name(name)
        try:
            if each.exists() and each.stat().st_mode & 0o077:
                each.chmod(0o600)
        except OSError as exc:
            log.warning("cannot make %s private (mode 0600): %s", each, exc.strerror)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _connect(path: Path) -> sqlite3.Connection:
    """Open and check the file; ``_Corrupt`` when it is not a usable cache."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the offline cache {path}: {exc}") from exc
    try:
        _prepare(db)
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc) or "busy" in str(exc):
            # Another process holds the file: not corruption, so never move it aside.
            raise StorageError(f"the offline cache {path} is in use: {exc}") from exc
        raise _Corrupt(str(exc)) from exc
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
        db.close()
        raise _Corrupt(str(exc) or type(exc).__name__) from exc
    except _Corrupt:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection) -> None:
    (check,) = db.execute("PRAGMA quick_check").fetchone()
    if check != "ok":
        raise _Corrupt(f"integrity check: {check}")
    db.execute("PRAGMA journal_mode = WAL")
    # The queue is the user's unsaved work: each append must survive a power cut.
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(_SCHEMA)
    row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (_FORMAT,))
    elif row[0] != _FORMAT:
        raise _Corrupt(f"unknown cache format {row[0]!r}")
    # Read everything once: a cache whose rows do not decode is as bad as a broken file.
    for revision, settings in db.execute("SELECT revision, settings FROM documents"):
        if not isinstance(revision, int) or not isinstance(json.loads(settings), dict):
            raise _Corrupt("a cached document is not a JSON object")
    for patch, edited_at in db.execute("SELECT patch, edited_at FROM pending"):
        if not isinstance(json.loads(patch), dict) or not isinstance(edited_at, int):
            raise _Corrupt("a queued mutation is not a JSON object")


def _move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time() * 1000)}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    return aside
