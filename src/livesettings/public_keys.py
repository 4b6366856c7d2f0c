"""Verification keys for RS256/ES256 access tokens (DESIGN §4).

A configured key (PEM public key, certificate or JWK) and a key fetched from an identity
provider's JWKS are loaded the same way: the algorithm comes from the key's type, never from a
token. Both :mod:`livesettings.auth` and :mod:`livesettings.jwks` build on this module, so
neither imports the other at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .errors import ConfigError

__all__ = ["Alg", "PublicKey", "VerifyKey", "load_public_key"]

Alg = Literal["HS256", "RS256", "ES256"]
VerifyKey = bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class PublicKey:
    """A verification key with the one algorithm its type allows, and its key id if any."""

    alg: Alg
    key: VerifyKey
    kid: str | None


def load_public_key(source: Any) -> PublicKey:
    """A configured verification key with the one algorithm its type allows."""
    if isinstance(source, PublicKey):
        return source
    kid: str | None = None
    declared: str | None = None
    key: Any = source
    try:
        if isinstance(source, dict):
            source = jwt.PyJWK(source)
        if isinstance(source, jwt.PyJWK):
            kid, declared, key = source.key_id, source.algorithm_name, source.key
        elif isinstance(source, str | bytes):
            pem = source.encode("ascii") if isinstance(source, str) else source
            if b"-----BEGIN CERTIFICATE-----" in pem:
                key = x509.load_pem_x509_certificate(pem).public_key()
            else:
                key = load_pem_public_key(pem)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ConfigError("a JWT public key is not a PEM public key, certificate or JWK") from exc
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    alg: Alg
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError("a JWT RSA public key must be at least 2048 bits")
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        alg = "ES256"
    else:
        raise ConfigError("JWT public keys must be RSA (RS256) or P-256 (ES256) keys")
    if declared is not None and declared != alg:
        raise ConfigError(f"a JWT public key declares alg {declared!r}; only {alg} fits it")
    return PublicKey(alg, key, kid)
