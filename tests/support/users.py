"""Signing users up against a real server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx


@dataclass
class User:
    user_id: str
    username: str
    password: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def signup(
    http: httpx.Client, username: str | None = None, password: str = "correct horse 1"
) -> User:
    username = username or "u" + uuid.uuid4().hex[:10]
    response = http.post("/v1/auth/signup", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return User(body["user_id"], username, password, body["access_token"], body["refresh_token"])
