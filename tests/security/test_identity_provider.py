"""Identity providers: their tokens never get service access by their own say, audience and
issuer are required, the JWKS comes over https (or loopback), and a retired key stops working.

Each test runs a real server process trusting a real JWKS server on loopback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from livesettings.config import Config
from livesettings.errors import ConfigError
from tests.support.idp import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    Keys,
    builtin,
    jwk_of,
    signed,
    write_jwks,
)
from tests.support.server import ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

SECRET = "sk-provider-test-0123456789"


def _status(server: ServerProcess, path: str, token: str) -> tuple[int, str]:
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code, (r.json()["error"]["code"] if r.status_code != 200 else "")


def _victim(server: ServerProcess) -> User:
    """A built-in user holding an API key worth stealing."""
    with server.client() as http:
        user = signup(http)
        r = http.patch("/v1/settings", json={"api_keys": {"openai": SECRET}}, headers=user.headers)
        assert r.status_code == 200, r.text
    return user


@pytest.fixture
def provider(keys: Keys, jwks_server: JwksServer) -> JwksServer:
    jwks_server.document = {"keys": [jwk_of(keys.rsa_url, "k1")]}
    return jwks_server


@pytest.fixture
def named_claim_server(provider: JwksServer, tmp_path: Path) -> Iterator[ServerProcess]:
    """Audience and issuer checked; the operator named app_metadata.role: service."""
    server = ServerProcess(
        tmp_path / "data",
        jwks_url=provider.url,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        idp_service_claim="app_metadata.role:service",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_provider_role_claim_grants_no_service_access(
    named_claim_server: ServerProcess, keys: Keys
) -> None:
    server = named_claim_server
    victim = _victim(server)
    secret_path = f"/v1/users/{victim.user_id}/secrets/openai"
    settings_path = f"/v1/users/{victim.user_id}/settings"

    # The provider's own `role` claim is the provider's to hand out: a user token, not more.
    role_service = signed(keys.rsa_url, "RS256", kid="k1", sub="idp-app", role="service")
    assert _status(server, secret_path, role_service) == (403, "forbidden")
    assert _status(server, settings_path, role_service) == (403, "forbidden")
    assert _status(server, "/v1/settings", role_service) == (200, "")  # its own settings
    with WsClient(server.ws_url) as ws:
        assert ws.auth(role_service)["type"] == "auth_ok"
        ws.send({"type": "subscribe", "since": None, "user_id": victim.user_id})
        assert ws.recv()["code"] == "forbidden"

    # The claim the operator named grants it, and only in a token meant for livesettings.
    named = signed(
        keys.rsa_url, "RS256", kid="k1", sub="idp-backend", app_metadata={"role": "service"}
    )
    r = httpx.get(server.url + secret_path, headers={"Authorization": f"Bearer {named}"})
    assert (r.status_code, r.json()["value"]) == (200, SECRET)
    assert _status(server, settings_path, named) == (200, "")
    for other in (
        {"aud": "another-app"},
        {"iss": "https://another-issuer.example"},
        {"aud": "another-app", "iss": "https://another-issuer.example"},
    ):
        foreign = signed(keys.rsa_url, "RS256", kid="k1", app_metadata={"role": "service"}, **other)
        assert _status(server, secret_path, foreign) == (401, "invalid_token"), other
    # A value in a list of roles counts; another value does not.
    in_list = signed(keys.rsa_url, "RS256", kid="k1", app_metadata={"role": ["x", "service"]})
    assert _status(server, settings_path, in_list) == (200, "")
    wrong = signed(keys.rsa_url, "RS256", kid="k1", app_metadata={"role": "services"})
    assert _status(server, settings_path, wrong) == (403, "forbidden")

    # The built-in issuer's service tokens keep working.
    assert _status(server, secret_path, builtin("backend", role="service")) == (200, "")


def test_the_reproduced_attack_is_refused_even_with_audience_and_issuer_waived(
    provider: JwksServer, keys: Keys, tmp_path: Path
) -> None:
    # As reported: only a JWKS, and a token the provider issued to another application.
    server = ServerProcess(
        tmp_path / "data", jwks_url=provider.url, idp_audience_issuer_optional="true"
    )
    server.start()
    try:
        victim = _victim(server)
        attack = signed(
            keys.rsa_url,
            "RS256",
            kid="k1",
            sub="other-app",
            aud="another-app",
            iss="https://another-issuer.example",
            role="service",
        )
        path = f"/v1/users/{victim.user_id}/secrets/openai"
        assert _status(server, path, attack) == (403, "forbidden")
        log = server.log_text()
        assert (
            "LIVESETTINGS_JWT_AUDIENCE and LIVESETTINGS_JWT_ISSUER not set "
            "(LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL=true): tokens the identity provider "
            "issued to other applications are accepted"
        ) in log
        assert "WARNING" in next(line for line in log.splitlines() if "IDP_AUDIENCE" in line)
    finally:
        server.stop()


def _serve_exit(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = ServerProcess(tmp_path / "data", **settings).env()
    return subprocess.run(
        [sys.executable, "-m", "livesettings", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "LIVESETTINGS_JWT_AUDIENCE and LIVESETTINGS_JWT_ISSUER are"),
        ({"jwt_audience": AUDIENCE}, "LIVESETTINGS_JWT_ISSUER is"),
        ({"jwt_issuer": ISSUER}, "LIVESETTINGS_JWT_AUDIENCE is"),
    ],
)
def test_serve_refuses_an_identity_provider_without_audience_and_issuer(
    keys: Keys, tmp_path: Path, settings: dict[str, str], missing: str
) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", jwk_of(keys.ec, "e1"))
    result = _serve_exit(tmp_path, jwks_file=str(jwks), **settings)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.endswith(
        f"error: an identity provider is configured but {missing} not set, so tokens it "
        "issued to other applications would be accepted; set them to what its tokens for "
        "livesettings carry, or set LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL=true to accept "
        "that\n"
    )
    assert "livesettings is running" not in result.stdout
    if not settings:
        # A public key alone counts as an identity provider too.
        pem = tmp_path / "idp.pem"
        pem.write_bytes(keys.rsa_pem())
        assert _serve_exit(tmp_path, jwt_public_key=str(pem)).returncode == 3


def test_a_malformed_service_claim_setting_is_refused() -> None:
    for value in ("role", "role:", ":service", "app_metadata..role:service"):
        with pytest.raises(ConfigError, match="LIVESETTINGS_IDP_SERVICE_CLAIM must be"):
            Config.load(env={"LIVESETTINGS_IDP_SERVICE_CLAIM": value})


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://idp.example.com/.well-known/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", True),
        ("http://127.8.9.10/jwks.json", True),
        ("http://localhost:8080/jwks.json", True),
        ("http://[::1]:8080/jwks.json", True),
        ("http://idp.example.com/.well-known/jwks.json", False),
        ("http://10.0.0.5/jwks.json", False),
        ("http://localhost.example.com/jwks.json", False),
        ("http://[::ffff:8.8.8.8]/jwks.json", False),
        ("ftp://idp.example.com/jwks.json", False),
    ],
)
def test_a_jwks_url_over_plain_http_must_be_loopback(url: str, accepted: bool) -> None:
    env = {"LIVESETTINGS_JWKS_URL": url}
    if accepted:
        assert Config.load(env=env).jwks_url == url
        return
    with pytest.raises(ConfigError, match="LIVESETTINGS_JWKS_URL"):
        Config.load(env=env)


def test_a_token_of_a_key_retired_from_the_jwks_is_refused_at_its_next_use(
    provider: JwksServer, keys: Keys, tmp_path: Path
) -> None:
    server = ServerProcess(
        tmp_path / "data",
        jwks_url=provider.url,
        jwks_refresh_interval=0,  # every unknown kid refetches: the test forces refreshes
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    server.start()
    try:
        old = signed(keys.rsa_url, "RS256", kid="k1", sub="idp-user")
        assert _status(server, "/v1/settings", old) == (200, "")
        assert _status(server, "/v1/settings", old) == (200, "")  # now verified from cache
        hits = provider.hits
        # The provider retires k1 and signs with k2 from now on.
        provider.document = {"keys": [jwk_of(keys.ec, "k2")]}
        new = signed(keys.ec, "ES256", kid="k2", sub="idp-user")
        assert _status(server, "/v1/settings", new) == (200, "")  # refetched the JWKS
        assert provider.hits > hits
        assert _status(server, "/v1/settings", old) == (401, "invalid_token")
        with WsClient(server.ws_url) as ws:
            assert ws.auth(old)["code"] == "invalid_token"
        assert _status(server, "/v1/settings", new) == (200, "")
    finally:
        server.stop()
