"""What the team tests share: making teams over HTTP, tokens, an SSE reader, stored rows."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from typing import Any

import httpx

from livesettings.auth import TokenIssuer
from tests.conftest import Backend
from tests.support.postgres import SUPERUSER, sql, url
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User

__all__ = [
    "SseReader",
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


class SseReader:
    """Reads one event stream on a thread, collecting ``(id, frame)`` pairs."""

    def __init__(self, base: str, path: str, token: str) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.ended = threading.Event()
        self._cond = threading.Condition()
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(10.0, read=None))
        self._stream = self._client.stream(
            "GET", path, headers={"Authorization": f"Bearer {token}"}
        )
        self.response = self._stream.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event_id: str | None = None
        try:
            for line in self.response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    with self._cond:
                        self.events.append((event_id, json.loads(line[6:])))
                        self._cond.notify_all()
                elif line == "":
                    event_id = None
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str | None, dict[str, Any]]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)

    def close(self) -> None:
        self._client.close()


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
