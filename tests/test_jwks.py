"""``livesettings.jwks``: reading a JWKS, caching it, refetching it on a miss, failing closed.

The URL cases use a real HTTP server on loopback; time is a clock passed in.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from livesettings.auth import TokenVerifier
from livesettings.errors import ConfigError, Unauthorized
from livesettings.jwks import RETRY_AFTER_FAILURE, JwksCache, parse_jwks
from tests.support.idp import JwksServer, jwk_of

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(key: Any, alg: str, kid: str) -> str:
    return jwt.encode(
        {"sub": "idp-user", "exp": int(time.time()) + 60}, key, algorithm=alg, headers={"kid": kid}
    )


def test_a_jwks_with_rsa_and_ec_keys_keeps_the_signing_keys_and_says_why_not_the_rest() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    document = {
        "keys": [
            jwk_of(RSA, "rsa-1"),
            jwk_of(EC, "ec-1"),
            {**jwk_of(RSA, "enc-1"), "use": "enc", "alg": "RSA-OAEP"},
            {**jwk_of(EC, "ops"), "key_ops": ["encrypt"]},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**jwk_of(small, "small"), "alg": "RS256"},
            {**jwk_of(RSA, "rs384"), "alg": "RS384"},
            "not a key",
        ]
    }
    keys, skipped = parse_jwks(document, "JWKS test")
    assert [(k.kid, k.alg) for k in keys] == [("rsa-1", "RS256"), ("ec-1", "ES256")]
    assert skipped == (
        "key 'enc-1': for 'enc', not for signatures",
        "key 'ops': key_ops do not include 'verify'",
        "key 'hmac': JWT public keys must be RSA (RS256) or P-256 (ES256) keys",
        "key 'small': a JWT RSA public key must be at least 2048 bits",
        "key 'rs384': a JWT public key declares alg 'RS384'; only RS256 fits it",
        "key #7: not a JSON object",
    )
    with pytest.raises(ConfigError, match='JWKS test holds no "keys" list'):
        parse_jwks({"keys": "x"}, "JWKS test")


def test_a_jwks_file_is_read_and_reread(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(EC, "a")]}))
    cache = JwksCache(path=path)
    cache.load()
    assert [k.kid for k in cache.keys] == ["a"] and cache.loaded
    path.write_text(json.dumps({"keys": [jwk_of(EC, "b")]}))
    asyncio.run(cache.refresh())
    assert [k.kid for k in cache.keys] == ["b"]
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        cache.load()
    assert [k.kid for k in cache.keys] == ["b"]  # what was held stays
    with pytest.raises(ConfigError, match="cannot read JWKS file"):
        JwksCache(path=tmp_path / "missing.json").load()


def test_refetches_are_spaced_and_a_failure_is_retried_sooner() -> None:
    clock = Clock()
    cache = JwksCache(url="http://127.0.0.1:1/jwks", clock=clock, timeout=1)
    assert cache.may_refresh()  # never fetched
    for expected_fetches in (1, 1, 2):
        with pytest.raises(Unauthorized) as failed:
            asyncio.run(cache.refresh_on_miss())
        assert failed.value.code == "jwks_unavailable"
        assert cache.fetches == expected_fetches
        clock.now += RETRY_AFTER_FAILURE / 2  # a failed fetch is retried after seconds
    assert cache.last_error is not None and cache.last_error.startswith("cannot fetch")
    assert not cache.loaded


def test_at_most_one_fetch_per_minute_by_default_and_one_for_many_waiters() -> None:
    server = JwksServer({"keys": [jwk_of(RSA, "r1")]}).start()
    try:
        clock = Clock()
        cache = JwksCache(url=server.url, clock=clock)
        assert cache.refresh_interval == 60.0

        async def many() -> None:
            await asyncio.gather(*(cache.refresh_on_miss() for _ in range(20)))

        asyncio.run(many())
        assert server.hits == 1 and [k.kid for k in cache.keys] == ["r1"]
        clock.now += 59
        asyncio.run(cache.refresh_on_miss())
        assert server.hits == 1  # within the minute: nothing fetched, nothing refused
        clock.now += 1
        asyncio.run(cache.refresh_on_miss())
        assert server.hits == 2
        assert not cache.stale
        clock.now += 3600
        assert cache.stale
    finally:
        server.stop()


def test_the_verifier_refetches_a_rotated_key_and_fails_closed_when_unreachable() -> None:
    server = JwksServer({"keys": [jwk_of(RSA, "r1")]}).start()
    try:
        clock = Clock()
        cache = JwksCache(url=server.url, clock=clock)
        verifier = TokenVerifier(key_sets=[cache])
        assert not verifier.algorithms  # nothing loaded yet...
        assert asyncio.run(verifier.verify_async(_token(RSA, "RS256", "r1"))).sub == "idp-user"
        assert verifier.algorithms == ("RS256",)  # ...fetched on the first token
        with pytest.raises(Unauthorized, match="no configured key matches"):
            verifier.verify(_token(EC, "ES256", "e1"))  # the sync path never fetches
        server.document = {"keys": [jwk_of(RSA, "r1"), jwk_of(EC, "e1")]}
        clock.now += 60
        assert asyncio.run(verifier.verify_async(_token(EC, "ES256", "e1"))).sub == "idp-user"
        server.status = 503
        clock.now += 60
        with pytest.raises(Unauthorized) as refused:
            asyncio.run(verifier.verify_async(_token(EC, "ES256", "e2")))
        assert refused.value.code == "jwks_unavailable"
        assert cache.last_error == f"cannot fetch {server.url}: HTTP 503"
        # Keys fetched before keep working while the provider is down.
        assert asyncio.run(verifier.verify_async(_token(RSA, "RS256", "r1"))).sub == "idp-user"
    finally:
        server.stop()


def test_an_oversized_jwks_is_refused() -> None:
    server = JwksServer({"keys": [], "pad": "x" * (1024 * 1024 + 1)}).start()
    try:
        cache = JwksCache(url=server.url)
        with pytest.raises(ConfigError, match="larger than"):
            asyncio.run(cache.refresh())
    finally:
        server.stop()
