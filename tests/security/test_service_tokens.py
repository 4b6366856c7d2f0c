"""Service tokens can be revoked: ``token revoke --jti`` and ``--sub`` end them on a running
server (HTTP refused, sockets closed) within a second or two, on every storage backend.

The CLI runs as its own process against the server's database, as an operator would run it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Backend
from tests.support.server import ServerProcess
from tests.support.users import signup
from tests.support.ws import WsClient

# Revocations are polled once a second; a loaded 2-core machine gets generous slack.
WITHIN = 6.0


def _cli(server: ServerProcess, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "livesettings", *args],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def _service_token(server: ServerProcess, sub: str) -> str:
    return _cli(server, "token", "issue", "--user", sub, "--service").strip()


def _jti(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


def _status(server: ServerProcess, token: str, path: str = "/v1/settings") -> tuple[int, str]:
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code, (r.json()["error"]["code"] if r.status_code != 200 else "")


def _refused_within(server: ServerProcess, token: str, code: str, path: str) -> float:
    """Seconds until ``token`` is refused with ``code`` (bounded by ``WITHIN``)."""
    started = time.monotonic()
    while True:
        status = _status(server, token, path)
        if status == (401, code):
            return time.monotonic() - started
        assert status == (200, ""), status
        assert time.monotonic() - started < WITHIN, "still accepted"
        time.sleep(0.05)


def _closed_with(ws: WsClient) -> int | None:
    """Wait (bounded) for the server to close the socket; its close code."""
    deadline = time.monotonic() + WITHIN
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
    return ws.conn.close_code


def _ws_refused(server: ServerProcess, token: str) -> str:
    with WsClient(server.ws_url) as ws:
        frame = ws.auth(token)
        assert frame["type"] == "error", frame
        return str(frame["code"])


def test_token_revoke_jti_ends_that_token_and_its_sockets(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data")
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
        path = f"/v1/users/{user.user_id}/settings"
        leaked = _service_token(server, "billing")
        sibling = _service_token(server, "billing")  # same service, another token
        assert _jti(leaked) != _jti(sibling)
        assert _status(server, leaked, path) == (200, "")  # verified once, then cached
        with WsClient(server.ws_url) as ws, WsClient(server.ws_url) as other_ws:
            assert ws.auth(leaked)["type"] == "auth_ok"
            ws.subscribe(None, user_id=user.user_id)
            assert other_ws.auth(sibling)["type"] == "auth_ok"
            other_ws.subscribe(None, user_id=user.user_id)

            out = _cli(server, "token", "revoke", "--jti", _jti(leaked))
            assert out.startswith(f"revoked the token with jti {_jti(leaked)}")
            _refused_within(server, leaked, "token_revoked", path)
            assert _closed_with(ws) == 4001
            # Only that token: the service's other token and socket carry on.
            assert _status(server, sibling, path) == (200, "")
            other_ws.send({"type": "ping"})
            assert other_ws.recv()["type"] == "pong"
        assert _ws_refused(server, leaked) == "token_revoked"
        # A restarted node reads the revocations it missed.
        server.stop()
        server.start()
        assert _status(server, leaked, path) == (401, "token_revoked")
        assert _status(server, sibling, path) == (200, "")
    finally:
        server.stop()


def test_token_revoke_sub_ends_every_token_of_a_service_without_a_user_row(
    backend: Backend, tmp_path: Path
) -> None:
    server = backend.server(tmp_path / "data")
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
            first = http.post(
                "/v1/auth/token", json={"username": user.username, "password": user.password}
            ).json()
            refreshed = http.post(
                "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            ).json()
        # Every token the server issues carries its own jti.
        issued = [user.token, first["access_token"], refreshed["access_token"]]
        assert len({_jti(token) for token in issued}) == 3

        path = f"/v1/users/{user.user_id}/settings"
        tokens = [_service_token(server, "reports") for _ in range(2)]
        with WsClient(server.ws_url) as ws:
            assert ws.auth(tokens[0])["type"] == "auth_ok"
            ws.subscribe(None, user_id=user.user_id)
            out = _cli(server, "token", "revoke", "--sub", "reports")
            assert out.startswith("revoked every token of reports issued until now")
            for token in tokens:
                _refused_within(server, token, "session_revoked", path)
            assert _closed_with(ws) == 4001
        # A token issued after the revocation is good.
        time.sleep(0.01)
        fresh = _service_token(server, "reports")
        assert _status(server, fresh, path) == (200, "")

        # On a built-in user, --sub ends its access and refresh tokens as well.
        _cli(server, "token", "revoke", "--sub", user.user_id)
        _refused_within(server, refreshed["access_token"], "session_revoked", "/v1/settings")
        with server.client() as http:
            r = http.post("/v1/auth/refresh", json={"refresh_token": refreshed["refresh_token"]})
            assert r.status_code == 401
    finally:
        server.stop()
