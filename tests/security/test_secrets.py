"""API keys: never out in clear, bound to their user and name, and surviving key rotation.

A canary key is written through every write path; it must never appear in a response, pushed
frame, event, log line (DEBUG and access log), audit line, change-log row or stored byte —
only the service route that exists to return it may. Runs on every storage backend (SQLite's
files; every PostgreSQL row, read as the superuser).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from livesettings.auth import TokenIssuer
from tests.conftest import Backend
from tests.support.idp import audit_events
from tests.support.postgres import SUPERUSER, sql, url
from tests.support.server import TEST_JWT_SECRET
from tests.support.sse import SseReader
from tests.support.users import signup
from tests.support.ws import WsClient

CANARY = "sk-canary-Zq7xW3vN9pL2mK8jH4gF"


def _service_headers(subject: str = "backend") -> dict[str, str]:
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue(subject, role="service")
    return {"Authorization": f"Bearer {token}"}


def test_a_canary_secret_never_leaves_in_clear(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data", log_level="DEBUG", access_log="true")
    server.start()
    seen: list[str] = []
    stack = contextlib.ExitStack()
    try:
        with server.client() as http:
            user = signup(http)
            svc = _service_headers()
            service_token = svc["Authorization"].split()[1]
            sse = SseReader(server.url, user.token)
            stack.callback(sse.close)
            with (
                WsClient(server.ws_url) as ws,
                WsClient(server.ws_url) as watcher,
                WsClient(server.ws_url) as service_ws,
            ):
                ws.auth(user.token)
                watcher.auth(user.token)
                service_ws.auth(service_token)
                seen += [json.dumps(f) for f in watcher.subscribe(None)]
                seen += [json.dumps(f) for f in service_ws.subscribe(None, user_id=user.user_id)]
                # 1. HTTP PATCH
                r = http.patch(
                    "/v1/settings", json={"api_keys": {"a": CANARY}}, headers=user.headers
                )
                seen.append(r.text)
                # 2. WebSocket update
                ws.update({"api_keys": {"b": CANARY}})
                seen.append(json.dumps(ws.recv()))
                # 3. PUT of the whole document (masked secrets kept, one set in clear)
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
                # 4. the service route
                r = http.patch(
                    f"/v1/users/{user.user_id}/settings",
                    json={"api_keys": {"d": CANARY}},
                    headers=svc,
                )
                seen.append(r.text)
                # 5. a service socket writing for the user
                service_ws.update({"api_keys": {"e": CANARY}}, user_id=user.user_id)
                # 6. a conflict that involves the secret
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
                # 7. a revert (of the non-secret fields) across all of it
                r = http.post("/v1/settings/revert", json={"revision": 1}, headers=user.headers)
                assert r.status_code == 200, r.text
                seen.append(r.text)
                for _ in range(6):
                    seen.append(json.dumps(watcher.recv()))
                seen += [json.dumps(f) for f in service_ws.recv_until("change")]
                seen.append(http.get("/v1/settings", headers=user.headers).text)
                seen.append(http.get("/v1/settings/changes?since=0", headers=user.headers).text)
                seen.append(http.get(f"/v1/users/{user.user_id}/settings", headers=svc).text)
                seen += [json.dumps(f) for _, f in sse.wait_for(8)]
                settings = http.get("/v1/settings", headers=user.headers).json()["settings"]
                assert sorted(settings["api_keys"]) == ["a", "b", "c", "d", "e"]
                assert settings["api_keys"]["d"]["last4"] == CANARY[-4:]
                # only the service route returns the plaintext, and it is audited
                for name in "abcde":
                    r = http.get(f"/v1/users/{user.user_id}/secrets/{name}", headers=svc)
                    assert r.json()["value"] == CANARY, name
    finally:
        stack.close()
        server.stop()
    for text in seen:
        assert CANARY not in text and CANARY[:-4] not in text, text
    log = server.log_text()
    assert "DEBUG" in log and '"PATCH /v1/settings HTTP/1.1" 200' in log  # DEBUG + access log
    assert CANARY not in log and CANARY[:-4] not in log
    reads = [e for e in audit_events(log) if e["event"] == "secret_read"]
    assert [(e["service"], e["user_id"], e["name"]) for e in reads] == [
        ("backend", user.user_id, name) for name in "abcde"
    ]
    stored = backend.stored(server)  # SQLite's files (audit.log too), or every PostgreSQL row
    assert stored.get("livesettings.db") or stored.get("user_preferences"), sorted(stored)
    for name, content in stored.items():
        assert CANARY.encode() not in content and CANARY[:-4].encode() not in content, name


def _move_sqlite(db: Path, src_user: str, moves: list[tuple[str, str]]) -> None:
    """Copy ``src_user``'s sealed secret "a" to each (user, name), straight in the file."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        (keys,) = conn.execute(
            "SELECT api_keys FROM user_preferences WHERE user_id = ?", (src_user,)
        ).fetchone()
        sealed = json.loads(keys)["a"]
        with conn:
            for user_id, name in moves:
                conn.execute(
                    "UPDATE user_preferences SET api_keys = json_set(api_keys, ?, json(?)) "
                    "WHERE user_id = ?",
                    (f"$.{name}", json.dumps(sealed), user_id),
                )
    finally:
        conn.close()


def _move_postgres(database: str, src_user: str, moves: list[tuple[str, str]]) -> None:
    # An attacker with the database past its triggers (which refuse API keys written in SQL).
    on_db = url(SUPERUSER, database) + "?session_replication_role=replica"
    for user_id, name in moves:
        sql(
            "UPDATE public.user_preferences SET api_keys = api_keys || jsonb_build_object($3::text,"
            " (SELECT api_keys->'a' FROM public.user_preferences WHERE user_id = $1))"
            " WHERE user_id = $2",
            src_user,
            user_id,
            name,
            url=on_db,
        )


def test_a_ciphertext_moved_to_another_user_or_name_does_not_decrypt(
    backend: Backend, tmp_path: Path
) -> None:
    server = backend.server(tmp_path / "data")
    server.start()
    try:
        with server.client() as http:
            alice, bob = signup(http), signup(http)
            for user, secret in ((alice, CANARY), (bob, "bob-own-secret-0000")):
                r = http.patch(
                    "/v1/settings", json={"api_keys": {"a": secret}}, headers=user.headers
                )
                assert r.status_code == 200
            moves = [(alice.user_id, "moved"), (bob.user_id, "a"), (bob.user_id, "stolen")]
            db = backend.databases.get(id(server))
            if db is None:
                _move_sqlite(server.data_dir / "livesettings.db", alice.user_id, moves)
            else:
                _move_postgres(db.name, alice.user_id, moves)
            svc = _service_headers()
            for user_id, name in moves:
                r = http.get(f"/v1/users/{user_id}/secrets/{name}", headers=svc)
                assert (r.status_code, r.json()["error"]["code"]) == (500, "decrypt_failed")
                assert CANARY not in r.text and CANARY[:-4] not in r.text
            # What was not moved still opens.
            r = http.get(f"/v1/users/{alice.user_id}/secrets/a", headers=svc)
            assert r.json()["value"] == CANARY
    finally:
        server.stop()
    assert CANARY not in server.log_text()


def test_after_keys_rotate_every_secret_decrypts_without_the_old_key(
    backend: Backend, tmp_path: Path
) -> None:
    old = "old:" + base64.b64encode(os.urandom(32)).decode()
    new = "new:" + base64.b64encode(os.urandom(32)).decode()
    server = backend.server(tmp_path / "data", master_keys=old)
    server.start()
    secrets = {}
    try:
        with server.client() as http:
            users = [signup(http) for _ in range(3)]
            for n, user in enumerate(users):
                secrets[user.user_id] = f"{CANARY}-{n}"
                r = http.patch(
                    "/v1/settings",
                    json={"api_keys": {"main": secrets[user.user_id]}},
                    headers=user.headers,
                )
                assert r.status_code == 200
    finally:
        server.stop()
    env = {**server.env(), "LIVESETTINGS_MASTER_KEYS": f"{new},{old}"}
    done = subprocess.run(
        [sys.executable, "-m", "livesettings", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-wrapped: 3 data keys under new" in done.stdout
    assert "old: wraps no data key now; it can be removed from the keyring" in done.stdout
    # The rotation is audited: in the data dir's audit.log (SQLite), or on stderr.
    trail = done.stderr
    if (tmp_path / "data" / "audit.log").exists():
        trail = (tmp_path / "data" / "audit.log").read_text()
    events = [json.loads(line) for line in trail.splitlines() if line.startswith("{")]
    rotated = [
        {k: v for k, v in e.items() if k != "ts"} for e in events if e["event"] == "keys_rotated"
    ]
    assert rotated == [
        {
            "event": "keys_rotated",
            "active": "new",
            "rewrapped": 3,
            "remaining": 0,
            "failed": 0,
            "retired": "old",
        }
    ]
    for key in (old, new):
        assert key.split(":")[1] not in trail + done.stdout
    # Only the new key now: every secret still opens.
    server.settings["master_keys"] = new
    server.start()
    try:
        svc = _service_headers()
        for user_id, value in secrets.items():
            r = httpx.get(f"{server.url}/v1/users/{user_id}/secrets/main", headers=svc)
            assert r.json()["value"] == value
    finally:
        server.stop()
