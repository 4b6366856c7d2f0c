"""Who may use /v1/admin: admins only — built-in users with the flag, or an identity
provider's token with LIVESETTINGS_ADMIN_CLAIM — and each access is audited."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from livesettings.auth import TokenIssuer
from tests.conftest import Backend
from tests.support.admins import admin_user, set_admin
from tests.support.idp import AUDIENCE, ISSUER, signed
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import signup

# Every admin route (a user id names one that exists nowhere: the gate answers first).
ROUTES = [
    ("GET", "/v1/admin/stats"),
    ("GET", "/v1/admin/users"),
    ("GET", "/v1/admin/teams"),
    ("GET", "/v1/admin/audit"),
    ("POST", "/v1/admin/users/nobody-here/revoke"),
    ("DELETE", "/v1/admin/users/nobody-here"),
]
READS = [path for method, path in ROUTES if method == "GET"]


def _call(server: ServerProcess, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + path, headers=headers, timeout=10)


def _service_token(sub: str) -> str:
    return TokenIssuer(TEST_JWT_SECRET.encode(), ttl_seconds=600).issue(sub, role="service")[0]


def test_every_admin_route_is_documented_and_refused_to_all_but_admins(
    server: ServerProcess,
) -> None:
    with server.client() as http:
        spec = http.get("/openapi.json").json()
        user = signup(http)
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/admin/")
        for method in operations
    }
    assert documented == {(m, p.replace("nobody-here", "{user_id}")) for m, p in ROUTES}
    for path in documented:
        assert "admin" in spec["paths"][path[1]][path[0].lower()]["tags"]
    service = _service_token("a-backend")
    for method, path in ROUTES:
        assert _call(server, method, path, None).status_code == 401, (method, path)
        assert _call(server, method, path, "not-a-token").status_code == 401, (method, path)
        for token in (user.token, service):
            refused = _call(server, method, path, token)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["error"]["code"] == "forbidden"
    admin = admin_user(server)
    for path in READS:
        assert _call(server, "GET", path, admin.token).status_code == 200, path


def test_admin_access_is_audited_once_per_path_per_minute(server: ServerProcess) -> None:
    admin = admin_user(server)
    for _ in range(3):
        assert _call(server, "GET", "/v1/admin/teams", admin.token).status_code == 200
    lines = _call(server, "GET", "/v1/admin/audit", admin.token).json()["lines"]
    mine = [
        (line["event"], line["path"])
        for line in lines
        if line["event"] == "admin_access" and line.get("user_id") == admin.user_id
    ]
    assert mine == [("admin_access", "/v1/admin/teams"), ("admin_access", "/v1/admin/audit")]
    assert all(line["ts"].endswith("Z") for line in lines)


def test_a_revoked_admin_loses_access_within_seconds(server: ServerProcess) -> None:
    admin = admin_user(server)
    assert _call(server, "GET", "/v1/admin/users", admin.token).status_code == 200
    out = set_admin(server, admin.username, on=False)
    assert out.endswith("is no longer an admin\n")
    revoked_at = time.monotonic()
    while _call(server, "GET", "/v1/admin/users", admin.token).status_code == 200:
        assert time.monotonic() - revoked_at < 5.0, "still an admin after 5 s"
        time.sleep(0.1)
    assert _call(server, "GET", "/v1/admin/users", admin.token).status_code == 403
    # Granted again, the access comes back as quickly.
    set_admin(server, admin.username, on=True)
    granted_at = time.monotonic()
    while _call(server, "GET", "/v1/admin/users", admin.token).status_code != 200:
        assert time.monotonic() - granted_at < 5.0, "not an admin 5 s after the grant"
        time.sleep(0.1)


def test_an_identity_provider_claim_makes_an_admin(backend: Backend, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "idp.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    server = backend.server(
        tmp_path / "data",
        jwt_public_key=str(pem),
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        admin_claim="app_metadata.roles:admin",
        idp_service_claim="app_metadata.roles:service",
    )
    server.start()
    admin = signed(key, "RS256", sub="idp-ops", app_metadata={"roles": ["staff", "admin"]})
    plain = signed(key, "RS256", sub="idp-user", app_metadata={"roles": ["staff"]})
    top_level = signed(key, "RS256", sub="idp-role", role="admin")  # not the named claim
    service = signed(key, "RS256", sub="idp-svc", app_metadata={"roles": ["service", "admin"]})
    assert _call(server, "GET", "/v1/admin/users", admin).status_code == 200
    for token in (plain, top_level, service):
        assert _call(server, "GET", "/v1/admin/users", token).status_code == 403
    # The claim is the identity provider's: a built-in (HS256) token carrying it is no admin.
    now = int(time.time())
    forged = jwt.encode(
        {
            "sub": "someone",
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": now,
            "exp": now + 600,
            "app_metadata": {"roles": ["admin"]},
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    assert _call(server, "GET", "/v1/settings", forged).status_code == 200  # a valid token
    assert _call(server, "GET", "/v1/admin/users", forged).status_code == 403
    lines = _call(server, "GET", "/v1/admin/audit", admin).json()["lines"]
    accesses = [(e["user_id"], e["path"]) for e in lines if e["event"] == "admin_access"]
    assert accesses == [("idp-ops", "/v1/admin/users"), ("idp-ops", "/v1/admin/audit")]
