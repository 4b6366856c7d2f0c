"""Live sessions: expiry cuts them on time, foreign origins never open one, and all of it
holds behind a TLS-terminating reverse proxy (``PUBLIC_URL`` and ``TRUSTED_PROXIES``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livesettings.auth import TokenIssuer
from tests.conftest import SHARED_SERVER_SETTINGS
from tests.support.idp import audit_events
from tests.support.server import TEST_JWT_SECRET, ServerProcess, wait_for
from tests.support.sse import SseReader
from tests.support.users import signup
from tests.support.ws import WsClient

PUBLIC = "https://settings.example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One SQLite node for the module: sessions and origins do not depend on storage."""
    proc = ServerProcess(tmp_path_factory.mktemp("sessions") / "data", **SHARED_SERVER_SETTINGS)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _short(user_id: str, seconds: int = 2) -> tuple[str, int]:
    return TokenIssuer(TEST_JWT_SECRET.encode(), ttl_seconds=seconds).issue(user_id)


def test_an_expired_token_cuts_the_socket_within_a_second(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    token, exp = _short(user.user_id)
    with WsClient(server.ws_url) as ws:
        assert ws.auth(token)["expires_at"] == exp
        ws.subscribe(None)
        err = ws.recv(timeout=exp - time.time() + 3)
        cut = time.time()
        assert err["type"] == "error" and err["code"] == "token_expired"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
        assert ws.conn.close_code == 4001
        assert exp - 0.05 <= cut <= exp + 1.0, cut - exp


def test_a_refreshed_socket_outlives_its_first_token(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    token, exp = _short(user.user_id)
    with WsClient(server.ws_url) as ws:
        ws.auth(token)
        fresh, later = _short(user.user_id, 4)
        assert ws.auth(fresh)["expires_at"] == later
        # Past the first expiry (and its second of grace) nothing happens...
        assert ws.no_frame(timeout=max(0.0, exp + 1.3 - time.time()))
        ws.send({"type": "ping"})
        assert ws.recv() == {"type": "pong"}
        # ...until the refreshed token runs out in its turn.
        assert ws.recv(timeout=later - time.time() + 2)["code"] == "token_expired"
        assert time.time() <= later + 1.0


def test_an_expired_token_ends_the_event_stream_within_a_second(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    token, exp = _short(user.user_id)
    sse = SseReader(server.url, token)
    try:
        sse.wait_for(2)
        events = sse.wait_for(3, timeout=exp - time.time() + 3)
        cut = time.time()
        assert events[-1][1]["code"] == "token_expired"
        assert exp - 0.05 <= cut <= exp + 1.0, cut - exp
    finally:
        sse.close()


def _handshake_status(url: str, origin: str | None) -> int:
    try:
        with WsClient(url, origin=origin):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_foreign_origin_cannot_open_a_socket(server: ServerProcess) -> None:
    own = server.url  # http://127.0.0.1:port, the Host the page is served from
    other_port = own.rsplit(":", 1)[0] + f":{server.port + 1}"  # another site on this host
    for origin in ("https://evil.example", "null", other_port):
        assert _handshake_status(server.ws_url, origin) == 403, origin
        r = httpx.get(server.url + "/v1/settings", headers={"Origin": origin})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert _handshake_status(server.ws_url, own) == 101
    assert _handshake_status(server.ws_url, None) == 101  # non-browser clients send none


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A node behind a TLS-terminating proxy on this host: public URL, trusted proxy, and
    per-address sign-in limits low enough to see whose address counts."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("proxied") / "data",
        public_url=PUBLIC,
        trusted_proxies="127.0.0.1,10.0.0.0/8",
        allowed_origins="https://app.example.test",
        signin_limit_per_address=3,
        signup_limit_per_address=1000,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_behind_a_proxy_the_public_url_is_printed_and_is_the_only_own_origin(
    proxied: ServerProcess,
) -> None:
    assert proxied.public_url == PUBLIC
    assert f"open {PUBLIC} (listening on http://127.0.0.1:{proxied.port}/)" in proxied.log_text()
    for origin, status in [
        (PUBLIC, 101),
        (PUBLIC + ":443", 101),
        ("https://app.example.test", 101),  # LIVESETTINGS_ALLOWED_ORIGINS
        ("http://settings.example.test", 403),  # same host, other scheme
        ("https://settings.example.test:8443", 403),
        (proxied.url, 403),  # the Host the node sees is not the page's origin
        ("https://evil.example", 403),
    ]:
        assert _handshake_status(proxied.ws_url, origin) == status, origin
    with proxied.client() as http:
        r = http.options(
            "/v1/settings",
            headers={
                "Origin": "https://app.example.test",
                "Access-Control-Request-Method": "PATCH",
            },
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example.test"
        r = http.get("/v1/settings", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = http.get("/", headers={"X-Forwarded-Proto": "https"})
        assert r.headers["content-security-policy"] == (
            "default-src 'self'; object-src 'none'; frame-ancestors 'none'"
        )
        assert r.headers["x-content-type-options"] == "nosniff"


def _failed_signin(http: httpx.Client, username: str, forwarded: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return http.post(
        "/v1/auth/token", json={"username": username, "password": "wrong 123456"}, headers=headers
    )


def test_limits_count_the_forwarded_address_of_a_trusted_proxy_only(
    proxied: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with proxied.client() as http:
        # Three failures from one client address (each for another username) block it...
        for n in range(3):
            assert _failed_signin(http, f"nobody{n}", "203.0.113.7").status_code == 401
        blocked = _failed_signin(http, "nobody9", "203.0.113.7")
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        # ...whatever the client writes left of it (the proxy appends what it saw)...
        spoofed = _failed_signin(http, "nobody9", "198.51.100.1, 203.0.113.7")
        assert spoofed.status_code == 429
        # ...and through a chain of trusted proxies; other clients are not affected.
        assert _failed_signin(http, "nobody9", "203.0.113.7, 10.1.2.3").status_code == 429
        assert _failed_signin(http, "nobody9", "203.0.113.8").status_code == 401
        assert _failed_signin(http, "nobody9", "2001:db8::1").status_code == 401

    def addresses() -> list[str]:
        events = audit_events(proxied.log_text())
        wanted = ("signin_failed", "signin_blocked")
        return [e["address"] for e in events if e["event"] in wanted]

    # The server's log reaches the test through a pipe: wait for the last lines.
    wait_for(lambda: len(addresses()) >= 8, timeout=10)
    assert addresses()[:4] == ["203.0.113.7"] * 4
    assert set(addresses()) == {"203.0.113.7", "203.0.113.8", "2001:db8::1"}

    # Without TRUSTED_PROXIES the header is the client's own word, and changes nothing.
    direct = ServerProcess(tmp_path_factory.mktemp("direct") / "data", signin_limit_per_address=3)
    direct.start()
    try:
        with direct.client() as http:
            for n in range(3):
                assert _failed_signin(http, f"x{n}", f"192.0.2.{n}").status_code == 401
            assert _failed_signin(http, "x9", "192.0.2.99").status_code == 429
        seen = {e["address"] for e in audit_events(direct.log_text()) if "address" in e}
        assert seen == {"127.0.0.1"}
    finally:
        direct.stop()


def test_sockets_of_a_proxied_node_take_the_forwarded_address(proxied: ServerProcess) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.23"}
    with WsClient(proxied.ws_url, origin=PUBLIC, headers=forwarded) as ws:
        ws.send({"type": "auth", "token": "forged.token.here"})
        assert ws.recv()["code"] == "invalid_token"
    rejected = [e for e in audit_events(proxied.log_text()) if e["event"] == "token_rejected"]
    assert rejected[-1].pop("ts").endswith("Z")
    assert rejected[-1] == {
        "event": "token_rejected",
        "code": "invalid_token",
        "reason": "token is malformed",
        "via": "websocket",
        "address": "198.51.100.23",
    }
