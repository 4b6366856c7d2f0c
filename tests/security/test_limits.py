"""Every limit of DESIGN §1 and §6, hit on purpose: the answer, its code and ``Retry-After``.

One node behind a trusted proxy (this host) with low limits; each test speaks from client
addresses of its own (``X-Forwarded-For``), so the per-address limits of one test never reach
another's.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.idp import audit_events
from tests.support.server import ServerProcess
from tests.support.users import User
from tests.support.ws import WsClient

_addresses = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def address() -> str:
    """A client address no other test uses."""
    return next(_addresses)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("limits") / "data",
        trusted_proxies="127.0.0.1",
        connect_rate=0.2,
        connect_burst=3,
        max_connections_per_user=2,
        write_rate=1,
        write_burst=3,
        signin_limit=3,
        signup_limit_per_address=3,
        max_frame_bytes=64 * 1024,
        max_replay=2,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def http(node: ServerProcess) -> Iterator[httpx.Client]:
    with node.client() as client:
        yield client


def new_user(http: httpx.Client, password: str = "correct horse 1") -> User:
    name = "u" + uuid.uuid4().hex[:10]
    r = http.post(
        "/v1/auth/signup",
        json={"username": name, "password": password},
        headers={"X-Forwarded-For": address()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return User(body["user_id"], name, password, body["access_token"], body["refresh_token"])


def socket(node: ServerProcess, client: str | None = None) -> WsClient:
    return WsClient(node.ws_url, headers={"X-Forwarded-For": client or address()})


def _retry_after(headers: httpx.Headers | dict[str, str]) -> int:
    value = int(headers["retry-after"])
    assert value >= 1
    return value


def test_connection_attempts_per_address_get_429_before_the_upgrade(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    client = address()
    for _ in range(3):
        socket(node, client).close()
    with pytest.raises(InvalidStatus) as refused:
        socket(node, client)
    assert refused.value.response.status_code == 429
    _retry_after(dict(refused.value.response.headers))
    socket(node).close()  # another address is not affected
    # An event stream holds a connection like a socket: the same budget.
    r = http.get(
        "/v1/settings/events",
        headers={**user.headers, "X-Forwarded-For": client},
    )
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    _retry_after(r.headers)


def test_connections_per_user_are_capped(node: ServerProcess, http: httpx.Client) -> None:
    user = new_user(http)
    with socket(node) as one, socket(node) as two:
        assert one.auth(user.token)["type"] == "auth_ok"
        assert two.auth(user.token)["type"] == "auth_ok"
        with socket(node) as three:
            err = three.auth(user.token)
            assert (err["type"], err["code"]) == ("error", "rate_limited")
            with pytest.raises(ConnectionClosed):
                three.recv(timeout=3)
            assert three.conn.close_code == 4008
        r = http.get("/v1/settings/events", headers={**user.headers, "X-Forwarded-For": address()})
        assert r.status_code == 429
        # The first two are untouched.
        one.send({"type": "ping"})
        assert one.recv() == {"type": "pong"}


def test_writes_beyond_the_rate_are_refused_and_persistent_abuse_is_closed(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    statuses = [
        http.patch("/v1/settings", json={"theme": "dark"}, headers=user.headers).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    r = http.patch("/v1/settings", json={"theme": "dark"}, headers=user.headers)
    assert r.json()["error"]["code"] == "rate_limited"
    _retry_after(r.headers)
    with socket(node) as ws:
        ws.auth(user.token)
        ws.update({"theme": "light"}, mutation_id="over")
        err = ws.recv()
        assert (err["code"], err["mutation_id"]) == ("rate_limited", "over")
        assert err["details"]["retry_after"] > 0
        # A client that keeps going regardless is cut off with 4008.
        for n in range(150):
            try:
                ws.update({"theme": "light"}, mutation_id=f"flood-{n}")
            except ConnectionClosed:
                break
        with pytest.raises(ConnectionClosed):
            while True:
                assert ws.recv(timeout=5)["code"] == "rate_limited"
        assert ws.conn.close_code == 4008
    # Refused writes changed nothing.
    assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 3


def test_frames_over_the_limit_close_1009_and_bodies_over_it_get_413(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    with socket(node) as ws, socket(node) as bystander:
        ws.auth(user.token)
        bystander.auth(user.token)
        ws.send('{"type": "ping", "pad": "' + "x" * (65 * 1024) + '"}')
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.conn.close_code == 1009
        bystander.send({"type": "ping"})
        assert bystander.recv() == {"type": "pong"}
    big = {"preferences": {"blob": "x" * (65 * 1024)}}
    r = http.patch("/v1/settings", json=big, headers=user.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    r = http.post("/v1/auth/token", content=b"{" + b" " * (200 * 1024) + b"}")
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as it streams
        yield b'{"username": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'", "password": "whatever"}'

    r = http.post("/v1/auth/token", content=chunks(), headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")


def test_sign_in_failures_per_username_are_limited_per_address(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    attacker = address()
    attempt = {"username": user.username, "password": "not it at all"}
    for _ in range(3):
        r = http.post("/v1/auth/token", json=attempt, headers={"X-Forwarded-For": attacker})
        assert r.status_code == 401
    right = {"username": user.username, "password": user.password}
    r = http.post("/v1/auth/token", json=right, headers={"X-Forwarded-For": attacker})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    _retry_after(r.headers)
    # The user's own sign-in from elsewhere is not locked out (tests/security/test_signin.py
    # shows the per-username ceiling against guesses from many addresses).
    r = http.post("/v1/auth/token", json=right, headers={"X-Forwarded-For": address()})
    assert r.status_code == 200
    other = new_user(http)
    r = http.post(
        "/v1/auth/token",
        json={"username": other.username, "password": other.password},
        headers={"X-Forwarded-For": attacker},
    )
    assert r.status_code == 200
    events = audit_events(node.log_text())
    failed = [e for e in events if e["event"] == "signin_failed" and e["user_id"] == user.user_id]
    assert len(failed) == 3 and {e["reason"] for e in failed} == {"wrong_password"}
    assert any(e["event"] == "signin_blocked" and e["by"] == "username_and_address" for e in events)
    assert "not it at all" not in node.log_text()


def test_sign_ups_per_address_are_limited(node: ServerProcess, http: httpx.Client) -> None:
    client = address()
    statuses = []
    for n in range(4):
        r = http.post(
            "/v1/auth/signup",
            json={"username": f"s{uuid.uuid4().hex[:8]}{n}", "password": "correct horse 1"},
            headers={"X-Forwarded-For": client},
        )
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]


def test_a_catch_up_longer_than_max_replay_gets_a_snapshot(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    for theme in ("dark", "system", "light"):
        assert http.patch("/v1/settings", json={"theme": theme}, headers=user.headers).is_success
    with socket(node) as ws:
        ws.auth(user.token)
        frames = ws.subscribe(0)  # 3 behind, over max_replay=2
        assert [f["type"] for f in frames] == ["snapshot", "synced"]
        assert frames[0]["revision"] == 3
        frames = ws.subscribe(1)  # 2 behind: replayed
        assert [(f["type"], f["revision"]) for f in frames] == [
            ("change", 2),
            ("change", 3),
            ("synced", 3),
        ]
