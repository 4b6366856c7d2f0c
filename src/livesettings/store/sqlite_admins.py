"""The admin dashboard's statements on SQLite: the admin flag and the bounded searches.

Each function takes a connection of :class:`~livesettings.store.sqlite.SqliteStore`'s (the
writer's for :func:`set_admin`, a reader's otherwise); the searches read at most ``limit``
rows (LIMIT in SQL).
"""

from __future__ import annotations

import sqlite3

from .base import TeamSummary, UserSummary, like_pattern
from .sqlite_sql import write_transaction

__all__ = ["admin_ids", "is_admin", "search_teams", "search_users", "set_admin"]

# ?1: the text searched for, ?2: it as a lower-case "contains" pattern, ?3: the limit.
_SEARCH_USERS = """
WITH ids(id) AS (
    SELECT user_id FROM users
    WHERE ?1 = '' OR lower(username) LIKE ?2 ESCAPE '\\' OR substr(user_id, 1, length(?1)) = ?1
    UNION
    SELECT user_id FROM user_preferences
    WHERE user_id IS NOT NULL AND substr(user_id, 1, 5) <> 'team:'
      AND (?1 = '' OR substr(user_id, 1, length(?1)) = ?1)
)
SELECT ids.id AS user_id, u.username AS username,
       COALESCE(u.created_at, p.created_at) AS created_at,
       EXISTS (SELECT 1 FROM admins a WHERE a.user_id = ids.id) AS admin,
       COALESCE(p.revision, 0) AS revision, p.updated_at AS updated_at,
       (SELECT count(*) FROM team_members m WHERE m.user_id = ids.id) AS teams
FROM ids
LEFT JOIN users u ON u.user_id = ids.id
LEFT JOIN user_preferences p ON p.user_id = ids.id
ORDER BY u.username IS NULL, u.username, ids.id
LIMIT ?3
"""

_SEARCH_TEAMS = """
SELECT t.team_id AS team_id, t.name AS name, t.created_at AS created_at,
       (SELECT count(*) FROM team_members m WHERE m.team_id = t.team_id) AS members,
       COALESCE((SELECT p.revision FROM user_preferences p
                 WHERE p.user_id = 'team:' || t.team_id), 0) AS revision
FROM teams t
WHERE ?1 = '' OR lower(t.name) LIKE ?2 ESCAPE '\\' OR substr(t.team_id, 1, length(?1)) = ?1
ORDER BY t.name, t.team_id
LIMIT ?3
"""


def is_admin(conn: sqlite3.Connection, user_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM admins WHERE user_id = ?", (user_id,)).fetchone()
    return row is not None


def set_admin(conn: sqlite3.Connection, user_id: str, on: bool, now: str) -> bool:
    """Grant or take back the flag in one transaction; True when it changed. Only a built-in
    user (a ``users`` row) can be granted it."""
    with write_transaction(conn):
        if on:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO admins (user_id, granted_at) "
                "SELECT user_id, ? FROM users WHERE user_id = ?",
                (now, user_id),
            )
        else:
            cursor = conn.execute("DELETE FROM admins WHERE user_id = ?", (user_id,))
        return cursor.rowcount > 0


def admin_ids(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT user_id FROM admins")}


def search_users(conn: sqlite3.Connection, q: str, limit: int) -> list[UserSummary]:
    rows = conn.execute(_SEARCH_USERS, (q, like_pattern(q.lower(), contains=True), limit))
    return [
        UserSummary(
            user_id=row["user_id"],
            username=row["username"],
            created_at=row["created_at"],
            admin=bool(row["admin"]),
            revision=int(row["revision"]),
            updated_at=row["updated_at"],
            teams=int(row["teams"]),
        )
        for row in rows
    ]


def search_teams(conn: sqlite3.Connection, q: str, limit: int) -> list[TeamSummary]:
    rows = conn.execute(_SEARCH_TEAMS, (q, like_pattern(q.lower(), contains=True), limit))
    return [
        TeamSummary(
            team_id=row["team_id"],
            name=row["name"],
            members=int(row["members"]),
            revision=int(row["revision"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]
