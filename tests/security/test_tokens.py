"""Tokens: identity providers' keys are honoured, and every forgery is refused everywhere.

One server trusts three kinds of keys at once — its own HS256 secret, an RSA public key
(``LIVESETTINGS_JWT_PUBLIC_KEY``), a JWKS file with an EC key and a JWKS URL with another RSA
key — with ``aud`` and ``iss`` configured. Each forged token is tried over HTTP and as the
first frame of a WebSocket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.clock import MovableClock
from tests.support.idp import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    Keys,
    audit_events,
    builtin,
    hs256_with,
    jwk_of,
    raw_token,
    signed,
    write_jwks,
)
from tests.support.inprocess import InProcessServer
from tests.support.server import ServerProcess, wait_for
from tests.support.ws import WsClient


@pytest.fixture(scope="module")
def idp(
    keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, JwksServer]]:
    """A server with every kind of key, and the JWKS server behind its JWKS URL."""
    tmp = tmp_path_factory.mktemp("idp")
    pem = tmp / "idp.pem"
    pem.write_bytes(keys.rsa_pem())
    jwks_file = write_jwks(tmp / "jwks.json", jwk_of(keys.ec, "ec-file"))
    jwks = JwksServer({"keys": [jwk_of(keys.rsa_url, "rsa-url")]}).start()
    server = ServerProcess(
        tmp / "data",
        jwt_public_key=str(pem),
        jwks_file=str(jwks_file),
        jwks_url=jwks.url,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        connect_burst=1000,
        signup_limit_per_address=1000,
    )
    server.start()
    try:
        yield server, jwks
    finally:
        server.stop()
        jwks.stop()


def _http_status(server: ServerProcess | InProcessServer, token: str) -> tuple[int, str]:
    r = httpx.get(
        server.url + "/v1/settings", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    code = r.json()["error"]["code"] if r.status_code != 200 else ""
    return r.status_code, code


def _ws_refused(server: ServerProcess, token: str) -> str:
    """The error code of a socket whose first frame carries ``token`` (closed with 4001)."""
    ws = WsClient(server.ws_url)
    try:
        ws.send({"type": "auth", "token": token})
        with contextlib.suppress(ConnectionClosed):  # the server may have closed already
            ws.send({"type": "subscribe", "since": None})  # must not be served either
        frame = ws.recv()
        assert frame["type"] == "error", frame
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001
        return str(frame["code"])
    finally:
        with contextlib.suppress(ConnectionClosed):
            ws.close()


def _forgeries(keys: Keys) -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "victim", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600}
    pem = keys.rsa_pem()
    valid = signed(keys.rsa, "RS256", sub="victim")
    _, payload, signature = valid.split(".")
    tampered = json.loads(jwt_part(payload))
    tampered["sub"] = "someone-else"
    swapped = raw_token({"alg": "RS256", "typ": "JWT"}, tampered).rsplit(".", 1)[0]
    return {
        "alg none": raw_token({"alg": "none", "typ": "JWT"}, good),
        "alg None": raw_token({"alg": "None", "typ": "JWT"}, good),
        "HS256 signed with the RSA public key": hs256_with(pem, {"alg": "HS256"}, good),
        "HS256 signed with the JWKS key's JSON": hs256_with(
            json.dumps(jwk_of(keys.rsa_url, "rsa-url")).encode(),
            {"alg": "HS256", "kid": "rsa-url"},
            good,
        ),
        "wrong audience": signed(keys.rsa, "RS256", sub="victim", aud="another-app"),
        "no audience": signed(keys.rsa, "RS256", sub="victim", aud=None),
        "wrong issuer": signed(keys.rsa, "RS256", sub="victim", iss="https://evil.example"),
        "expired": signed(keys.rsa, "RS256", sub="victim", exp=now - 5),
        "not valid yet": signed(keys.rsa, "RS256", sub="victim", nbf=now + 300),
        "no exp": signed(keys.rsa, "RS256", sub="victim", exp=None),
        "no sub": signed(keys.rsa, "RS256", sub=None),
        "tampered payload": f"{swapped}.{signature}",
        "signed by a stranger": signed(keys.stranger, "RS256", sub="victim"),
        "a stranger's key under a known kid": signed(
            keys.stranger, "RS256", kid="rsa-url", sub="victim"
        ),
        "ES256 under the RSA key's kid": signed(keys.ec, "ES256", kid="rsa-url", sub="victim"),
        "key embedded in the header": jwt_with_headers(
            keys.stranger, {"jwk": jwk_of(keys.stranger, "x"), "jku": "http://127.0.0.1:1/"}
        ),
        "kid path traversal": signed(keys.stranger, "RS256", kid="../../../dev/null"),
        "built-in token with a forged role": hs256_with(
            b"not-the-secret-0123456789abcdef0123456789",
            {"alg": "HS256"},
            {**good, "role": "service"},
        ),
        "garbage": "not.a.token",
    }


def jwt_part(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_with_headers(key: object, headers: dict[str, object]) -> str:
    now = int(time.time())
    claims = {"sub": "victim", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)  # type: ignore[arg-type]


def test_every_key_kind_is_accepted(idp: tuple[ServerProcess, JwksServer], keys: Keys) -> None:
    server, _ = idp
    accepted = {
        "HS256 (built-in)": builtin("user-hs"),
        "RS256 (public key)": signed(keys.rsa, "RS256", sub="user-rsa"),
        "ES256 (JWKS file)": signed(keys.ec, "ES256", kid="ec-file", sub="user-ec"),
        "RS256 (JWKS URL)": signed(keys.rsa_url, "RS256", kid="rsa-url", sub="auth0|user-url"),
    }
    for name, token in accepted.items():
        assert _http_status(server, token) == (200, ""), name
        with WsClient(server.ws_url) as ws:
            ok = ws.auth(token)
            assert ok["type"] == "auth_ok", (name, ok)
    # The user id is the token's sub, whatever shape the provider gives it.
    with WsClient(server.ws_url) as ws:
        assert ws.auth(accepted["RS256 (JWKS URL)"])["user_id"] == "auth0|user-url"


def test_forged_tokens_are_refused_over_http_and_websocket(
    idp: tuple[ServerProcess, JwksServer], keys: Keys
) -> None:
    server, _ = idp
    forged = _forgeries(keys)
    for name, token in forged.items():
        status, code = _http_status(server, token)
        assert status == 401, (name, status)
        assert code in ("invalid_token", "token_expired"), (name, code)
        assert _ws_refused(server, token) in ("invalid_token", "token_expired"), name
    # Each refusal is audited with its reason, and no log line holds a token.
    log = server.log_text()
    rejected = [e for e in audit_events(log) if e["event"] == "token_rejected"]
    assert len(rejected) >= 2 * len(forged)
    assert {e["via"] for e in rejected} == {"http", "websocket"}
    assert all(set(e) == {"ts", "event", "code", "reason", "via", "address"} for e in rejected)
    for token in forged.values():
        parts = [token, *(p for p in token.split(".") if len(p) > 16)]
        assert not any(part in log for part in parts), token


def test_a_token_in_the_url_is_ignored(idp: tuple[ServerProcess, JwksServer]) -> None:
    server, _ = idp
    token = builtin("user-url-token")
    for query in (f"access_token={token}", f"token={token}"):
        r = httpx.get(f"{server.url}/v1/settings?{query}", timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
    with WsClient(f"{server.ws_url}?token={token}") as ws:
        ws.send({"type": "subscribe", "since": None})
        assert ws.recv()["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001


def _fetches_settle(jwks: JwksServer) -> int:
    time.sleep(0.05)
    return jwks.hits


def test_jwks_url_refetches_an_unknown_kid_at_most_once_per_interval(
    keys: Keys, jwks_server: JwksServer, tmp_path: Path
) -> None:
    jwks_server.document = {"keys": [jwk_of(keys.rsa_url, "k1")]}
    # In this process, so the test moves the server's clock past the interval instead of
    # sleeping through it.
    clock = MovableClock()
    server = InProcessServer.with_settings(
        clock,
        data_dir=tmp_path / "data",
        jwt_secret="",  # external tokens alone
        jwks_url=jwks_server.url,
        jwks_refresh_interval=2,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    server.start()
    try:
        assert jwks_server.hits == 1  # fetched once at start
        assert _http_status(server, signed(keys.rsa_url, "RS256", kid="k1")) == (200, "")
        assert jwks_server.hits == 1  # served from the cache
        # The provider rotates: a new key appears. Within the interval of the last fetch a
        # token naming it is refused (made-up key ids cannot make the server hammer the
        # provider); after it, the first such token refetches and is accepted.
        jwks_server.document = {"keys": [jwk_of(keys.rsa_url, "k1"), jwk_of(keys.ec, "k2")]}
        rotated = signed(keys.ec, "ES256", kid="k2")
        assert _http_status(server, rotated) == (401, "invalid_token")
        assert _fetches_settle(jwks_server) == 1
        clock.advance(2.1)
        assert _http_status(server, rotated) == (200, "")
        refetched = clock.monotonic()
        assert _fetches_settle(jwks_server) == 2
        made_up = [signed(keys.stranger, "RS256", kid=f"made-up-{n}") for n in range(20)]
        for token in made_up:
            assert _http_status(server, token)[0] == 401
        # None of the twenty refetched (unless this machine took longer than an interval).
        elapsed = clock.monotonic() - refetched
        assert 2 <= _fetches_settle(jwks_server) <= 2 + int(elapsed / 2)
        before = jwks_server.hits
        clock.advance(2.1)
        assert _http_status(server, signed(keys.stranger, "RS256", kid="made-up-x"))[0] == 401
        assert _fetches_settle(jwks_server) == before + 1  # the interval passed: one refetch
    finally:
        server.stop()


def test_an_unreachable_jwks_fails_closed_without_blocking_the_server(
    keys: Keys, jwks_server: JwksServer, tmp_path: Path
) -> None:
    jwks_server.document = {"keys": [jwk_of(keys.rsa_url, "k1")]}
    jwks_server.delay = 3.0  # answers, but far too late
    server = ServerProcess(
        tmp_path / "data",
        jwks_url=jwks_server.url,
        jwks_timeout=1,
        jwks_refresh_interval=0,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    server.start()  # the start-up fetch times out: the server runs anyway
    try:
        results: list[httpx.Response] = []
        token = signed(keys.rsa_url, "RS256", kid="k1")
        auth = {"Authorization": f"Bearer {token}"}
        slow = threading.Thread(
            target=lambda: results.append(
                httpx.get(server.url + "/v1/settings", headers=auth, timeout=10)
            )
        )
        started = time.monotonic()
        slow.start()
        time.sleep(0.2)
        # Meanwhile the event loop serves everyone else at once.
        t0 = time.monotonic()
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        assert _http_status(server, builtin("someone")) == (200, "")
        assert time.monotonic() - t0 < 0.5
        slow.join(5)
        (refused,) = results
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "jwks_unavailable"
        assert "cannot be fetched" in refused.json()["error"]["message"]
        assert 0.8 < time.monotonic() - started < 2.5
        # The provider recovers: the next token is verified with the fetched keys.
        jwks_server.delay = 0
        assert wait_for(lambda: _http_status(server, token) == (200, ""), timeout=8)
    finally:
        server.stop()


def test_external_tokens_alone_turn_built_in_users_off(keys: Keys, tmp_path: Path) -> None:
    jwks_file = write_jwks(tmp_path / "jwks.json", jwk_of(keys.ec, "only"))
    server = ServerProcess(
        tmp_path / "data",
        jwt_secret="",
        jwks_file=str(jwks_file),
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    server.start()
    try:
        with server.client() as http:
            body = {"username": "someone", "password": "correct horse 1"}
            for route in ("/v1/auth/signup", "/v1/auth/token"):
                r = http.post(route, json=body)
                assert r.status_code == 403, route
                assert r.json()["error"]["code"] == "builtin_users_disabled"
            r = http.post("/v1/auth/refresh", json={"refresh_token": "x" * 43})
            assert r.json()["error"]["code"] == "builtin_users_disabled"
            token = signed(keys.ec, "ES256", kid="only", sub="ext-1")
            assert http.get("/v1/settings", headers={"Authorization": f"Bearer {token}"}).is_success
            # No HS256 secret exists, so no HS256 token can be valid.
            hs = hs256_with(b"x" * 40, {"alg": "HS256"}, {"sub": "ext-1", "exp": 2**40})
            r = http.get("/v1/settings", headers={"Authorization": f"Bearer {hs}"})
            assert r.json()["error"]["message"] == "token algorithm is not accepted"
        assert not (tmp_path / "data" / "jwt.secret").exists()
    finally:
        server.stop()
