"""The HTTP API of DESIGN §4 against a real server: happy paths, strict mode, bad input."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    with server.client() as client:
        yield client  # type: ignore[misc]


@pytest.fixture
def user(http: httpx.Client) -> User:
    return signup(http)


def test_get_defaults_then_patch_and_etag(http: httpx.Client, user: User) -> None:
    r = http.get("/v1/settings", headers=user.headers)
    assert r.status_code == 200 and r.headers["etag"] == '"0"'
    assert r.json() == {
        "revision": 0,
        "settings": {
            "theme": "light",
            "language": "en",
            "preferences": {},
            "ai_providers": {},
            "api_keys": {},
        },
        "updated_at": None,
    }
    r = http.patch(
        "/v1/settings",
        json={"theme": "dark", "ai_providers": {"default": "openai", "openai": {"model": "o"}}},
        headers=user.headers,
    )
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    body = r.json()
    assert body["revision"] == 1 and body["conflicts"] == []
    assert body["settings"]["ai_providers"] == {"default": "openai", "openai": {"model": "o"}}
    r = http.patch("/v1/settings", json={"theme": None}, headers=user.headers)
    assert r.json()["settings"]["theme"] == "light" and r.json()["revision"] == 2


def test_if_match_strict_mode_and_put(http: httpx.Client, user: User) -> None:
    http.patch("/v1/settings", json={"theme": "dark"}, headers=user.headers)
    r = http.patch(
        "/v1/settings", json={"theme": "system"}, headers={**user.headers, "If-Match": '"0"'}
    )
    assert r.status_code == 412 and r.headers["etag"] == '"1"'
    err = r.json()["error"]
    assert err["code"] == "precondition_failed"
    assert err["details"]["revision"] == 1 and err["details"]["settings"]["theme"] == "dark"
    r = http.patch(
        "/v1/settings", json={"theme": "system"}, headers={**user.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json()["revision"] == 2

    r = http.put("/v1/settings", json={"theme": "dark"}, headers=user.headers)
    assert r.status_code == 428 and r.json()["error"]["code"] == "precondition_required"
    r = http.put(
        "/v1/settings",
        json={"theme": "dark", "language": "de"},
        headers={**user.headers, "If-Match": '"1"'},
    )
    assert r.status_code == 412
    r = http.put(
        "/v1/settings",
        json={"theme": "dark", "language": "de"},
        headers={**user.headers, "If-Match": '"2"'},
    )
    assert r.status_code == 200
    assert r.json()["settings"] == {
        "theme": "dark",
        "language": "de",
        "preferences": {},
        "ai_providers": {},
        "api_keys": {},
    }


def test_idempotency_over_http_and_websocket(
    server: ServerProcess, http: httpx.Client, user: User
) -> None:
    headers = {**user.headers, "Idempotency-Key": "m-1"}
    first = http.patch("/v1/settings", json={"language": "fr"}, headers=headers)
    again = http.patch("/v1/settings", json={"language": "fr"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["revision"] == first.json()["revision"] == 1
    other = http.patch("/v1/settings", json={"language": "de"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 1

    with WsClient(server.ws_url) as ws:
        ws.auth(user.token)
        ws.update({"language": "fr"}, mutation_id="m-1")
        assert ws.recv() == {"type": "ack", "mutation_id": "m-1", "revision": 1, "conflicts": []}
        ws.update({"theme": "dark"}, mutation_id="m-2")
        assert ws.recv()["revision"] == 2
        ws.update({"theme": "dark"}, mutation_id="m-2")
        assert ws.recv() == {"type": "ack", "mutation_id": "m-2", "revision": 2, "conflicts": []}
        ws.update({"theme": "system"}, mutation_id="m-2")
        err = ws.recv()
        assert err["type"] == "error" and err["code"] == "idempotency_key_reused"
        assert err["mutation_id"] == "m-2"
    assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 2


def test_revert_restores_an_earlier_revision(http: httpx.Client, user: User) -> None:
    http.patch(
        "/v1/settings", json={"theme": "dark", "preferences": {"a": 1}}, headers=user.headers
    )
    http.patch(
        "/v1/settings", json={"theme": "system", "preferences": {"b": 2}}, headers=user.headers
    )
    http.patch(
        "/v1/settings", json={"api_keys": {"openai": "sk-abcdefghijklmnop"}}, headers=user.headers
    )
    r = http.post("/v1/settings/revert", json={"revision": 1}, headers=user.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == 4
    assert body["settings"]["theme"] == "dark" and body["settings"]["preferences"] == {"a": 1}
    assert body["settings"]["api_keys"]["openai"]["last4"] == "mnop"  # secrets are not reverted
    r = http.post("/v1/settings/revert", json={"revision": 9}, headers=user.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_revision"


def test_conflict_reported_to_the_loser_and_the_winner(http: httpx.Client, user: User) -> None:
    a = {**user.headers, "X-Client-Id": "a", "X-Base-Revision": "0", "X-Edited-At": "2000"}
    b = {**user.headers, "X-Client-Id": "b", "X-Base-Revision": "0", "X-Edited-At": "1000"}
    assert http.patch("/v1/settings", json={"theme": "dark"}, headers=a).json()["revision"] == 1
    lost = http.patch("/v1/settings", json={"theme": "system"}, headers=b).json()
    assert lost["revision"] == 1
    assert lost["conflicts"] == [
        {"path": "/theme", "yours": "system", "theirs": "dark", "kept": "theirs"}
    ]
    won = http.patch(
        "/v1/settings", json={"theme": "light"}, headers={**b, "X-Edited-At": "3000"}
    ).json()
    assert won["revision"] == 2
    assert won["conflicts"] == [
        {"path": "/theme", "yours": "light", "theirs": "dark", "kept": "yours", "lost_by": "a"}
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"[1, 2]", 422, "invalid"),
        (b'{"colour": "red"}', 422, "unknown_field"),
        (b'{"theme": "purple"}', 422, "invalid_value"),
        (b'{"language": "english please"}', 422, "invalid_value"),
        (b'{"api_keys": {"openai": 5}}', 422, "invalid_value"),
        (json.dumps({"preferences": {"k" * 300: 1}}).encode(), 422, "key_too_long"),
        (json.dumps({"preferences": {"x": "y" * 70_000}}).encode(), 413, "too_large"),
        (b'{"theme": NaN}', 400, "malformed_json"),
    ],
)
def test_bad_patches_get_clear_errors_and_change_nothing(
    http: httpx.Client, user: User, body: bytes, status: int, code: str
) -> None:
    r = http.patch(
        "/v1/settings", content=body, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 0


def test_too_deep_names_the_path(http: httpx.Client, user: User) -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(40):
        deep = {"d": deep}
    r = http.patch("/v1/settings", json={"preferences": deep}, headers=user.headers)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "too_deep" and err["details"]["path"].startswith("/preferences/d/d")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ."},
    ],
)
def test_requests_without_a_valid_token_are_401(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    r = http.get("/v1/settings", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] in ("unauthorized", "invalid_token")


def test_bad_headers_are_400(http: httpx.Client, user: User) -> None:
    for name, value in (("X-Base-Revision", "abc"), ("X-Edited-At", "-5"), ("If-Match", "soon")):
        r = http.patch(
            "/v1/settings", json={"theme": "dark"}, headers={**user.headers, name: value}
        )
        assert r.status_code == 400, (name, r.text)


def test_refresh_rotates_and_reuse_revokes_the_family(http: httpx.Client, user: User) -> None:
    r = http.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert r.status_code == 200
    second = r.json()["refresh_token"]
    assert (
        http.get(
            "/v1/settings", headers={"Authorization": "Bearer " + r.json()["access_token"]}
        ).status_code
        == 200
    )
    reuse = http.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reuse.status_code == 401 and reuse.json()["error"]["code"] == "token_reused"
    # the family is gone: the successor no longer works either
    assert http.post("/v1/auth/refresh", json={"refresh_token": second}).status_code == 401


def test_signin_wrong_password_and_duplicate_signup(http: httpx.Client, user: User) -> None:
    r = http.post("/v1/auth/token", json={"username": user.username, "password": "wrong password"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    r = http.post("/v1/auth/token", json={"username": user.username, "password": user.password})
    assert r.status_code == 200 and r.json()["user_id"] == user.user_id
    r = http.post("/v1/auth/signup", json={"username": user.username, "password": "another one 1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "username_taken"
    r = http.post("/v1/auth/signup", json={"username": "x", "password": "short"})
    assert r.status_code == 422


def test_logout_ends_live_sockets(server: ServerProcess, http: httpx.Client, user: User) -> None:
    with WsClient(server.ws_url) as ws:
        ws.auth(user.token)
        ws.subscribe(None)
        assert http.post("/v1/auth/logout", headers=user.headers).status_code == 204
        with pytest.raises(ConnectionClosed):
            while True:
                ws.conn.recv(timeout=5)
        assert ws.conn.close_code == 4001
    assert http.get("/v1/settings", headers=user.headers).status_code == 401


def test_service_routes(server: ServerProcess, http: httpx.Client, user: User) -> None:
    from livesettings.auth import TokenIssuer
    from tests.support.server import TEST_JWT_SECRET

    service, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue("backend", role="service")
    svc = {"Authorization": f"Bearer {service}"}
    r = http.patch(
        f"/v1/users/{user.user_id}/settings",
        json={"api_keys": {"openai": "sk-service-written-1234"}},
        headers=svc,
    )
    assert r.status_code == 200
    assert r.json()["settings"]["api_keys"]["openai"]["last4"] == "1234"
    r = http.get(f"/v1/users/{user.user_id}/secrets/openai", headers=svc)
    assert r.json() == {
        "user_id": user.user_id,
        "name": "openai",
        "value": "sk-service-written-1234",
    }
    assert http.get(f"/v1/users/{user.user_id}/secrets/nope", headers=svc).status_code == 404
    # a user token cannot use service routes, not even for itself
    for method, path in (
        ("GET", f"/v1/users/{user.user_id}/settings"),
        ("PATCH", f"/v1/users/{user.user_id}/settings"),
        ("GET", f"/v1/users/{user.user_id}/secrets/openai"),
    ):
        r = http.request(method, path, json={"theme": "dark"}, headers=user.headers)
        assert r.status_code == 403 and "sk-service" not in r.text


def test_operations_routes(http: httpx.Client, user: User) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    changes = _metric(http.get("/metrics").text, "livesettings_changes_total")
    http.patch("/v1/settings", json={"theme": "dark"}, headers=user.headers)
    metrics = http.get("/metrics").text
    assert _metric(metrics, "livesettings_changes_total") == changes + 1
    assert "livesettings_commit_batch_size_count" in metrics
    openapi = http.get("/openapi.json").json()
    for path in ("/v1/settings", "/v1/settings/changes", "/v1/auth/token", "/v1/settings/revert"):
        assert path in openapi["paths"]
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    js = http.get("/static/livesettings.js")
    assert js.status_code == 200 and "content-security-policy" in js.headers


def test_foreign_origin_refused(server: ServerProcess, http: httpx.Client, user: User) -> None:
    r = http.get("/v1/settings", headers={**user.headers, "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = http.get("/v1/settings", headers={**user.headers, "Origin": server.url})
    assert r.status_code == 200
    with pytest.raises(Exception) as info:
        WsClient(server.ws_url, origin="https://evil.example")
    assert "403" in str(info.value)
    with WsClient(server.ws_url, origin=server.url) as ws:
        assert ws.auth(user.token)["type"] == "auth_ok"
