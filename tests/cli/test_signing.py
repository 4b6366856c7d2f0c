"""``livesettings check-auth`` with identity providers: the modes, the fetched JWKS, a token."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.cli.conftest import Cli, ok
from tests.support.idp import JwksServer, jwk_of

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def _token(key: object, alg: str, kid: str, **claims: object) -> str:
    body = {"sub": "auth0|42", "iss": "https://idp", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]


def test_check_auth_fetches_the_jwks_and_checks_a_token_against_it(run_cli: Cli) -> None:
    enc = {**jwk_of(RSA, "enc-1"), "use": "enc", "alg": "RSA-OAEP"}
    server = JwksServer({"keys": [jwk_of(RSA, "r1"), jwk_of(EC, "e1"), enc]}).start()
    try:
        out = ok(
            run_cli(
                "check-auth",
                "--token",
                _token(EC, "ES256", "e1", aud="app"),
                jwt_secret=None,
                jwks_url=server.url,
                jwt_audience="app",
                jwt_issuer="https://idp",
            )
        )
        assert out.splitlines() == [
            "-    HS256 secret: not configured (identity provider only; no built-in users)",
            "-    public key: not configured",
            f"ok   JWKS URL: {server.url} (2 keys)",
            "warn JWKS URL: skipped key 'enc-1': for 'enc', not for signatures",
            "-    JWKS refetch: on an unknown key id, at most every 60 s; every 3600 s in any case",
            "-    audience: app",
            "-    issuer: https://idp",
            "-    service access: built-in service tokens (`token issue --service`)",
            "ok   algorithms: RS256, ES256",
            "ok   token: accepted (ES256)",
            "-    user id: auth0|42",
            "-    role: none (a user token)",
            "-    service access: no",
            "-    jti: none (cannot be revoked by jti)",
            out.splitlines()[-2],
            "check-auth: 3 checks passed",
        ]
        assert out.splitlines()[-2].startswith("-    expires: ")
        unknown = run_cli(
            "check-auth",
            "--token",
            _token(RSA, "RS256", "rotated-away", aud="app"),
            jwt_secret=None,
            jwks_url=server.url,
            jwt_audience="app",
            jwt_issuer="https://idp",
        )
        assert unknown.exit_code == 1
        assert (
            "FAIL token: refused: no configured key matches the token's key id\n" in unknown.stdout
        )
        assert server.hits == 2  # one fetch per run
    finally:
        server.stop()


def test_check_auth_refuses_a_jwks_over_plain_http(run_cli: Cli) -> None:
    result = run_cli("check-auth", jwks_url="http://192.0.2.1/jwks.json", jwks_timeout="0.3")
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == (
        "error: LIVESETTINGS_JWKS_URL http://192.0.2.1/jwks.json is plain http: anyone on the "
        "path could swap the signing keys; use https:// (http is accepted only for a loopback "
        "host)\n"
    )


def test_check_auth_fails_an_identity_provider_without_audience_and_issuer(
    run_cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(EC, "e1")]}))
    refused = run_cli("check-auth", jwks_file=str(path))
    assert refused.exit_code == 1
    assert (
        "FAIL audience: not set: serve refuses to start with an identity provider until "
        "LIVESETTINGS_JWT_AUDIENCE is set\n"
    ) in refused.stdout
    assert refused.stderr == "error: check-auth: 2 checks failed: audience, issuer\n"
    waived = ok(
        run_cli(
            "check-auth",
            jwks_file=str(path),
            jwt_audience="app",
            idp_audience_issuer_optional="true",
            idp_service_claim="app_metadata.role:service",
        )
    )
    assert "-    audience: app\n" in waived
    assert (
        "warn issuer: not checked (LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL): tokens the "
        "identity provider issued to other applications are accepted\n"
    ) in waived
    assert (
        "-    service access: built-in service tokens (`token issue --service`); identity "
        "provider tokens with app_metadata.role:service\n"
    ) in waived


def test_check_auth_lists_skipped_keys_of_a_jwks_file(run_cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(EC, "e1"), {"kty": "oct", "k": "eA", "kid": "h"}]}))
    out = ok(run_cli("check-auth", jwks_file=str(path), jwt_audience="app", jwt_issuer="idp"))
    assert f"-    JWKS file: {path} (1 key)\n" in out
    assert "warn JWKS file: skipped key 'h': JWT public keys must be RSA (RS256) or P-256" in out
    assert "ok   algorithms: HS256, ES256\n" in out
