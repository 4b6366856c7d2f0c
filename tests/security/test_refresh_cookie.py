"""The settings page's refresh token lives in an HttpOnly cookie (``X-Refresh-Cookie: 1``);
every other client keeps it in the JSON body. Over real HTTP against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from livesettings.server.cookies import REFRESH_COOKIE
from tests.conftest import SHARED_SERVER_SETTINGS
from tests.support.server import ServerProcess

PASSWORD = "correct horse 1"
COOKIE_MODE = {"X-Refresh-Cookie": "1"}
APP_ORIGIN = "https://app.example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cookie") / "data",
        allowed_origins=APP_ORIGIN,
        **SHARED_SERVER_SETTINGS,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _set_cookie(response: httpx.Response) -> dict[str, str]:
    """The refresh cookie this response sets: its value under "value", then its attributes
    (lower-cased names; flags map to "")."""
    for line in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in line.split(";")]
        name, _, value = first.partition("=")
        if name == REFRESH_COOKIE:
            parsed = {"value": value.strip('"')}
            for attribute in attributes:
                key, _, attr_value = attribute.partition("=")
                parsed[key.lower()] = attr_value
            return parsed
    raise AssertionError(f"no {REFRESH_COOKIE} cookie set: {response.headers}")


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{REFRESH_COOKIE}={value}"}


def _signup(server: ServerProcess, headers: dict[str, str]) -> httpx.Response:
    username = "c" + uuid.uuid4().hex[:10]
    return httpx.post(
        server.url + "/v1/auth/signup",
        json={"username": username, "password": PASSWORD},
        headers=headers,
    )


def _refresh(server: ServerProcess, headers: dict[str, str], body: object = None) -> httpx.Response:
    return httpx.post(server.url + "/v1/auth/refresh", json=body or {}, headers=headers)


def _settings_status(server: ServerProcess, access_token: str) -> int:
    response = httpx.get(
        server.url + "/v1/settings", headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


def test_cookie_mode_sets_an_httponly_cookie_and_leaves_the_body_without_it(
    server: ServerProcess,
) -> None:
    response = _signup(server, COOKIE_MODE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["access_token"].startswith("eyJ") and body["token_type"] == "bearer"
    assert response.headers["cache-control"] == "no-store"
    cookie = _set_cookie(response)
    assert len(cookie["value"]) >= 40
    assert cookie["path"] == "/v1/auth"
    assert cookie["samesite"].lower() == "strict"
    assert "httponly" in cookie
    assert cookie["max-age"] == str(30 * 24 * 3600)  # the refresh token's lifetime
    assert "secure" not in cookie  # plain http on loopback; see the https test below
    assert cookie["value"] not in response.text

    # Without the header, nothing changes for existing clients: the token is in the body.
    plain = _signup(server, {})
    assert plain.status_code == 200
    assert len(plain.json()["refresh_token"]) >= 40
    assert "set-cookie" not in plain.headers

    # Signing in works the same way.
    username = "s" + uuid.uuid4().hex[:10]
    httpx.post(server.url + "/v1/auth/signup", json={"username": username, "password": PASSWORD})
    signin = httpx.post(
        server.url + "/v1/auth/token",
        json={"username": username, "password": PASSWORD},
        headers=COOKIE_MODE,
    )
    assert signin.status_code == 200 and "refresh_token" not in signin.json()
    assert _set_cookie(signin)["path"] == "/v1/auth"


def test_refresh_takes_the_cookie_rotates_it_and_a_reused_one_is_cleared(
    server: ServerProcess,
) -> None:
    first = _set_cookie(_signup(server, COOKIE_MODE))["value"]

    # The cookie alone is not enough: without the header it is not even looked at.
    ignored = _refresh(server, _cookie(first))
    assert ignored.status_code == 401 and ignored.json()["error"]["code"] == "invalid_token"
    assert "set-cookie" not in ignored.headers

    rotated = _refresh(server, {**COOKIE_MODE, **_cookie(first)})
    assert rotated.status_code == 200, rotated.text
    assert "refresh_token" not in rotated.json()
    assert _settings_status(server, rotated.json()["access_token"]) == 200
    second = _set_cookie(rotated)["value"]
    assert second != first

    # The spent cookie again (a stolen copy): refused, the cookie cleared, the family revoked.
    reused = _refresh(server, {**COOKIE_MODE, **_cookie(first)})
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "token_reused"
    cleared = _set_cookie(reused)
    assert cleared["value"] == "" and cleared["max-age"] == "0"
    assert cleared["path"] == "/v1/auth"
    revoked = _refresh(server, {**COOKIE_MODE, **_cookie(second)})
    assert revoked.status_code == 401
    assert _set_cookie(revoked)["max-age"] == "0"

    # No token at all in cookie mode: 401 and nothing to clear.
    nothing = _refresh(server, COOKIE_MODE)
    assert nothing.status_code == 401 and "set-cookie" not in nothing.headers

    # A body token still works with the header: the rotated one comes back as the cookie.
    body_token = _signup(server, {}).json()["refresh_token"]
    moved = _refresh(server, COOKIE_MODE, {"refresh_token": body_token})
    assert moved.status_code == 200 and "refresh_token" not in moved.json()
    assert _set_cookie(moved)["value"] not in ("", body_token)


def test_a_foreign_origin_cannot_use_the_cookie(server: ServerProcess) -> None:
    value = _set_cookie(_signup(server, COOKIE_MODE))["value"]
    sibling = "http://127.0.0.1:1"  # same site (ports do not count), another origin
    for origin in ("https://evil.example", sibling, "null"):
        refused = _refresh(server, {**COOKIE_MODE, **_cookie(value), "Origin": origin})
        assert refused.status_code == 403, origin
        assert "set-cookie" not in refused.headers
    # Even an origin the operator allows for cross-origin apps gets no cookie mode: such
    # apps keep the refresh token in the body.
    allowed = _refresh(server, {**COOKIE_MODE, **_cookie(value), "Origin": APP_ORIGIN})
    assert allowed.status_code == 403
    assert allowed.json()["error"]["code"] == "cookie_cross_origin"
    assert "set-cookie" not in allowed.headers
    app_signin = _signup(server, {"Origin": APP_ORIGIN})
    assert app_signin.status_code == 200 and app_signin.json()["refresh_token"]

    # None of these spent the cookie: the page's own origin still refreshes with it.
    own = _refresh(server, {**COOKIE_MODE, **_cookie(value), "Origin": server.url})
    assert own.status_code == 200, own.text
    assert _set_cookie(own)["value"] != value


def test_logout_clears_the_cookie_even_with_an_expired_access_token(
    server: ServerProcess,
) -> None:
    signed_up = _signup(server, COOKIE_MODE)
    value = _set_cookie(signed_up)["value"]
    access = signed_up.json()["access_token"]
    logout = httpx.post(
        server.url + "/v1/auth/logout",
        headers={"Authorization": f"Bearer {access}", **_cookie(value)},
    )
    assert logout.status_code == 204
    cleared = _set_cookie(logout)
    assert cleared["value"] == "" and cleared["max-age"] == "0" and "httponly" in cleared
    assert _refresh(server, {**COOKIE_MODE, **_cookie(value)}).status_code == 401

    # A page whose access token ran out still loses its cookie when it signs out.
    other = _set_cookie(_signup(server, COOKIE_MODE))["value"]
    stale = httpx.post(
        server.url + "/v1/auth/logout",
        headers={"Authorization": "Bearer not-a-token", **_cookie(other)},
    )
    assert stale.status_code == 401
    assert _set_cookie(stale)["max-age"] == "0"


def test_a_password_change_moves_the_page_to_a_new_cookie(server: ServerProcess) -> None:
    signed_up = _signup(server, COOKIE_MODE)
    old = _set_cookie(signed_up)["value"]
    changed = httpx.post(
        server.url + "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another horse 2"},
        headers={"Authorization": f"Bearer {signed_up.json()['access_token']}", **COOKIE_MODE},
    )
    assert changed.status_code == 200, changed.text
    assert "refresh_token" not in changed.json()
    new = _set_cookie(changed)["value"]
    assert _refresh(server, {**COOKIE_MODE, **_cookie(old)}).status_code == 401
    assert _refresh(server, {**COOKIE_MODE, **_cookie(new)}).status_code == 200


def test_the_cookie_is_secure_when_the_public_url_is_https(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    proc = ServerProcess(
        tmp_path_factory.mktemp("https") / "data",
        public_url="https://settings.example.test",
        refresh_token_ttl=3600,
    )
    proc.start()
    try:
        response = _signup(proc, COOKIE_MODE)
        assert response.status_code == 200, response.text
        cookie = _set_cookie(response)
        assert "secure" in cookie and cookie["max-age"] == "3600"
        refreshed = _refresh(proc, {**COOKIE_MODE, **_cookie(cookie["value"])})
        assert "secure" in _set_cookie(refreshed)
    finally:
        proc.stop()


def test_a_bad_mode_header_is_refused_before_anything_happens(server: ServerProcess) -> None:
    response = _signup(server, {"X-Refresh-Cookie": "yes"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["location"] == "header"
