"""The account lifecycle against a real server on each backend: ``DELETE /v1/account``
(password or fresh token), ``GET /v1/account/export``, and their service routes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from livesettings.auth import TokenIssuer
from livesettings.client import Client, OfflineCache
from livesettings.errors import Forbidden
from tests.conftest import SHARED_SERVER_SETTINGS, Backend
from tests.support.postgres import Database
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient
from tests.teams.helpers import add_member, create_team, doc_rows, service_token

SECRET = "sk-account-lifecycle-0123456789"
RETAIN = 5  # the change log kept per user, small so that the export meets a pruned history


@pytest.fixture(scope="module")
def site(
    backend_name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Backend, ServerProcess]]:
    """One server for the module, with the backend that can read its stored rows."""
    template = request.getfixturevalue("pg_template") if backend_name == "postgres" else None
    made = Backend(backend_name, template)
    try:
        proc = made.server(
            tmp_path_factory.mktemp("account") / "data",
            changelog_retain=RETAIN,
            **SHARED_SERVER_SETTINGS,
        )
        proc.start()
        yield made, proc
    finally:
        made.close()


@pytest.fixture
def http(site: tuple[Backend, ServerProcess]) -> Iterator[httpx.Client]:
    with site[1].client() as client:
        yield client


def _stale_token(user: User, age: float = 600) -> dict[str, str]:
    """A valid token of ``user`` signed ``age`` seconds ago (past the freshness window)."""
    issuer = TokenIssuer(TEST_JWT_SECRET.encode())
    token, _ = issuer.issue(user.user_id, now=time.time() - age, signed_in=True)
    return {"Authorization": f"Bearer {token}"}


def _write(http: httpx.Client, user: User, patch: dict[str, object]) -> None:
    response = http.patch("/v1/settings", json=patch, headers=user.headers)
    assert response.status_code == 200, response.text


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_delete_with_the_password_removes_everything_and_ends_sessions(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    backend, proc = site
    alice, bob = signup(http), signup(http)
    _write(http, alice, {"theme": "dark", "api_keys": {"openai": SECRET}})
    _write(http, bob, {"theme": "dark"})
    team_id = create_team(http, bob)
    add_member(http, team_id, bob, alice, "member")  # alice leaves it on the way out
    before = doc_rows(backend, proc, alice.user_id)
    assert before["data_keys"] == 1 and before["settings_changes"] == 1
    with WsClient(proc.ws_url) as ws:
        ws.auth(alice.token)
        ws.subscribe(None)
        # A stale token with the password: the password is the proof.
        deleted = http.request(
            "DELETE", "/v1/account", json={"password": alice.password}, headers=_stale_token(alice)
        )
        assert deleted.status_code == 204, deleted.text
        with pytest.raises(ConnectionClosed):
            while True:
                ws.conn.recv(timeout=5)
        assert ws.conn.close_code == 4001
    assert doc_rows(backend, proc, alice.user_id) == dict.fromkeys(before, 0)
    assert http.get("/v1/settings", headers=alice.headers).status_code == 401
    refused = http.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert refused.status_code == 401
    signin = {"username": alice.username, "password": alice.password}
    assert http.post("/v1/auth/token", json=signin).status_code == 401
    # The username is free again: a new, empty account.
    again = signup(http, alice.username, alice.password)
    assert again.user_id != alice.user_id
    fresh = http.get("/v1/settings", headers=again.headers).json()
    assert fresh["revision"] == 0 and fresh["settings"]["api_keys"] == {}
    assert fresh["settings"]["theme"] == "light"
    # Bob and his team are untouched; alice is no longer a member.
    assert http.get("/v1/settings", headers=bob.headers).json()["settings"]["theme"] == "dark"
    members = http.get(f"/v1/teams/{team_id}/members", headers=bob.headers).json()["members"]
    assert [m["user_id"] for m in members] == [bob.user_id]
    assert doc_rows(backend, proc, bob.user_id)["data_keys"] == 0  # bob never stored a secret
    assert doc_rows(backend, proc, bob.user_id)["user_preferences"] == 1
    assert f'"event":"account_removed","user_id":"{alice.user_id}","by":"self"' in proc.log_text()
    assert SECRET not in proc.log_text()


def test_a_wrong_password_or_a_stale_token_deletes_nothing(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    backend, proc = site
    carol = signup(http)
    _write(http, carol, {"api_keys": {"openai": SECRET}})
    before = doc_rows(backend, proc, carol.user_id)
    wrong = http.request(
        "DELETE", "/v1/account", json={"password": "not the password"}, headers=carol.headers
    )
    assert wrong.status_code == 403 and _code(wrong) == "wrong_password"
    stale = http.request("DELETE", "/v1/account", headers=_stale_token(carol))
    assert stale.status_code == 403 and _code(stale) == "reauthentication_required"
    assert stale.json()["error"]["details"] == {"max_age": 300}
    # A token traded for a refresh token proves no recent sign-in, however new it is.
    traded = http.post("/v1/auth/refresh", json={"refresh_token": carol.refresh_token})
    assert traded.status_code == 200, traded.text
    refreshed = {"Authorization": f"Bearer {traded.json()['access_token']}"}
    refused = http.request("DELETE", "/v1/account", headers=refreshed)
    assert refused.status_code == 403 and _code(refused) == "reauthentication_required"
    service = {"Authorization": f"Bearer {service_token()}"}
    assert http.request("DELETE", "/v1/account", headers=service).status_code == 403
    assert doc_rows(backend, proc, carol.user_id) == before
    assert http.get("/v1/settings", headers=carol.headers).status_code == 200
    # A token from a sign-in moments ago is proof enough, without the password.
    assert http.request("DELETE", "/v1/account", headers=carol.headers).status_code == 204
    assert doc_rows(backend, proc, carol.user_id) == dict.fromkeys(before, 0)


def test_the_last_owner_of_a_team_is_refused_and_keeps_everything(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    backend, proc = site
    owner, member = signup(http), signup(http)
    _write(http, owner, {"api_keys": {"openai": SECRET}})
    team_id = create_team(http, owner)
    add_member(http, team_id, owner, member, "viewer")
    before = doc_rows(backend, proc, owner.user_id)
    refused = http.request(
        "DELETE", "/v1/account", json={"password": owner.password}, headers=owner.headers
    )
    assert refused.status_code == 409 and _code(refused) == "last_owner"
    assert refused.json()["error"]["details"] == {"teams": [team_id]}
    assert doc_rows(backend, proc, owner.user_id) == before
    assert http.get(f"/v1/teams/{team_id}/members", headers=owner.headers).status_code == 200
    assert http.get("/v1/settings", headers=owner.headers).status_code == 200


def test_the_export_holds_settings_history_and_teams_never_a_secret(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    dave, erin = signup(http), signup(http)
    _write(http, dave, {"theme": "dark", "api_keys": {"openai": SECRET}})
    _write(http, dave, {"preferences": {"font": 12}})
    team_id = create_team(http, dave, "dave's team")
    response = http.get("/v1/account/export", headers=dave.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        'attachment; filename="livesettings-export.json"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert SECRET not in response.text and SECRET[-20:] not in response.text
    body = response.json()
    shown = http.get("/v1/settings", headers=dave.headers).json()
    assert body["settings"] == shown["settings"] and body["revision"] == shown["revision"] == 2
    assert body["settings"]["api_keys"]["openai"]["last4"] == SECRET[-4:]
    assert body["user"]["user_id"] == dave.user_id and body["user"]["username"] == dave.username
    assert body["user"]["created_at"]
    assert [c["revision"] for c in body["changes"]] == [1, 2] and body["history_complete"]
    assert body["changes"][0]["patch"]["theme"] == "dark"
    assert body["changes"][1]["patch"] == {"preferences": {"font": 12}}
    assert body["teams"] == [{"team_id": team_id, "name": "dave's team", "role": "owner"}]
    assert body["exported_at"].endswith("Z")
    # A pruned log: the retained changes, and the export says older ones are gone.
    for n in range(RETAIN + 3):
        _write(http, erin, {"preferences": {"n": n}})
    pruned = http.get("/v1/account/export", headers=erin.headers).json()
    revisions = [c["revision"] for c in pruned["changes"]]
    assert revisions and revisions[-1] == pruned["revision"] == RETAIN + 3
    assert revisions == list(range(revisions[0], revisions[-1] + 1)) and revisions[0] > 1
    assert pruned["history_complete"] is False and pruned["teams"] == []


def test_service_routes_export_and_delete_any_user(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    backend, proc = site
    frank, grace = signup(http), signup(http)
    _write(http, frank, {"api_keys": {"openai": SECRET}})
    service = {"Authorization": f"Bearer {service_token()}"}
    exported = http.get(f"/v1/users/{frank.user_id}/export", headers=service)
    assert exported.status_code == 200 and SECRET not in exported.text
    assert exported.json()["user"]["username"] == frank.username
    # A user token may not use them, not even for another user's account.
    for method, path in (("GET", "/export"), ("DELETE", "")):
        refused = http.request(method, f"/v1/users/{frank.user_id}{path}", headers=grace.headers)
        assert refused.status_code == 403, refused.text
    assert http.delete(f"/v1/users/{frank.user_id}", headers=service).status_code == 204
    assert doc_rows(backend, proc, frank.user_id)["data_keys"] == 0
    assert http.get("/v1/settings", headers=frank.headers).status_code == 401
    gone = http.delete(f"/v1/users/{frank.user_id}", headers=service)
    assert gone.status_code == 404 and _code(gone) == "not_found"
    assert '"by":"service:billing"' in proc.log_text()
    assert http.get("/v1/settings", headers=grace.headers).status_code == 200


def test_the_routes_are_in_the_openapi_document(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/v1/account", "delete"),
        ("/v1/account/export", "get"),
        ("/v1/users/{user_id}", "delete"),
        ("/v1/users/{user_id}/export", "get"),
    ):
        operation = paths[path][method]
        assert {"401", "403", "409"} <= operation["responses"].keys(), path


def test_the_python_client_exports_and_deletes_its_account(
    site: tuple[Backend, ServerProcess], http: httpx.Client, tmp_path: Path
) -> None:
    backend, proc = site
    heidi = signup(http)
    cache = tmp_path / "cache.db"
    with Client(proc.url, heidi.token, cache_path=cache) as client:
        client.update({"theme": "dark"}).result(timeout=5)
        exported = client.export_account()
        assert exported["user"]["user_id"] == heidi.user_id
        assert exported["settings"]["theme"] == "dark"
        with pytest.raises(Forbidden) as refused:
            client.delete_account("not the password")
        assert refused.value.code == "wrong_password"
        client.delete_account(heidi.password)
    assert doc_rows(backend, proc, heidi.user_id)["user_preferences"] == 0
    assert http.get("/v1/settings", headers=heidi.headers).status_code == 401
    with OfflineCache.open(cache) as kept:
        assert kept.keys() == []  # the device keeps nothing of the deleted account


@pytest.mark.postgres
def test_a_socket_on_another_node_is_closed_with_4001(
    pg_template: Database, tmp_path: Path
) -> None:
    """Two nodes on one PostgreSQL database: the deletion on one ends the socket on the other
    (it reads the session revocation within a second or two)."""
    backend = Backend("postgres", pg_template)
    try:
        first = backend.server(tmp_path / "node1", **SHARED_SERVER_SETTINGS)
        first.start()
        db = backend.databases[id(first)]
        second = ServerProcess(tmp_path / "node2", **db.settings(allow_signup="true"))
        backend.servers.append(second)
        second.start()
        with first.client() as http:
            ivan = signup(http)
            with WsClient(second.ws_url) as ws:
                ws.auth(ivan.token)
                ws.subscribe(None)
                deleted = http.request("DELETE", "/v1/account", headers=ivan.headers)
                assert deleted.status_code == 204, deleted.text
                with pytest.raises(ConnectionClosed):
                    while True:
                        ws.conn.recv(timeout=5)
                assert ws.conn.close_code == 4001
        with second.client() as other:
            assert other.get("/v1/settings", headers=ivan.headers).status_code == 401
    finally:
        backend.close()


def test_a_user_without_a_password_needs_a_recent_sign_in(
    site: tuple[Backend, ServerProcess], http: httpx.Client
) -> None:
    """A user of an identity provider (no built-in row): only the token's sign-in time counts,
    ``auth_time`` over ``iat`` when the provider sends it (a refreshed token keeps it)."""
    backend, proc = site
    sub = "idp|" + uuid.uuid4().hex

    def token(**claims: float) -> dict[str, str]:
        now = time.time()
        body = {"sub": sub, "iat": now, "exp": int(now) + 300, **claims}
        return {"Authorization": f"Bearer {jwt.encode(body, TEST_JWT_SECRET, 'HS256')}"}

    assert http.patch("/v1/settings", json={"theme": "dark"}, headers=token()).status_code == 200
    refreshed = token(auth_time=time.time() - 3600)  # a fresh iat, an old sign-in
    for body in (None, {"password": "anything at all"}):
        stale = http.request("DELETE", "/v1/account", json=body, headers=refreshed)
        assert stale.status_code == 403 and _code(stale) == "reauthentication_required"
    assert doc_rows(backend, proc, sub)["user_preferences"] == 1
    recent = token(auth_time=time.time() - 10)
    assert http.request("DELETE", "/v1/account", headers=recent).status_code == 204
    assert doc_rows(backend, proc, sub)["user_preferences"] == 0
    # Nothing stored is no error for the user's own account (the sessions end all the same).
    nothing = http.request("DELETE", "/v1/account", headers=token(auth_time=time.time()))
    assert nothing.status_code == 204
