"""Passwords, access tokens (issue, verify, forgeries) and refresh tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from livesettings.auth import (
    Claims,
    PasswordHasher,
    TokenIssuer,
    TokenVerifier,
    hash_refresh_token,
    load_or_create_jwt_secret,
    new_family_id,
    new_refresh_token,
    validate_password,
    validate_username,
)
from livesettings.errors import ConfigError, TokenExpired, Unauthorized, ValidationError

SECRET = b"s" * 32
NOW = 1_795_885_279  # 2026-11-28T17:01:19Z


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: Any) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def _hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "user-1", "iat": NOW, "exp": NOW + 900, **extra}


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(hs256_secret=SECRET)


def _refused(verifier: TokenVerifier, token: str, now: float = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token, now=now)
    if len(token) >= 8:  # never echoed (shorter strings may occur in any sentence)
        assert token not in info.value.message
        assert token not in repr(info.value)
    return info.value


# --- passwords ---------------------------------------------------------------------------------

LOW = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def test_hash_and_verify() -> None:
    hasher = PasswordHasher(**LOW)
    hashed = hasher.hash("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "correct horse battery" not in hashed
    assert hasher.verify(hashed, "correct horse battery") is True
    assert hasher.verify(hashed, "correct horse battery!") is False
    assert hasher.verify(hashed, "") is False
    assert hasher.hash("correct horse battery") != hashed  # salted


@pytest.mark.parametrize("stored", ["", "garbage", "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA"])
def test_verify_against_an_unusable_hash_is_false(stored: str) -> None:
    assert PasswordHasher(**LOW).verify(stored, "whatever-password") is False


def test_needs_rehash() -> None:
    low = PasswordHasher(**LOW)
    hashed = low.hash("password123")
    assert low.needs_rehash(hashed) is False
    assert PasswordHasher(time_cost=2, memory_cost=8, parallelism=1).needs_rehash(hashed) is True


def test_default_costs_are_owasp_minimum() -> None:
    hashed = PasswordHasher().hash("password123")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_dummy_verify_is_always_false() -> None:
    hasher = PasswordHasher(**LOW)
    assert hasher.dummy_verify("password123") is False
    assert hasher.dummy_verify("password123") is False


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("abc", True),
        ("a" * 64, True),
        ("Alice.Smith-99_x@example.com", True),
        ("ab", False),
        ("a" * 65, False),
        ("", False),
        ("with space", False),
        ("tab\tname", False),
        ("alice\n", False),
        ("émilie", False),
        ("a/b/c", False),
        ("ann+settings@example.com", True),
        ("a=b", False),
        (None, False),
        (123, False),
        (["abc"], False),
    ],
)
def test_validate_username(name: Any, ok: bool) -> None:
    if ok:
        assert validate_username(name) == name
        return
    with pytest.raises(ValidationError) as info:
        validate_username(name)
    assert info.value.code == "invalid_username"
    assert info.value.path == "/username"
    assert info.value.status == 422
    assert info.value.details == {"path": "/username"}
    assert info.value.message == (
        "username must be 3 to 64 characters: letters, digits, '_', '.', '@', '+' or '-'"
    )


@pytest.mark.parametrize(
    ("pw", "ok"),
    [
        ("12345678", True),
        ("x" * 1024, True),
        ("pässwörd with spaces 🔑", True),
        ("1234567", False),
        ("", False),
        ("x" * 1025, False),
        (None, False),
        (12345678, False),
        (b"12345678", False),
    ],
)
def test_validate_password(pw: Any, ok: bool) -> None:
    if ok:
        assert validate_password(pw) == pw
        return
    with pytest.raises(ValidationError) as info:
        validate_password(pw)
    assert info.value.code == "weak_password"
    assert info.value.path == "/password"
    assert info.value.message == "password must be 8 to 1024 characters"


# --- issue and verify --------------------------------------------------------------------------


def test_issue_verify_round_trip(verifier: TokenVerifier) -> None:
    token, exp = TokenIssuer(SECRET).issue("user-1", now=NOW + 0.75)
    assert exp == NOW + 900
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = verifier.verify(token, now=NOW + 1)
    assert claims == Claims(
        sub="user-1",
        exp=NOW + 900,
        iat=NOW + 0.75,
        role=None,
        raw=claims.raw,
        jti=claims.raw["jti"],
        builtin=True,
    )
    assert set(claims.raw) == {"sub", "iat", "exp", "jti"}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", claims.raw["jti"])
    assert claims.is_service is False


def test_issue_with_role_ttl_issuer_audience() -> None:
    issuer = TokenIssuer(SECRET, ttl_seconds=60, issuer="https://ls.example", audience="ls")
    verifier = TokenVerifier(hs256_secret=SECRET, issuer="https://ls.example", audience="ls")
    token, exp = issuer.issue("svc", role="service", now=NOW)
    assert exp == NOW + 60
    claims = verifier.verify(token, now=NOW)
    assert claims.role == "service"
    assert claims.is_service is True
    assert claims.raw["iss"] == "https://ls.example"
    assert claims.raw["aud"] == "ls"
    token, exp = issuer.issue("svc", ttl_seconds=5, now=NOW)
    assert exp == NOW + 5
    assert "role" not in verifier.verify(token, now=NOW).raw


def test_each_token_has_its_own_jti(verifier: TokenVerifier) -> None:
    issuer = TokenIssuer(SECRET)
    first, _ = issuer.issue("user-1", now=NOW)
    second, _ = issuer.issue("user-1", now=NOW)
    assert first != second


@pytest.mark.parametrize("user_id", ["", "x" * 129])
def test_issue_refuses_bad_user_ids(user_id: str) -> None:
    with pytest.raises(ValueError):
        TokenIssuer(SECRET).issue(user_id)


def test_expiry_is_checked_against_now(verifier: TokenVerifier) -> None:
    token, exp = TokenIssuer(SECRET, ttl_seconds=60).issue("user-1", now=NOW)
    assert verifier.verify(token, now=exp - 0.001).sub == "user-1"
    for now in (exp, exp + 1, exp + 86_400):
        with pytest.raises(TokenExpired) as info:
            verifier.verify(token, now=now)
        assert info.value.code == "token_expired"
        assert info.value.message == "token expired"
        assert info.value.status == 401
        assert isinstance(info.value, Unauthorized)


def test_leeway_applies_to_exp_and_nbf() -> None:
    lenient = TokenVerifier(hs256_secret=SECRET, leeway=30)
    token = jwt.encode(_claims(exp=NOW, nbf=NOW + 20), SECRET, algorithm="HS256")
    assert lenient.verify(token, now=NOW + 29).sub == "user-1"
    with pytest.raises(TokenExpired):
        lenient.verify(token, now=NOW + 30)


def test_not_yet_valid(verifier: TokenVerifier) -> None:
    token = jwt.encode(_claims(nbf=NOW + 10), SECRET, algorithm="HS256")
    error = _refused(verifier, token, now=NOW + 9)
    assert error.code == "invalid_token"
    assert error.message == "token is not valid yet"
    assert verifier.verify(token, now=NOW + 10).sub == "user-1"


def test_verify_defaults_to_the_current_time(verifier: TokenVerifier) -> None:
    fresh, _ = TokenIssuer(SECRET).issue("user-1")
    assert verifier.verify(fresh).sub == "user-1"
    old, _ = TokenIssuer(SECRET).issue("user-1", now=NOW - 10 * 365 * 86_400)
    with pytest.raises(TokenExpired):
        verifier.verify(old)


# --- forgeries and malformed tokens ------------------------------------------------------------


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(_claims())}."
        error = _refused(verifier, token)
        assert error.code == "invalid_token"
        assert error.message == "token algorithm is not accepted"


def test_hs256_signed_with_the_rsa_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key)
    forged = _hs256_by_hand({"alg": "HS256", "typ": "JWT"}, _claims(), pem.encode())
    # Only the public key configured: HS256 is not an algorithm any key accepts.
    public_only = TokenVerifier(public_keys=[pem])
    assert _refused(public_only, forged).message == "token algorithm is not accepted"
    # With a shared secret too, HS256 is checked against that secret only, never the PEM.
    both = TokenVerifier(hs256_secret=SECRET, public_keys=[pem])
    assert _refused(both, forged).message == "token signature is invalid"


@pytest.mark.parametrize(
    ("audience", "issuer", "claims", "message"),
    [
        ("ls", None, _claims(aud="other"), "token audience is not accepted"),
        ("ls", None, _claims(aud=["a", "b"]), "token audience is not accepted"),
        ("ls", None, _claims(), 'token is missing the "aud" claim'),
        (None, "https://a", _claims(iss="https://b"), "token issuer is not accepted"),
        (None, "https://a", _claims(), 'token is missing the "iss" claim'),
    ],
)
def test_wrong_audience_or_issuer(
    audience: str | None, issuer: str | None, claims: dict[str, Any], message: str
) -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, audience=audience, issuer=issuer)
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    error = _refused(verifier, token)
    assert error.code == "invalid_token"
    assert error.message == message


def test_audience_and_issuer_are_ignored_when_not_configured(verifier: TokenVerifier) -> None:
    # Identity providers put their own aud/iss in tokens (Supabase: aud "authenticated").
    token = jwt.encode(_claims(aud="authenticated", iss="https://idp"), SECRET, algorithm="HS256")
    assert verifier.verify(token, now=NOW).sub == "user-1"
    listed = jwt.encode(_claims(aud=["x", "ls"]), SECRET, algorithm="HS256")
    assert TokenVerifier(hs256_secret=SECRET, audience="ls").verify(listed, now=NOW).sub == "user-1"


def test_tampered_payload_is_refused(verifier: TokenVerifier) -> None:
    token, _ = TokenIssuer(SECRET).issue("user-1", now=NOW)
    header, _payload, signature = token.split(".")
    forged = f"{header}.{_segment(_claims(sub='admin', role='service'))}.{signature}"
    assert _refused(verifier, forged).message == "token signature is invalid"
    other = jwt.encode(_claims(), b"x" * 32, algorithm="HS256")
    assert _refused(verifier, other).message == "token signature is invalid"
    # A flipped signature bit too.
    sig = bytearray(base64.urlsafe_b64decode(signature + "="))
    sig[0] ^= 1
    assert _refused(verifier, f"{header}.{_payload}.{_b64url(bytes(sig))}").message == (
        "token signature is invalid"
    )


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": "user-1", "iat": NOW}, 'token is missing the "exp" claim'),
        ({"sub": "user-1", "exp": None}, 'token is missing the "exp" claim'),
        ({"iat": NOW, "exp": NOW + 900}, 'token is missing the "sub" claim'),
        (_claims(sub=None), 'token is missing the "sub" claim'),
        (_claims(sub=""), "token subject must be a non-empty string of at most 128"),
        (_claims(sub="x" * 129), "token subject must be a non-empty string of at most 128"),
        (_claims(sub=42), "token subject must be a non-empty string of at most 128"),
        (_claims(exp="2030-01-01"), 'token "exp" claim must be a number of seconds'),
        (_claims(exp=True), 'token "exp" claim must be a number of seconds'),
        (_claims(exp=float("inf")), 'token "exp" claim must be a number of seconds'),
        (_claims(exp=float("nan")), 'token "exp" claim must be a number of seconds'),
        (_claims(nbf="soon"), 'token "nbf" claim must be a number of seconds'),
        (_claims(iat="now"), 'token "iat" claim must be a number of seconds'),
        (_claims(jti=7), 'token "jti" claim must be a string'),
    ],
)
def test_required_and_typed_claims(
    verifier: TokenVerifier, claims: dict[str, Any], message: str
) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    error = _refused(verifier, token)
    assert error.code == "invalid_token"
    assert error.message == message


def test_claim_values_are_normalised(verifier: TokenVerifier) -> None:
    sub = "auth0|" + "x" * 122  # 128 chars: the limit
    token = jwt.encode(
        {"sub": sub, "exp": NOW + 10.9, "iat": NOW + 0.5, "role": ["admin"]},
        SECRET,
        algorithm="HS256",
    )
    claims = verifier.verify(token, now=NOW)
    assert (claims.sub, claims.exp, claims.iat, claims.role) == (sub, NOW + 10, NOW + 0.5, None)
    assert claims.raw["role"] == ["admin"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "token is missing"),
        ("garbage", "token is malformed"),
        ("a.b.c", "token is malformed"),
        ("a.b", "token is malformed"),
        ("....", "token is malformed"),
        (f"{_segment([1, 2])}.{_segment(_claims())}.sig", "token is malformed"),
        (
            f"{_segment({'typ': 'JWT'})}.{_segment(_claims())}.sig",
            "token algorithm is not accepted",
        ),
        (f"{_segment({'alg': 5})}.{_segment(_claims())}.sig", "token algorithm is not accepted"),
        (
            _hs256_by_hand({"alg": "HS256"}, ["not", "an", "object"], SECRET),  # type: ignore[arg-type]
            "token is malformed",
        ),
        ("x" * 20_000, "token is too long"),
    ],
)
def test_garbage_is_refused(verifier: TokenVerifier, token: str, message: str) -> None:
    error = _refused(verifier, token)
    assert error.code == "invalid_token"
    assert error.message == message


def test_non_string_token_is_refused(verifier: TokenVerifier) -> None:
    for token in (None, b"abc", 42):
        with pytest.raises(Unauthorized) as info:
            verifier.verify(token)  # type: ignore[arg-type]
        assert info.value.message == "token is missing"


def test_pyjwt_errors_are_chained(verifier: TokenVerifier) -> None:
    token = jwt.encode(_claims(), b"x" * 32, algorithm="HS256")
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token, now=NOW)
    assert isinstance(info.value.__cause__, jwt.InvalidSignatureError)


# --- public keys (RS256, ES256) ----------------------------------------------------------------


def test_rs256_accepted_with_the_right_public_key(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(_claims(role="authenticated"), rsa_key, algorithm="RS256")
    for form in (_pem(rsa_key), _pem(rsa_key).encode(), rsa_key.public_key(), rsa_key):
        claims = TokenVerifier(public_keys=[form]).verify(token, now=NOW)
        assert (claims.sub, claims.role, claims.is_service) == ("user-1", "authenticated", False)
    wrong = TokenVerifier(public_keys=[_pem(rsa_key_2)])
    assert _refused(wrong, token).message == "token signature is invalid"
    # Several keys of one algorithm and no kid: each is tried.
    both = TokenVerifier(public_keys=[_pem(rsa_key_2), _pem(rsa_key)])
    assert both.verify(token, now=NOW).sub == "user-1"


def test_only_the_built_in_issuer_or_a_named_provider_claim_grants_service(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    provider_role = jwt.encode(_claims(role="service"), rsa_key, algorithm="RS256")
    claims = TokenVerifier(public_keys=[rsa_key]).verify(provider_role, now=NOW)
    assert (claims.role, claims.builtin, claims.is_service) == ("service", False, False)
    named = TokenVerifier(public_keys=[rsa_key], service_claim="realm_access.roles:service")
    assert named.service_claim == (("realm_access", "roles"), "service")
    keycloak = jwt.encode(
        _claims(realm_access={"roles": ["user", "service"]}), rsa_key, algorithm="RS256"
    )
    assert named.verify(keycloak, now=NOW).is_service is True
    assert named.verify(provider_role, now=NOW).is_service is False
    # The built-in issuer's role claim is its own: a service token whatever is named.
    builtin, _ = TokenIssuer(SECRET).issue("svc", role="service", now=NOW)
    mixed = TokenVerifier(hs256_secret=SECRET, public_keys=[rsa_key], service_claim="x:y")
    verified = mixed.verify(builtin, now=NOW)
    assert (verified.builtin, verified.is_service, verified.jti) == (
        True,
        True,
        verified.raw["jti"],
    )


def test_es256_accepted_with_the_right_public_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(_claims(), ec_key, algorithm="ES256")
    assert TokenVerifier(public_keys=[_pem(ec_key)]).verify(token, now=NOW).sub == "user-1"
    other = ec.generate_private_key(ec.SECP256R1())
    assert _refused(TokenVerifier(public_keys=[_pem(other)]), token).message == (
        "token signature is invalid"
    )


def test_algorithm_is_pinned_by_key_type(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rs = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    es = jwt.encode(_claims(), ec_key, algorithm="ES256")
    rs512 = jwt.encode(_claims(), rsa_key, algorithm="RS512")
    hs = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert TokenVerifier(public_keys=[_pem(rsa_key)]).algorithms == ("RS256",)
    assert _refused(TokenVerifier(public_keys=[_pem(ec_key)]), rs).message == (
        "token algorithm is not accepted"
    )
    assert _refused(TokenVerifier(public_keys=[_pem(rsa_key)]), es).message == (
        "token algorithm is not accepted"
    )
    assert _refused(TokenVerifier(public_keys=[_pem(rsa_key)]), rs512).message == (
        "token algorithm is not accepted"
    )
    assert _refused(TokenVerifier(public_keys=[_pem(rsa_key)]), hs).message == (
        "token algorithm is not accepted"
    )
    mixed = TokenVerifier(hs256_secret=SECRET, public_keys=[_pem(rsa_key), _pem(ec_key)])
    assert mixed.algorithms == ("HS256", "RS256", "ES256")
    assert [mixed.verify(t, now=NOW).sub for t in (rs, es, hs)] == ["user-1"] * 3


def test_jwk_keys_and_kid_selection(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    def jwk(key: Any, kid: str) -> dict[str, Any]:
        if isinstance(key, rsa.RSAPublicKey):
            return {**jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True), "kid": kid}
        return {**jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True), "kid": kid}

    verifier = TokenVerifier(
        public_keys=[
            jwk(rsa_key.public_key(), "one"),
            jwt.PyJWK(jwk(rsa_key_2.public_key(), "two")),
            jwk(ec_key.public_key(), "three"),
        ]
    )
    by_two = jwt.encode(_claims(), rsa_key_2, algorithm="RS256", headers={"kid": "two"})
    by_three = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "three"})
    assert verifier.verify(by_two, now=NOW).sub == "user-1"
    assert verifier.verify(by_three, now=NOW).sub == "user-1"
    # Signed by key one but labelled two: only key two is tried.
    mislabelled = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "two"})
    assert _refused(verifier, mislabelled).message == "token signature is invalid"
    unknown = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "zzz"})
    assert _refused(verifier, unknown).message == "no configured key matches the token's key id"
    # A key without a kid (a PEM) is tried whatever kid the token names.
    verifier.add_public_keys([_pem(rsa_key)])
    assert verifier.verify(unknown, now=NOW).sub == "user-1"
    verifier.replace_public_keys([jwk(ec_key.public_key(), "three")])
    assert verifier.algorithms == ("ES256",)
    assert _refused(verifier, by_two).message == "token algorithm is not accepted"


def test_certificate_pem_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36_500))
        .sign(rsa_key, hashes.SHA256())
    )
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    verifier = TokenVerifier(public_keys=[cert.public_bytes(Encoding.PEM).decode()])
    assert verifier.verify(token, now=NOW).sub == "user-1"


# --- configuration errors ----------------------------------------------------------------------


def test_verifier_configuration_errors(rsa_key: rsa.RSAPrivateKey) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "no JWT secret or public key is configured to verify tokens"),
        ({"hs256_secret": b"short"}, "the JWT secret must be at least 32 bytes"),
        (
            {"hs256_secret": _pem(rsa_key).encode()},
            "the JWT secret looks like a public key, not a shared secret",
        ),
        (
            {"public_keys": ["not a pem"]},
            "a JWT public key is not a PEM public key, certificate or JWK",
        ),
        (
            {"public_keys": [{"kty": "oct", "k": _b64url(SECRET)}]},
            "JWT public keys must be RSA (RS256) or P-256 (ES256) keys",
        ),
        (
            {"public_keys": [_pem(ec.generate_private_key(ec.SECP384R1()))]},
            "JWT public keys must be RSA (RS256) or P-256 (ES256) keys",
        ),
        (
            {"public_keys": [rsa.generate_private_key(65537, 1024).public_key()]},
            "a JWT RSA public key must be at least 2048 bits",
        ),
        (
            {
                "public_keys": [
                    {
                        **jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True),
                        "alg": "RS512",
                    }
                ]
            },
            "a JWT public key declares alg 'RS512'; only RS256 fits it",
        ),
        ({"public_keys": [12345]}, "JWT public keys must be RSA (RS256) or P-256 (ES256) keys"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            TokenVerifier(**kwargs)
        assert info.value.message == message


def test_issuer_configuration_errors() -> None:
    with pytest.raises(ConfigError) as info:
        TokenIssuer(b"short")
    assert info.value.message == "the JWT secret must be at least 32 bytes"
    with pytest.raises(ConfigError) as info:
        TokenIssuer(SECRET, ttl_seconds=0)
    assert info.value.message == "the access token lifetime must be positive"


# --- refresh tokens and the secret file --------------------------------------------------------


def test_refresh_tokens() -> None:
    token = new_refresh_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert new_refresh_token() != token
    assert hash_refresh_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).hexdigest()
    family = new_family_id()
    assert str(uuid.UUID(family)) == family
    assert new_family_id() != family


def test_jwt_secret_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt.secret"
    secret = load_or_create_jwt_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == base64.b64encode(secret).decode() + "\n"
    assert load_or_create_jwt_secret(path) == secret
    token, _ = TokenIssuer(secret).issue("user-1", now=NOW)
    assert TokenVerifier(hs256_secret=secret).verify(token, now=NOW).sub == "user-1"


def test_jwt_secret_file_readable_by_group_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    path.write_text(base64.b64encode(SECRET).decode() + "\n")
    path.chmod(0o640)
    with pytest.raises(ConfigError) as info:
        load_or_create_jwt_secret(path)
    assert info.value.message == (
        f"key file {path} is accessible by group or others (mode 0640); run: chmod 600 {path}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("%%%\n", "JWT secret file {path} is not valid base64"),
        (
            base64.b64encode(b"x" * 16).decode(),
            "JWT secret file {path} must hold at least 32 bytes",
        ),
    ],
)
def test_bad_jwt_secret_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "jwt.secret"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_or_create_jwt_secret(path)
    assert info.value.message == message.format(path=path)
