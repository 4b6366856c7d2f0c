"""What the configuration names, loaded: the master keyring, the token signing keys and the
identity providers' key sets.

The server and the CLI read them the same way, so both import them from here (the CLI never
imports the server).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from .auth import TokenVerifier, load_or_create_jwt_secret
from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .crypto import Keyring
from .errors import ConfigError
from .jwks import JwksCache

__all__ = [
    "check_token_claims",
    "load_key_sets",
    "load_keyring",
    "load_signing",
    "read_jwt_public_key",
    "token_verifier",
]

log = logging.getLogger("livesettings.server")


def load_keyring(config: Config) -> Keyring:
    """The master keyring: configured, or (embedded default) generated in the data dir."""
    if config.master_keys:
        return Keyring.parse(config.master_keys)
    if config.master_key:
        return Keyring.from_single(config.master_key)
    if config.is_postgres:
        raise ConfigError(
            "PostgreSQL needs explicit master keys: set LIVESETTINGS_MASTER_KEYS "
            "(id:base64,…) or LIVESETTINGS_MASTER_KEY"
        )
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Keyring.load_or_create_file(config.data_dir / "master.keys")


def read_jwt_public_key(config: Config) -> str | None:
    """``LIVESETTINGS_JWT_PUBLIC_KEY``: the PEM text itself, or a file holding it."""
    text = config.jwt_public_key
    if not text:
        return None
    if not text.lstrip().startswith("-----BEGIN"):
        try:
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read LIVESETTINGS_JWT_PUBLIC_KEY: {exc}") from exc
    return text


def load_signing(config: Config) -> tuple[bytes | None, list[Any]]:
    """The HS256 secret and the public keys tokens are verified with.

    The embedded default generates an HS256 secret for its built-in users — unless an
    identity provider is configured (a public key or JWKS) and no secret was generated
    before: then the server accepts external tokens alone until a secret is set.
    """
    public: list[Any] = []
    pem = read_jwt_public_key(config)
    if pem is not None:
        public.append(pem)
    secret: bytes | None = None
    if config.jwt_secret:
        secret = config.jwt_secret.encode()
    elif not config.is_postgres:
        path = config.data_dir / "jwt.secret"
        if not config.external_auth or path.exists():
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            secret = load_or_create_jwt_secret(path)
    if secret is None and not config.external_auth:
        raise ConfigError(
            "PostgreSQL needs an explicit LIVESETTINGS_JWT_SECRET or a public key "
            "(LIVESETTINGS_JWT_PUBLIC_KEY / LIVESETTINGS_JWKS_FILE / LIVESETTINGS_JWKS_URL)"
        )
    return secret, public


def check_token_claims(config: Config) -> None:
    """With an identity provider, ``aud`` and ``iss`` must be checked, or explicitly waived.

    Unchecked, any token the provider signed — for any of its applications — is accepted.
    """
    unchecked = config.unchecked_token_claims
    if not unchecked:
        return
    names = " and ".join(unchecked)
    if not config.idp_audience_issuer_optional:
        raise ConfigError(
            f"an identity provider is configured but {names} "
            f"{'is' if len(unchecked) == 1 else 'are'} not set, so tokens it issued to other "
            "applications would be accepted; set them to what its tokens for livesettings "
            "carry, or set LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL=true to accept that"
        )
    log.warning(
        "%s not set (LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL=true): tokens the identity "
        "provider issued to other applications are accepted",
        names,
    )


def load_key_sets(config: Config, *, clock: Clock = SYSTEM_CLOCK) -> list[JwksCache]:
    """The identity providers' JWKS: a file is read now (``ConfigError`` if unusable); a URL
    is fetched when the server starts. ``clock`` times refetches."""
    sets: list[JwksCache] = []
    options = functools.partial(
        JwksCache,
        refresh_interval=config.jwks_refresh_interval,
        max_age=config.jwks_max_age,
        timeout=config.jwks_timeout,
        clock=clock.monotonic,
    )
    if config.jwks_file:
        from_file = options(path=config.jwks_file)
        from_file.load()
        sets.append(from_file)
    if config.jwks_url:
        sets.append(options(url=config.jwks_url))
    return sets


def token_verifier(
    config: Config,
    secret: bytes | None,
    public_keys: list[Any],
    key_sets: list[JwksCache],
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> TokenVerifier:
    """The verifier of ``config``'s claims rules (audience, issuer, leeway, service claim)
    over keys already loaded; ``ConfigError`` when there is no key at all."""
    return TokenVerifier(
        hs256_secret=secret,
        public_keys=public_keys,
        key_sets=key_sets,
        audience=config.jwt_audience,
        issuer=config.jwt_issuer,
        leeway=config.jwt_leeway,
        service_claim=config.idp_service_claim,
        clock=clock,
    )
