"""Consistent snapshots of the embedded SQLite store: ``livesettings backup`` and ``restore``.

A backup is a directory (mode 0700) holding two files, both mode 0600::

    livesettings.db   the database, copied with ``VACUUM INTO``
    manifest.json     what the copy holds (:class:`Manifest`): versions, size, sha256, counts
                      and the master key ids its data keys are wrapped by

``VACUUM INTO`` reads the live database in one read transaction. In WAL mode a reader never
blocks the server's writer, and the copy is the database as of one commit: every write
acknowledged before the backup started is in it, and no write is half in it.

The keyring is *not* in the backup. The data keys in the copy are wrapped by master keys that
never enter the database, so the copy alone opens no secret, and the keyring alone holds no
setting: they are kept apart and both are needed. :attr:`Counts.master_key_ids` names the keys
a restore needs.

This module reads the copy with ``sqlite3`` directly (the tables of
``store/migrations/sqlite``), so a backup never opens the store itself nor takes its writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from . import __version__
from .document import rfc3339
from .errors import SnapshotError, StorageError
from .store.base import SCHEMA_VERSION

__all__ = [
    "DATABASE_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "NEWEST_RESTORABLE",
    "Counts",
    "Manifest",
    "Restored",
    "SnapshotError",
    "database_present",
    "read_counts",
    "read_manifest",
    "restore_snapshot",
    "take_snapshot",
]

FORMAT_VERSION: Final = 1
"""The layout of a backup directory and its manifest; a restore refuses any other."""
MANIFEST_FILE: Final = "manifest.json"
DATABASE_FILE: Final = "livesettings.db"
NEWEST_RESTORABLE: Final = SCHEMA_VERSION + 1
"""A release serves its own schema version and the next one (DESIGN: expand/contract)."""

_CHUNK: Final = 1 << 20
_BUSY_TIMEOUT_S: Final = 10.0
# SQLite's companions of a database file: a restore must find none of them either.
_COMPANIONS: Final = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Counts:
    """What a copy holds, read from it (so it matches the copy exactly)."""

    users: int
    documents: int
    """Rows of ``user_preferences``: personal documents and team documents."""
    changes: int
    """Change-log rows (``settings_changes``)."""
    teams: int
    revision_sum: int
    revision_max: int
    master_key_ids: dict[str, int] = field(default_factory=dict)
    """Master key id → how many data keys it wraps."""

    def describe(self) -> str:
        """One line for the CLI: ``3 users, 4 documents, … revisions: sum 40, max 20``."""
        return (
            f"{_plural(self.users, 'user')}, {_plural(self.documents, 'document')}, "
            f"{_plural(self.changes, 'change row')}, {_plural(self.teams, 'team')}; "
            f"revisions: sum {self.revision_sum}, max {self.revision_max}"
        )

    @property
    def data_keys(self) -> int:
        """How many data keys the copy holds, under all master keys."""
        return sum(self.master_key_ids.values())


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what a backup is and holds."""

    format_version: int
    livesettings_version: str
    schema_version: int
    created_at: str
    database_file: str
    database_size: int
    database_sha256: str
    counts: Counts

    def to_json(self) -> str:
        """The manifest as written: indented JSON, keys in a stable order."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> Manifest:
        """The manifest in ``text``; ``SnapshotError`` naming ``where`` when it is not one."""
        try:
            raw = json.loads(text)
            counts = raw["counts"]
            ids = counts["master_key_ids"]
            manifest = cls(
                format_version=_int(raw["format_version"]),
                livesettings_version=_str(raw["livesettings_version"]),
                schema_version=_int(raw["schema_version"]),
                created_at=_str(raw["created_at"]),
                database_file=_str(raw["database_file"]),
                database_size=_int(raw["database_size"]),
                database_sha256=_str(raw["database_sha256"]),
                counts=Counts(
                    users=_int(counts["users"]),
                    documents=_int(counts["documents"]),
                    changes=_int(counts["changes"]),
                    teams=_int(counts["teams"]),
                    revision_sum=_int(counts["revision_sum"]),
                    revision_max=_int(counts["revision_max"]),
                    master_key_ids={_str(k): _int(v) for k, v in ids.items()},
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"{where} is not a livesettings backup manifest ({exc})") from exc
        # The file name is joined to the backup directory: it must name a file inside it.
        if Path(manifest.database_file).name != manifest.database_file:
            raise SnapshotError(f"{where} names an unusable database file")
        return manifest


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_snapshot` put in place."""

    manifest: Manifest
    database: Path
    counts: Counts
    """Read back from the restored file."""


def take_snapshot(
    source: Path, target: Path, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Manifest:
    """Copy the live database ``source`` into the new directory ``target`` and describe it.

    ``target`` must not exist, or be an empty directory. On any failure nothing of the
    backup is left behind (the directory too, if this made it).
    """
    if not source.is_file():
        raise StorageError(
            f"the SQLite database {source} does not exist: nothing to back up "
            "(check LIVESETTINGS_DATA_DIR / LIVESETTINGS_DATABASE_URL)"
        )
    created = _prepare_directory(target)
    copy = target / DATABASE_FILE
    manifest_path = target / MANIFEST_FILE
    try:
        started = now()
        _vacuum_into(source, copy)
        version = _checked_copy(copy)
        size, digest = _digest(copy)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            livesettings_version=__version__,
            schema_version=version,
            created_at=rfc3339(started),
            database_file=DATABASE_FILE,
            database_size=size,
            database_sha256=digest,
            counts=read_counts(copy),
        )
        with _private_file(manifest_path) as fh:
            fh.write(manifest.to_json().encode())
        _fsync_directory(target)
    except BaseException:
        for path in (copy, manifest_path, copy.with_name(copy.name + "-journal")):
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    return manifest


def read_manifest(backup: Path) -> Manifest:
    """The manifest of the backup directory ``backup``, checked against its database file:
    format, schema version a release of this version may serve, size and sha256."""
    path = backup / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SnapshotError(
            f"{backup} is not a livesettings backup: it has no {MANIFEST_FILE}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from exc
    manifest = Manifest.from_json(text, path)
    if manifest.format_version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path} has backup format {manifest.format_version}; this livesettings "
            f"reads format {FORMAT_VERSION}"
        )
    if manifest.schema_version > NEWEST_RESTORABLE:
        raise SnapshotError(
            f"the backup has schema version {manifest.schema_version} (livesettings "
            f"{manifest.livesettings_version}); this livesettings {__version__} serves schema "
            f"versions up to {NEWEST_RESTORABLE}: restore it with a newer livesettings"
        )
    return manifest


def restore_snapshot(backup: Path, database: Path) -> Restored:
    """Put the backup in directory ``backup`` at ``database``, which must not exist yet.

    The file is copied under a temporary name (mode 0600), its sha256 and integrity checked,
    and only then linked to ``database``, so a failed restore leaves nothing at ``database``
    and a database that appeared meanwhile is never overwritten.
    """
    manifest = read_manifest(backup)
    source = backup / manifest.database_file
    present = database_present(database)
    if present is not None:
        raise SnapshotError(
            f"{present} already exists: a restore goes into an empty data directory and "
            "never overwrites a database (move the existing one away first)"
        )
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = database.with_name(f".{database.name}.restore-{secrets.token_hex(4)}")
    try:
        digest = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src, _private_file(tmp, replace=False) as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
        except FileNotFoundError:
            raise SnapshotError(f"the backup's database file {source} is missing") from None
        if size != manifest.database_size or digest.hexdigest() != manifest.database_sha256:
            raise SnapshotError(
                f"{source} does not match its manifest (size {size}, expected "
                f"{manifest.database_size}; sha256 {digest.hexdigest()[:16]}…, expected "
                f"{manifest.database_sha256[:16]}…): the backup is damaged"
            )
        version = _checked_copy(tmp)
        if version != manifest.schema_version:
            raise SnapshotError(
                f"{source} records schema version {version}, its manifest "
                f"{manifest.schema_version}: the backup is inconsistent"
            )
        counts = read_counts(tmp)
        try:
            os.link(tmp, database)  # unlike rename, never replaces a file that appeared
        except FileExistsError:
            raise SnapshotError(
                f"{database} appeared while restoring; it was left as it is"
            ) from None
        _fsync_directory(database.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return Restored(manifest, database, counts)


def database_present(database: Path) -> Path | None:
    """The database file or one of its companions (``-wal``, ``-shm``, ``-journal``) that
    exists, if any."""
    for suffix in _COMPANIONS:
        path = database.with_name(database.name + suffix)
        if path.exists() or path.is_symlink():
            return path
    return None


def read_counts(path: Path) -> Counts:
    """Users, documents, change rows, teams, revisions and data keys of the database at
    ``path`` (a copy: read in one transaction)."""
    with _read_only(path) as conn:
        conn.execute("BEGIN")
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

        def count(table: str) -> int:
            if table not in tables:  # teams arrived with schema version 2
                return 0
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        revision_sum, revision_max = conn.execute(
            "SELECT COALESCE(sum(revision), 0), COALESCE(max(revision), 0) FROM user_preferences"
        ).fetchone()
        key_ids = {
            str(key_id): int(n)
            for key_id, n in conn.execute(
                "SELECT master_key_id, count(*) FROM data_keys "
                "GROUP BY master_key_id ORDER BY master_key_id"
            )
        }
        counts = Counts(
            users=count("users"),
            documents=count("user_preferences"),
            changes=count("settings_changes"),
            teams=count("teams"),
            revision_sum=int(revision_sum),
            revision_max=int(revision_max),
            master_key_ids=key_ids,
        )
        conn.execute("COMMIT")
    return counts


# --- the steps -------------------------------------------------------------------------------


def _prepare_directory(target: Path) -> bool:
    """Make ``target`` a private empty directory; True when this created it."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise SnapshotError(f"{target} exists and is not a directory")
    if target.exists():
        if any(target.iterdir()):
            raise SnapshotError(
                f"{target} is not empty: a backup goes into a new (or empty) directory"
            )
        target.chmod(0o700)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(mode=0o700)
    target.chmod(0o700)  # mkdir's mode is masked by the umask
    return True


def _vacuum_into(source: Path, copy: Path) -> None:
    # The empty 0600 file exists first: VACUUM INTO fills it and keeps its mode, so the copy
    # is never readable by others, whatever the umask.
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with _read_only(source) as conn:
        try:
            version = _schema_version(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the SQLite database {source}: {exc}") from exc
        if version is None:
            raise SnapshotError(
                f"{source} is not a livesettings database (it records no schema version)"
            )
        try:
            conn.execute("VACUUM INTO ?", (str(copy),))
        except sqlite3.Error as exc:
            raise StorageError(f"copying {source} failed: {exc}") from exc


def _checked_copy(path: Path) -> int:
    """The copy's schema version, after ``PRAGMA integrity_check`` found it sound."""
    try:
        with _read_only(path) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise SnapshotError(
                    f"the integrity check of {path} failed: {'; '.join(problems[:5])}"
                )
            version = _schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{path} is not a sound SQLite database: {exc}") from exc
    if version is None:
        raise SnapshotError(f"{path} records no livesettings schema version")
    return version


def _schema_version(conn: sqlite3.Connection) -> int | None:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'livesettings_meta'"
    ).fetchone()
    if found is None:
        return None
    row = conn.execute(
        "SELECT value FROM livesettings_meta WHERE key = 'schema_version'"
    ).fetchone()
    if row is None:
        return None
    try:
        return int(row[0])
    except ValueError:
        raise SnapshotError(f"the recorded schema version {row[0]!r} is not a number") from None


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    # mode=ro: a backup never writes the live database, and a missing file is an error.
    conn = sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro",
        uri=True,
        timeout=_BUSY_TIMEOUT_S,
        isolation_level=None,
    )
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _private_file(path: Path, *, replace: bool = True) -> Iterator[Any]:
    """A new 0600 file, flushed to disk on exit; with ``replace``, written under a temporary
    name and renamed over ``path`` only once complete."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if replace else path
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
    finally:
        if replace:
            tmp.unlink(missing_ok=True)


def _fsync_directory(path: Path) -> None:
    # The new names survive a power cut only once their directory is on disk too.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
