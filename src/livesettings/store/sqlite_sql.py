"""The SQLite backend's statements: each function takes the connection of its thread.

Every per-user statement is keyed by the user's id: with SQLite that is the rule that keeps
one user from another's rows (PostgreSQL adds row-level security).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from ..crypto import WrappedKey
from ..errors import Conflict
from .base import (
    EXPORT_PAGE,
    AppliedMutation,
    ChangeRow,
    ExportedTeam,
    ExportedUser,
    StoredDocument,
    UserRow,
)
from .codec import (
    CHANGE_COLUMNS,
    DOCUMENT_COLUMNS,
    change_from_row,
    change_to_columns,
    document_from_row,
    document_to_columns,
    dumps,
    user_from_row,
    wrapped_key_from_row,
)
from .teams import MemberRow

__all__ = [
    "CHANGE_INSERT",
    "DOC_SELECT",
    "DOC_UPSERT",
    "DROP_FAMILIES",
    "USER_COLUMNS",
    "changes_after",
    "current_revision",
    "export_page",
    "export_teams",
    "import_team",
    "insert_change",
    "insert_token",
    "insert_user",
    "insert_wrapped_key",
    "load_document",
    "needs_reset",
    "oldest_known",
    "owned_by",
    "read_transaction",
    "remember",
    "revocations_after",
    "select_user",
    "select_wrapped_key",
    "upsert_document",
    "write_transaction",
]

logger = logging.getLogger(__name__)


DOC_SELECT: Final = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM user_preferences WHERE user_id = ?"
DOC_UPSERT: Final = (
    f"INSERT INTO user_preferences (user_id, {', '.join(DOCUMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(DOCUMENT_COLUMNS) + 1))}) "
    "ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(
        # A row adopted from the seed keeps its own creation time.
        "created_at = COALESCE(user_preferences.created_at, excluded.created_at)"
        if name == "created_at"
        else f"{name} = excluded.{name}"
        for name in DOCUMENT_COLUMNS
    )
)
CHANGE_INSERT: Final = (
    f"INSERT INTO settings_changes ({', '.join(CHANGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CHANGE_COLUMNS))})"
)
USER_COLUMNS: Final = "user_id, username, password_hash, created_at"


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so a transaction
    never fails half way for want of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("rollback failed")
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One snapshot for several SELECTs (WAL keeps it while the writer commits)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def load_document(conn: sqlite3.Connection, user_id: str) -> StoredDocument:
    return document_from_row(user_id, conn.execute(DOC_SELECT, (user_id,)).fetchone())


def owned_by(doc: StoredDocument, user_id: str) -> StoredDocument:
    if doc.user_id == user_id:
        return doc
    return StoredDocument(
        user_id, doc.revision, doc.settings, doc.records, doc.updated_at, doc.created_at
    )


def upsert_document(conn: sqlite3.Connection, doc: StoredDocument) -> None:
    columns = document_to_columns(doc)
    conn.execute(DOC_UPSERT, (doc.user_id, *(columns[name] for name in DOCUMENT_COLUMNS)))


def insert_change(conn: sqlite3.Connection, change: ChangeRow) -> None:
    columns = change_to_columns(change)
    conn.execute(CHANGE_INSERT, tuple(columns[name] for name in CHANGE_COLUMNS))


def remember(conn: sqlite3.Connection, user_id: str, applied: AppliedMutation, now: int) -> None:
    conn.execute(
        "INSERT INTO applied_mutations "
        "(user_id, mutation_id, body_hash, revision, conflicts, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            applied.mutation_id,
            applied.body_hash,
            applied.revision,
            dumps(list(applied.conflicts)),
            now,
        ),
    )


def current_revision(conn: sqlite3.Connection, user_id: str) -> int:
    row = conn.execute(
        "SELECT revision FROM user_preferences WHERE user_id = ?", (user_id,)
    ).fetchone()
    return 0 if row is None else int(row["revision"] or 0)


def oldest_known(conn: sqlite3.Connection, user_id: str, revision: int) -> int:
    """The oldest revision the retained log can rebuild: the first retained one minus one
    (0 when nothing was pruned); with no change rows at all, only the current one."""
    row = conn.execute(
        "SELECT MIN(revision) AS oldest FROM settings_changes WHERE user_id = ?", (user_id,)
    ).fetchone()
    return revision if row["oldest"] is None else int(row["oldest"]) - 1


def needs_reset(conn: sqlite3.Connection, user_id: str, since: int, revision: int) -> bool:
    return since > revision or since < oldest_known(conn, user_id, revision)


def changes_after(
    conn: sqlite3.Connection, user_id: str, since: int, limit: int
) -> tuple[ChangeRow, ...]:
    rows = conn.execute(
        "SELECT * FROM settings_changes WHERE user_id = ? AND revision > ? "
        "ORDER BY revision LIMIT ?",
        (user_id, since, limit),
    )
    return tuple(change_from_row(row) for row in rows)


def insert_user(conn: sqlite3.Connection, user: UserRow) -> None:
    conn.execute(
        f"INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?)",
        (user.user_id, user.username, user.password_hash, user.created_at),
    )


def select_user(conn: sqlite3.Connection, column: str, value: str) -> UserRow | None:
    row = conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else user_from_row(row)


# A live family has exactly one unused, unrevoked token; its expiry orders the families by
# their last sign-in or refresh. Those past the newest N go, with every token they hold.
DROP_FAMILIES: Final = """
    DELETE FROM refresh_tokens WHERE user_id = ? AND family_id IN (
        SELECT family_id FROM refresh_tokens
        WHERE user_id = ? AND revoked = 0 AND used_at IS NULL
        ORDER BY expires_at DESC, rowid DESC
        LIMIT -1 OFFSET ?
    )"""


def insert_token(
    conn: sqlite3.Connection, token_hash: str, user_id: str, family_id: str, expires_at: int
) -> None:
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (token_hash, user_id, family_id, expires_at),
    )


def select_wrapped_key(conn: sqlite3.Connection, user_id: str) -> WrappedKey | None:
    row = conn.execute(
        "SELECT key_id, master_key_id, blob FROM data_keys WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else wrapped_key_from_row(row)


def insert_wrapped_key(
    conn: sqlite3.Connection, user_id: str, key: WrappedKey, created_at: str
) -> None:
    conn.execute(
        "INSERT INTO data_keys (user_id, key_id, master_key_id, blob, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (user_id, key.id, key.master_key_id, key.blob, created_at),
    )


def export_page(conn: sqlite3.Connection, after: str) -> list[ExportedUser]:
    with read_transaction(conn):
        ids = [
            row["user_id"]
            for row in conn.execute(
                "SELECT user_id FROM (SELECT user_id FROM users UNION "
                "SELECT user_id FROM user_preferences UNION SELECT user_id FROM data_keys) "
                "WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after, EXPORT_PAGE),
            )
        ]
        users: list[ExportedUser] = []
        for user_id in ids:
            account = select_user(conn, "user_id", user_id)
            users.append(
                ExportedUser(
                    user_id,
                    None if account is None else account.username,
                    None if account is None else account.password_hash,
                    load_document(conn, user_id),
                    select_wrapped_key(conn, user_id),
                )
            )
        return users


def export_teams(conn: sqlite3.Connection) -> list[ExportedTeam]:
    """Every team with its members (by when they were added), in team id order."""
    with read_transaction(conn):
        members: dict[str, list[MemberRow]] = {}
        for row in conn.execute(
            "SELECT team_id, user_id, role, added_at FROM team_members "
            "ORDER BY team_id, added_at, user_id"
        ):
            members.setdefault(row["team_id"], []).append(
                MemberRow(row["user_id"], row["role"], row["added_at"])
            )
        return [
            ExportedTeam(
                row["team_id"],
                row["name"],
                row["created_by"],
                row["created_at"],
                tuple(members.get(row["team_id"], ())),
            )
            for row in conn.execute(
                "SELECT team_id, name, created_by, created_at FROM teams ORDER BY team_id"
            )
        ]


def import_team(conn: sqlite3.Connection, team: ExportedTeam) -> None:
    """Insert the team and its members; ``Conflict`` (nothing written) when it exists."""
    with write_transaction(conn):
        if conn.execute("SELECT 1 FROM teams WHERE team_id = ?", (team.team_id,)).fetchone():
            raise Conflict(
                f"team {team.team_id!r} already exists", details={"team_id": team.team_id}
            )
        conn.execute(
            "INSERT INTO teams (team_id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
            (team.team_id, team.name, team.created_by, team.created_at),
        )
        conn.executemany(
            "INSERT INTO team_members (team_id, user_id, role, added_at) VALUES (?, ?, ?, ?)",
            [(team.team_id, m.user_id, m.role, m.added_at) for m in team.members],
        )


def revocations_after(
    conn: sqlite3.Connection, table: str, columns: str, after_id: int
) -> list[tuple[int, str, int]]:
    """``(id, <columns>)`` rows of a revocation table with ``id > after_id``, oldest first."""
    rows = conn.execute(f"SELECT id, {columns} FROM {table} WHERE id > ? ORDER BY id", (after_id,))
    return [(int(row[0]), str(row[1]), int(row[2])) for row in rows]
