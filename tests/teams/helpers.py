"""What the team tests share: making teams over HTTP, tokens, an SSE reader, stored rows."""

from __future__ import annotations

import sqlite3
import uuid

import httpx

from livesettings.auth import TokenIssuer
from tests.conftest import Backend
from tests.support.postgres import SUPERUSER, sql, url
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User

__all__ = [
    "add_member",
    "auth",
    "create_team",
    "doc_rows",
    "service_token",
]


def auth(user: User) -> dict[str, str]:
    return user.headers


def service_token(name: str = "billing") -> str:
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue(name, role="service")
    return token


def create_team(http: httpx.Client, owner: User, name: str | None = None) -> str:
    response = http.post(
        "/v1/teams", json={"name": name or "t-" + uuid.uuid4().hex[:6]}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "owner"
    team_id: str = body["team_id"]
    return team_id


def add_member(http: httpx.Client, team_id: str, by: User, user: User, role: str) -> None:
    response = http.put(
        f"/v1/teams/{team_id}/members/{user.user_id}", json={"role": role}, headers=by.headers
    )
    assert response.status_code == 200, response.text


_DOC_TABLES = ("user_preferences", "settings_changes", "applied_mutations", "data_keys")


def doc_rows(backend: Backend, proc: ServerProcess, key: str) -> dict[str, int]:
    """How many rows each document table holds for ``key`` (read past any access rule)."""
    db = backend.databases.get(id(proc))
    counts: dict[str, int] = {}
    if db is None:
        conn = sqlite3.connect(proc.data_dir / "livesettings.db")
        try:
            for table in _DOC_TABLES:
                row = conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = ?", (key,))
                counts[table] = int(row.fetchone()[0])
        finally:
            conn.close()
        return counts
    for table in _DOC_TABLES:
        rows = sql(
            f"SELECT count(*) AS n FROM public.{table} WHERE user_id::text = $1",
            key,
            url=url(SUPERUSER, db.name),
        )
        counts[table] = int(rows[0]["n"])
    return counts
