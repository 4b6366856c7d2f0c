"""``/auth/v1``, the GoTrue subset, with plain HTTP against a real server on each backend:
the session and user shapes auth-js reads, its two error shapes, the ``apikey`` rule, and the
anon key refused wherever a user's token is needed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from livesettings.auth import TokenIssuer, TokenVerifier
from livesettings.errors import Unauthorized
from livesettings.server.compat.keys import ANON_KEY_TTL, is_anon, issue_anon_key
from tests.compat.conftest import issue_token, new_email
from tests.support.server import TEST_JWT_SECRET, ServerProcess, wait_for
from tests.support.ws import WsClient

PASSWORD = "correct horse 1"
VERSION = {"X-Supabase-Api-Version": "2024-01-01"}


@pytest.fixture(scope="module")
def anon(server: ServerProcess) -> str:
    return issue_token(server, "--anon")


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _h(anon: str, token: str | None = None) -> dict[str, str]:
    """What supabase-js sends: the apikey, the bearer (the anon key until signed in)."""
    return {"apikey": anon, "Authorization": f"Bearer {token or anon}", **VERSION}


def _signup(http: httpx.Client, anon: str, email: str | None = None) -> dict[str, Any]:
    response = http.post(
        "/auth/v1/signup",
        json={"email": email or new_email(), "password": PASSWORD, "data": {}},
        headers=_h(anon),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, TEST_JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims


def test_signup_answers_a_gotrue_session_whose_token_works_everywhere(
    server: ServerProcess, http: httpx.Client, anon: str
) -> None:
    email = new_email()
    before = int(time.time())
    session = _signup(http, anon, email)
    assert set(session) == {
        "access_token",
        "token_type",
        "expires_in",
        "expires_at",
        "refresh_token",
        "user",
    }
    assert session["token_type"] == "bearer"
    assert session["expires_in"] == 900
    assert before + 900 <= session["expires_at"] <= int(time.time()) + 901
    user = session["user"]
    assert user["email"] == email
    assert (user["aud"], user["role"]) == ("authenticated", "authenticated")
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert user["user_metadata"] == {}
    assert user["created_at"] and user["confirmed_at"]
    claims = _claims(session["access_token"])
    assert claims["sub"] == user["id"]
    assert (claims["role"], claims["aud"]) == ("authenticated", "authenticated")
    assert claims["exp"] == session["expires_at"]
    # The server's own routes and socket take the token as any user token.
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    assert http.get("/v1/settings", headers=bearer).status_code == 200
    with WsClient(server.ws_url) as ws:
        assert ws.auth(session["access_token"])["type"] == "auth_ok"
    # And a token of /v1/auth is good on /auth/v1.
    own = http.post("/v1/auth/token", json={"username": email, "password": PASSWORD})
    assert own.status_code == 200
    got = http.get("/auth/v1/user", headers=_h(anon, own.json()["access_token"]))
    assert got.status_code == 200 and got.json()["id"] == user["id"]


def test_signup_refusals_in_both_gotrue_error_shapes(http: httpx.Client, anon: str) -> None:
    email = new_email()
    _signup(http, anon, email)
    again = http.post(
        "/auth/v1/signup", json={"email": email, "password": PASSWORD}, headers=_h(anon)
    )
    assert again.status_code == 422
    assert again.json() == {"code": "user_already_exists", "message": "User already registered"}
    assert again.headers["x-supabase-api-version"] == "2024-01-01"
    # Without the version header: GoTrue's initial shape.
    legacy_headers = {"apikey": anon}
    legacy = http.post(
        "/auth/v1/signup", json={"email": email, "password": PASSWORD}, headers=legacy_headers
    )
    assert legacy.status_code == 422
    assert legacy.json() == {
        "code": 422,
        "error_code": "user_already_exists",
        "msg": "User already registered",
    }
    assert legacy.headers["x-sb-error-code"] == "user_already_exists"
    weak = http.post(
        "/auth/v1/signup", json={"email": new_email(), "password": "short"}, headers=_h(anon)
    )
    assert (weak.status_code, weak.json()["code"]) == (422, "weak_password")
    for bad in ({"email": "a b@example.com", "password": PASSWORD}, {"password": PASSWORD}):
        refused = http.post("/auth/v1/signup", json=bad, headers=_h(anon))
        assert (refused.status_code, refused.json()["code"]) == (400, "validation_failed"), bad
    malformed = http.post(
        "/auth/v1/signup", content=b"{", headers={**_h(anon), "Content-Type": "application/json"}
    )
    assert (malformed.status_code, malformed.json()["code"]) == (400, "validation_failed")


def test_password_and_refresh_grants(http: httpx.Client, anon: str) -> None:
    email = new_email()
    first = _signup(http, anon, email)
    signed_in = http.post(
        "/auth/v1/token?grant_type=password",
        json={"email": email, "password": PASSWORD, "gotrue_meta_security": {}},
        headers=_h(anon),
    )
    assert signed_in.status_code == 200, signed_in.text
    session = signed_in.json()
    assert session["user"]["id"] == first["user"]["id"]
    assert _claims(session["access_token"])["auth_time"] > 0
    for wrong in (
        {"email": email, "password": "wrong horse 1"},
        {"email": new_email(), "password": PASSWORD},
    ):
        refused = http.post("/auth/v1/token?grant_type=password", json=wrong, headers=_h(anon))
        assert refused.status_code == 400
        assert refused.json() == {
            "code": "invalid_credentials",
            "message": "Invalid login credentials",
        }
    refreshed = http.post(
        "/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": session["refresh_token"]},
        headers=_h(anon),
    )
    assert refreshed.status_code == 200, refreshed.text
    renewed = refreshed.json()
    assert renewed["refresh_token"] != session["refresh_token"]
    assert renewed["user"]["id"] == first["user"]["id"]
    claims = _claims(renewed["access_token"])
    assert claims["role"] == "authenticated" and "auth_time" not in claims
    unknown = http.post(
        "/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": "not-a-refresh-token"},
        headers=_h(anon),
    )
    assert (unknown.status_code, unknown.json()["code"]) == (400, "refresh_token_not_found")
    reused = http.post(
        "/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": session["refresh_token"]},
        headers=_h(anon),
    )
    assert (reused.status_code, reused.json()["code"]) == (400, "refresh_token_already_used")
    # Reuse signs the user out everywhere, as GoTrue's reuse detection does.
    gone = http.get("/auth/v1/user", headers=_h(anon, renewed["access_token"]))
    assert (gone.status_code, gone.json()["code"]) == (403, "bad_jwt")
    odd = http.post("/auth/v1/token?grant_type=pkce", json={}, headers=_h(anon))
    assert odd.status_code == 400 and odd.json()["message"] == "unsupported_grant_type"


def test_user_and_logout(http: httpx.Client, anon: str) -> None:
    session = _signup(http, anon)
    token = session["access_token"]
    user = http.get("/auth/v1/user", headers=_h(anon, token))
    assert user.status_code == 200
    assert user.json()["id"] == session["user"]["id"]
    assert user.json()["email"] == session["user"]["email"]
    missing = http.get("/auth/v1/user", headers={"apikey": anon, **VERSION})
    assert (missing.status_code, missing.json()["code"]) == (401, "no_authorization")
    as_anon = http.get("/auth/v1/user", headers=_h(anon))
    assert (as_anon.status_code, as_anon.json()["code"]) == (403, "bad_jwt")
    expired = jwt.encode(
        {"sub": session["user"]["id"], "exp": int(time.time()) - 10, "role": "authenticated"},
        TEST_JWT_SECRET,
    )
    stale = http.get("/auth/v1/user", headers=_h(anon, expired))
    assert (stale.status_code, stale.json()["code"]) == (403, "bad_jwt")
    assert "expired" in stale.json()["message"]
    out = http.post("/auth/v1/logout?scope=global", headers=_h(anon, token))
    assert out.status_code == 204
    assert http.get("/v1/settings", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    after = http.post(
        "/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": session["refresh_token"]},
        headers=_h(anon),
    )
    assert after.status_code == 400
    bad_scope = http.post("/auth/v1/logout?scope=nowhere", headers=_h(anon, token))
    assert bad_scope.status_code in (400, 403)


def test_every_request_needs_an_apikey(
    server: ServerProcess, http: httpx.Client, anon: str
) -> None:
    session = _signup(http, anon)
    token = session["access_token"]
    bare = http.get("/auth/v1/user", headers={"Authorization": f"Bearer {token}", **VERSION})
    assert bare.status_code == 401
    assert bare.json() == {"code": "no_api_key", "message": "No API key found in request"}
    forged = http.get("/auth/v1/user", headers=_h(anon[:-4] + "AAAA", token))
    assert (forged.status_code, forged.json()["code"]) == (401, "bad_jwt")
    # The apikey as a query parameter, and a user's token as the apikey, are accepted.
    by_query = http.get(
        f"/auth/v1/user?apikey={anon}", headers={"Authorization": f"Bearer {token}"}
    )
    assert by_query.status_code == 200
    as_key = http.get("/auth/v1/user", headers=_h(token, token))
    assert as_key.status_code == 200
    other = http.post("/auth/v1/otp", json={"email": new_email()}, headers=_h(anon))
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    # A revoked anon key stops working within seconds.
    doomed = issue_token(server, "--anon")
    jti = _claims(doomed)["jti"]
    assert http.post("/auth/v1/signup", json={}, headers=_h(doomed)).status_code == 400
    result = issue_revoke(server, jti)
    assert result == 0

    def refused() -> bool:
        answer = http.post("/auth/v1/signup", json={}, headers=_h(doomed))
        return answer.status_code == 401

    wait_for(refused, timeout=10)


def issue_revoke(server: ServerProcess, jti: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "livesettings", "token", "revoke", "--jti", jti],
        env=server.env(),
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode


def test_the_anon_key_is_never_a_user_token(
    server: ServerProcess, http: httpx.Client, anon: str
) -> None:
    claims = jwt.decode(anon, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["role"] == "anon" and "sub" not in claims and claims["jti"]
    refused = http.get("/v1/settings", headers={"Authorization": f"Bearer {anon}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    assert "anon key" in refused.json()["error"]["message"]
    patched = http.patch(
        "/v1/settings", json={"theme": "dark"}, headers={"Authorization": f"Bearer {anon}"}
    )
    assert patched.status_code == 401
    # Even with a subject, a token of role anon names no user.
    with_sub = jwt.encode(
        {"sub": "someone", "role": "anon", "exp": int(time.time()) + 60}, TEST_JWT_SECRET
    )
    assert (
        http.get("/v1/settings", headers={"Authorization": f"Bearer {with_sub}"}).status_code == 401
    )
    usage = subprocess.run(
        [sys.executable, "-m", "livesettings", "token", "issue", "--anon", "--service"],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2 and "--anon names no user" in usage.stderr
    with WsClient(server.ws_url) as ws:
        ws.send({"type": "auth", "token": anon})
        frame = ws.recv()
        assert frame["type"] == "error" and frame["code"] == "invalid_token"


def test_the_verifier_takes_an_anon_key_only_when_asked() -> None:
    secret = TEST_JWT_SECRET.encode()
    verifier = TokenVerifier(hs256_secret=secret)
    key, exp = issue_anon_key(secret)
    assert is_anon(key) and exp - int(time.time()) in (ANON_KEY_TTL, ANON_KEY_TTL - 1)
    with pytest.raises(Unauthorized, match="anon key"):
        verifier.verify(key)
    claims = verifier.verify(key, anon=True)
    assert (claims.role, claims.sub, claims.is_service) == ("anon", "", False)
    user, _ = TokenIssuer(secret).issue("u-1", role="authenticated", audience="authenticated")
    assert not is_anon(user) and not is_anon("not a token")
    assert verifier.verify(user, anon=True).sub == "u-1"
    assert verifier.verify(user).raw["aud"] == "authenticated"
    with pytest.raises(ValueError):
        issue_anon_key(secret, ttl_seconds=ANON_KEY_TTL + 1)
