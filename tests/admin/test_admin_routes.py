"""The /v1/admin routes against a real server, on SQLite and PostgreSQL: users and teams
searched, sessions ended, users removed, the audit ring buffer."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.admins import admin_user
from tests.support.server import ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

SECRET = "sk-admin-test-0123456789abcdefXYZ9"


def _get(server: ServerProcess, path: str, user: User, **params: str | int) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers=user.headers, timeout=10)


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_users_are_found_by_name_or_id_with_counts_and_never_a_secret(
    server: ServerProcess,
) -> None:
    admin = admin_user(server)
    tag = uuid.uuid4().hex[:6]
    with server.client() as http:
        ann = signup(http, f"Ann-{tag}")
        bob = signup(http, f"bob-{tag}")
        r = http.patch("/v1/settings", json={"api_keys": {"openai": SECRET}}, headers=ann.headers)
        assert r.status_code == 200, r.text
        assert http.post("/v1/teams", json={"name": f"T {tag}"}, headers=ann.headers).is_success
    with WsClient(server.ws_url) as ws:
        assert ws.auth(ann.token)["type"] == "auth_ok"
        found = _get(server, "/v1/admin/users", admin, q=f"ANN-{tag}")
        assert found.status_code == 200
        [row] = found.json()["users"]
        assert (row["user_id"], row["username"], row["admin"]) == (ann.user_id, ann.username, False)
        assert (row["revision"], row["teams"], row["connections"]) == (1, 1, 1)
        assert row["created_at"] and row["updated_at"]
        # Connected now: last seen now, not at the last change.
        seen = datetime.fromisoformat(row["last_seen"].replace("Z", "+00:00"))
        assert seen >= datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00"))
        assert SECRET not in found.text and SECRET[-4:] not in found.text
        assert "last4" not in found.text and "password" not in found.text
    by_id = _get(server, "/v1/admin/users", admin, q=bob.user_id[:13]).json()["users"]
    assert bob.user_id in [u["user_id"] for u in by_id]
    both = _get(server, "/v1/admin/users", admin, q=tag).json()["users"]
    assert [u["username"] for u in both] == [ann.username, bob.username]
    bob_row = both[1]
    assert (bob_row["revision"], bob_row["updated_at"], bob_row["connections"]) == (0, None, 0)
    assert bob_row["last_seen"] is None
    [me] = _get(server, "/v1/admin/users", admin, q=admin.username).json()["users"]
    assert me["admin"] is True
    assert len(_get(server, "/v1/admin/users", admin, limit=2).json()["users"]) == 2
    for bad in ({"limit": 0}, {"limit": 101}, {"q": "x" * 129}):
        assert _get(server, "/v1/admin/users", admin, **bad).status_code == 422, bad


def test_teams_are_found_by_name_or_id(server: ServerProcess) -> None:
    admin = admin_user(server)
    tag = uuid.uuid4().hex[:6]
    with server.client() as http:
        owner = signup(http)
        team = http.post("/v1/teams", json={"name": f"Ops {tag}"}, headers=owner.headers).json()
        r = http.put(
            f"/v1/teams/{team['team_id']}/settings",
            json={"theme": "dark"},
            headers={**owner.headers, "If-Match": '"0"'},
        )
        assert r.is_success, r.text
    [row] = _get(server, "/v1/admin/teams", admin, q=f"ops {tag}").json()["teams"]
    assert (row["team_id"], row["name"], row["members"]) == (team["team_id"], f"Ops {tag}", 1)
    assert row["revision"] == 1 and row["created_at"]
    [by_id] = _get(server, "/v1/admin/teams", admin, q=team["team_id"]).json()["teams"]
    assert by_id == row
    assert _get(server, "/v1/admin/teams", admin, q="no such team " + tag).json() == {"teams": []}


def test_revoke_ends_every_session_of_the_user(server: ServerProcess) -> None:
    admin = admin_user(server)
    with server.client() as http:
        user = signup(http)
        ws = WsClient(server.ws_url)
        try:
            assert ws.auth(user.token)["type"] == "auth_ok"
            ws.subscribe()
            r = http.post(f"/v1/admin/users/{user.user_id}/revoke", headers=admin.headers)
            assert r.status_code == 204, r.text
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.conn.close_code == 4001
        finally:
            ws.close()
        refreshed = http.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert refreshed.status_code == 401
        assert http.get("/v1/settings", headers=user.headers).status_code == 401
        unknown = http.post("/v1/admin/users/no-such-user-x/revoke", headers=admin.headers)
        assert _error(unknown) == (404, "not_found")
    revoked = [
        line
        for line in _get(server, "/v1/admin/audit", admin).json()["lines"]
        if line["event"] == "sessions_revoked"
    ]
    assert revoked[-1]["user_id"] == user.user_id
    assert revoked[-1]["by"] == f"admin:{admin.user_id}"


def test_remove_deletes_the_user_by_the_one_rule(server: ServerProcess) -> None:
    admin = admin_user(server)
    with server.client() as http:
        user = signup(http)
        owner = signup(http)
        wrote = http.patch("/v1/settings", json={"preferences": {"a": 1}}, headers=user.headers)
        assert wrote.is_success
        assert http.post("/v1/teams", json={"name": "Solo"}, headers=owner.headers).is_success

        gone = http.delete(f"/v1/admin/users/{user.user_id}", headers=admin.headers)
        assert gone.status_code == 204, gone.text
        assert http.get("/v1/settings", headers=user.headers).status_code == 401
        signin = http.post(
            "/v1/auth/token", json={"username": user.username, "password": user.password}
        )
        assert signin.status_code == 401
        again = http.delete(f"/v1/admin/users/{user.user_id}", headers=admin.headers)
        assert _error(again) == (404, "not_found")
        # A team's last owner is refused, and nothing is removed.
        last = http.delete(f"/v1/admin/users/{owner.user_id}", headers=admin.headers)
        assert _error(last) == (409, "last_owner")
        assert http.get("/v1/settings", headers=owner.headers).status_code == 200
        # Not oneself: DELETE /v1/account asks for the password.
        own = http.delete(f"/v1/admin/users/{admin.user_id}", headers=admin.headers)
        assert _error(own) == (409, "conflict")
        assert "own account" in own.json()["error"]["message"]
    assert _get(server, "/v1/admin/users", admin, q=user.user_id).json() == {"users": []}
    removed = [
        line
        for line in _get(server, "/v1/admin/audit", admin).json()["lines"]
        if line["event"] == "account_removed" and line["user_id"] == user.user_id
    ]
    assert [(line["by"], line["found"]) for line in removed] == [(f"admin:{admin.user_id}", True)]


def test_the_audit_buffer_holds_the_last_100_lines(server: ServerProcess) -> None:
    admin = admin_user(server)
    with server.client() as http:
        for i in range(105):  # each refusal is an audit line
            bad = {"Authorization": f"Bearer not-a-token-{i}"}
            assert http.get("/v1/settings", headers=bad).status_code == 401
    lines = _get(server, "/v1/admin/audit", admin).json()["lines"]
    assert len(lines) == 100
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)
    # Newest last: the admin's access to the audit itself.
    assert (lines[-1]["event"], lines[-1]["path"]) == ("admin_access", "/v1/admin/audit")
    rejected = [line for line in lines if line["event"] == "token_rejected"]
    assert len(rejected) >= 90
    assert all("not-a-token" not in str(line) for line in lines)
