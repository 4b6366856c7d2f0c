"""One user can never reach another's data; a secret never leaves in clear."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from livesettings.auth import TokenIssuer
from tests.conftest import Backend
from tests.server.test_sync import SseReader
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

CANARY = "sk-canary-Zq7xW3vN9pL2mK8jH4gF"


def _seed(http: httpx.Client, user: User) -> None:
    r = http.patch(
        "/v1/settings",
        json={
            "theme": "dark",
            "preferences": {"private": "alice-only"},
            "api_keys": {"openai": CANARY},
        },
        headers=user.headers,
    )
    assert r.status_code == 200


def test_user_b_cannot_reach_user_a(server: ServerProcess) -> None:
    with server.client() as http:
        alice = signup(http)
        bob = signup(http)
        _seed(http, alice)
        a = alice.user_id
        attempts = [
            ("GET", f"/v1/users/{a}/settings", None),
            ("PATCH", f"/v1/users/{a}/settings", {"theme": "light"}),
            ("GET", f"/v1/users/{a}/secrets/openai", None),
            ("GET", f"/v1/settings/events?user_id={a}", None),
            ("GET", f"/v1/settings?user_id={a}", None),
            ("GET", f"/v1/settings/changes?since=0&user_id={a}", None),
            ("POST", f"/v1/settings/revert?user_id={a}", {"revision": 0}),
            ("PATCH", f"/v1/settings?user_id={a}", {"theme": "light"}),
        ]
        for method, path, body in attempts:
            r = http.request(method, path, json=body, headers=bob.headers)
            text = r.text
            assert "alice-only" not in text and "dark" not in text, (method, path, text)
            assert "Zq7x" not in text
            if "user_id=" in path and r.status_code == 200:
                # user_id in a query is ignored: the answer is bob's own document
                assert r.json().get("revision", 0) in (0, 1)
            else:
                assert r.status_code in (403, 404, 405), (method, path, r.status_code)
        # bob's own writes never touch alice
        assert http.get("/v1/settings", headers=alice.headers).json()["revision"] == 1
        assert http.get("/v1/settings", headers=alice.headers).json()["settings"]["theme"] == "dark"

        with WsClient(server.ws_url) as ws:
            ws.auth(bob.token)
            ws.send({"type": "subscribe", "since": None, "user_id": a})
            err = ws.recv()
            assert err["type"] == "error" and err["code"] == "forbidden"
            ws.update({"theme": "light"}, user_id=a, mutation_id="x1")
            err = ws.recv()
            assert err == {**err, "type": "error", "code": "forbidden", "mutation_id": "x1"}
            ws.send({"type": "auth", "token": alice.token})  # switching user on a socket
            err = ws.recv()
            assert err["type"] == "error"
            assert ws.frames and all("alice-only" not in json.dumps(f) for f in ws.frames)
        assert http.get("/v1/settings", headers=alice.headers).json()["revision"] == 1


def test_a_canary_secret_never_leaves_in_clear(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data", log_level="DEBUG", access_log="true")
    server.start()
    seen: list[str] = []
    stack = contextlib.ExitStack()
    try:
        with server.client() as http:
            user = signup(http)
            service, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue("backend", role="service")
            svc = {"Authorization": f"Bearer {service}"}
            sse = SseReader(server.url, user.token)
            stack.callback(sse.close)
            with WsClient(server.ws_url) as ws, WsClient(server.ws_url) as watcher:
                ws.auth(user.token)
                watcher.auth(user.token)
                seen += [json.dumps(f) for f in watcher.subscribe(None)]
                # every write path: HTTP PATCH, WebSocket update, PUT, service PATCH
                r = http.patch(
                    "/v1/settings", json={"api_keys": {"a": CANARY}}, headers=user.headers
                )
                seen.append(r.text)
                ws.update({"api_keys": {"b": CANARY}})
                seen.append(json.dumps(ws.recv()))
                rev = http.get("/v1/settings", headers=user.headers).json()["revision"]
                r = http.put(
                    "/v1/settings",
                    json={
                        "theme": "dark",
                        "api_keys": {"a": {"set": True}, "b": {"set": True}, "c": CANARY},
                    },
                    headers={**user.headers, "If-Match": f'"{rev}"'},
                )
                assert r.status_code == 200, r.text
                seen.append(r.text)
                r = http.patch(
                    f"/v1/users/{user.user_id}/settings",
                    json={"api_keys": {"d": CANARY}},
                    headers=svc,
                )
                seen.append(r.text)
                # a conflict that involves the secret
                r = http.patch(
                    "/v1/settings",
                    json={"api_keys": {"d": CANARY + "x"}},
                    headers={
                        **user.headers,
                        "X-Client-Id": "old",
                        "X-Base-Revision": "0",
                        "X-Edited-At": "1",
                    },
                )
                seen.append(r.text)
                assert r.json()["conflicts"][0]["kept"] == "theirs"
                for _ in range(4):
                    seen.append(json.dumps(watcher.recv()))
                seen.append(http.get("/v1/settings", headers=user.headers).text)
                seen.append(http.get("/v1/settings/changes?since=0", headers=user.headers).text)
                seen += [json.dumps(f) for _, f in sse.wait_for(6)]
                settings = http.get("/v1/settings", headers=user.headers).json()["settings"]
                assert sorted(settings["api_keys"]) == ["a", "b", "c", "d"]
                assert settings["api_keys"]["d"]["last4"] == CANARY[-4:]
                # only the service route returns the plaintext
                r = http.get(f"/v1/users/{user.user_id}/secrets/c", headers=svc)
                assert r.json()["value"] == CANARY
    finally:
        stack.close()
        server.stop()
    for text in seen:
        assert CANARY not in text and CANARY[:-4] not in text, text
    assert "DEBUG" in server.log_text()
    assert CANARY not in server.log_text()
    stored = backend.stored(server)  # SQLite's files, or every PostgreSQL row
    assert stored.get("livesettings.db") or stored.get("user_preferences"), sorted(stored)
    for name, content in stored.items():
        assert CANARY.encode() not in content and CANARY[:-4].encode() not in content, name


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"type": "subscribe", "since": null}',
        '{"type": "update", "mutation_id": "m", "patch": {}}',
    ],
)
def test_frames_before_auth_are_refused(server: ServerProcess, frame: str) -> None:
    with WsClient(server.ws_url) as ws:
        ws.send(frame)
        err = ws.recv()
        assert err["type"] == "error"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001


def test_bad_frames_after_auth_keep_the_socket(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    with WsClient(server.ws_url) as ws:
        ws.auth(user.token)
        cases = [
            ("{oops", "malformed_json"),
            ('{"type": "dance"}', "unknown_frame_type"),
            ('{"type": "update", "mutation_id": "m1", "patch": 5}', "invalid_frame"),
            ('{"type": "update", "mutation_id": "m2", "patch": {"colour": 1}}', "unknown_field"),
            ('{"type": "subscribe", "since": -1}', "invalid_frame"),
        ]
        for text, code in cases:
            ws.send(text)
            err = ws.recv()
            assert err["type"] == "error" and err["code"] == code, err
        ws.send({"type": "ping"})
        assert ws.recv() == {"type": "pong"}


def test_expired_token_ends_the_socket(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    short, _ = TokenIssuer(TEST_JWT_SECRET.encode(), ttl_seconds=1).issue(user.user_id)
    with WsClient(server.ws_url) as ws:
        assert ws.auth(short)["type"] == "auth_ok"
        err = ws.recv(timeout=4)
        assert err["type"] == "error" and err["code"] == "token_expired"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001
    # refreshed in time: the socket lives on
    short, _ = TokenIssuer(TEST_JWT_SECRET.encode(), ttl_seconds=1).issue(user.user_id)
    with WsClient(server.ws_url) as ws:
        ws.auth(short)
        assert ws.auth(user.token)["type"] == "auth_ok"
        assert ws.no_frame(timeout=1.6)
        ws.send({"type": "ping"})
        assert ws.recv() == {"type": "pong"}
