"""What verifies tokens: ``check-auth``, and the key lookups ``verify`` shares.

Unlike the server's ``load_signing``, nothing here generates a secret: a check must not
create the file it checks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

import click
import jwt

from ..auth import TokenVerifier, load_or_create_jwt_secret
from ..config import Config
from ..config_loaders import read_jwt_public_key, token_verifier
from ..errors import ConfigError, TokenExpired, Unauthorized
from ..jwks import JwksCache
from ._common import Report, exits, load_config, plural

__all__ = ["JWT_SECRET_FILE", "PEM_SOURCE", "check_auth", "hs256_secret", "public_keys"]

JWT_SECRET_FILE: Final = "jwt.secret"  # the embedded default's generated HS256 secret
PEM_SOURCE: Final = "LIVESETTINGS_JWT_PUBLIC_KEY"


def hs256_secret(config: Config) -> tuple[bytes | None, str]:
    """The HS256 secret, if there is one, and where it comes from (or why there is none)."""
    if config.jwt_secret:
        return config.jwt_secret.encode(), "LIVESETTINGS_JWT_SECRET"
    if config.is_postgres:
        return None, "not configured"
    path = config.data_dir / JWT_SECRET_FILE
    if path.exists():
        return load_or_create_jwt_secret(path), f"file {path}"
    if config.external_auth:
        return None, "not configured (identity provider only; no built-in users)"
    return None, f"not generated yet; `livesettings setup` or `serve` creates {path}"


def public_keys(config: Config) -> list[tuple[str, Any]]:
    """``(source, key)`` for the PEM public key and each usable key of the JWKS file.

    ``ConfigError`` when one cannot be read. A JWKS URL is not fetched here.
    """
    keys: list[tuple[str, Any]] = []
    pem = read_jwt_public_key(config)
    if pem is not None:
        keys.append((PEM_SOURCE, pem))
    if config.jwks_file:
        from_file = JwksCache(path=config.jwks_file)
        from_file.load()
        keys += [(f"JWKS file {config.jwks_file}", key) for key in from_file.keys]
    return keys


@click.command("check-auth")
@click.option("--token", help="A token to check: accepted or why not, its user, role, expiry.")
@click.option("--data-dir", envvar="LIVESETTINGS_DATA_DIR", help="Where generated secrets live.")
@click.pass_context
def check_auth(ctx: click.Context, token: str | None, data_dir: str | None) -> None:
    """Show how tokens are verified (fetching the JWKS); check one with --token."""
    config = load_config(ctx, data_dir=data_dir)
    report = Report()
    with exits():
        verifier = _modes(report, config)
    if token is not None:
        _check_token(report, verifier, token.strip())
    report.finish("check-auth")


def _modes(report: Report, config: Config) -> TokenVerifier | None:
    secret, source = hs256_secret(config)
    if secret is not None:
        report.ok("HS256 secret", f"{source} (built-in users, `token issue`)")
    elif config.is_postgres:
        report.fact("HS256 secret", "not configured (no built-in users)")
    elif config.external_auth:
        report.fact("HS256 secret", source)
    else:
        report.warn("HS256 secret", source)
    pem: list[Any] = [key for where, key in public_keys(config) if where == PEM_SOURCE]
    report.fact("public key", PEM_SOURCE if pem else "not configured")
    key_sets: list[JwksCache] = []
    if config.jwks_file:
        from_file = JwksCache(path=config.jwks_file)
        from_file.load()  # public_keys() above has read it once: a ConfigError came there
        report.fact("JWKS file", f"{config.jwks_file} ({plural(len(from_file.keys), 'key')})")
        _skipped(report, "JWKS file", from_file)
        key_sets.append(from_file)
    if config.jwks_url:
        fetched = JwksCache(url=config.jwks_url, timeout=config.jwks_timeout)
        try:
            fetched.load()
        except ConfigError as exc:
            report.fail("JWKS URL", exc.message)
        else:
            report.ok("JWKS URL", f"{config.jwks_url} ({plural(len(fetched.keys), 'key')})")
            _skipped(report, "JWKS URL", fetched)
            key_sets.append(fetched)
        report.fact(
            "JWKS refetch",
            f"on an unknown key id, at most every {config.jwks_refresh_interval:g} s; "
            f"every {config.jwks_max_age:g} s in any case",
        )
    if not config.jwks_file and not config.jwks_url:
        report.fact("JWKS", "not configured")
    _audience_issuer(report, config)
    service = "built-in service tokens (`token issue --service`)"
    if config.idp_service_claim:
        service += f"; identity provider tokens with {config.idp_service_claim}"
    report.fact("service access", service)
    if config.jwt_leeway:
        report.fact("leeway", f"{config.jwt_leeway} s of clock skew on exp and nbf")
    if secret is None and not pem and not any(k.keys for k in key_sets):
        report.fail("verification", "no JWT secret or public key is configured")
        return None
    try:
        verifier = token_verifier(config, secret, pem, key_sets)
    except ConfigError as exc:
        report.fail("verification", exc.message)
        return None
    report.ok("algorithms", ", ".join(verifier.algorithms))
    return verifier


def _skipped(report: Report, label: str, key_set: JwksCache) -> None:
    for why in key_set.skipped:
        report.warn(label, f"skipped {why}")


def _audience_issuer(report: Report, config: Config) -> None:
    """Unchecked with an identity provider: serve refuses to start, unless waived."""
    unchecked = config.unchecked_token_claims
    for label, name in (("audience", "jwt_audience"), ("issuer", "jwt_issuer")):
        value = getattr(config, name)
        setting = f"LIVESETTINGS_{name.upper()}"
        if value:
            report.fact(label, value)
        elif setting not in unchecked:
            report.fact(label, "not checked")
        elif config.idp_audience_issuer_optional:
            report.warn(
                label,
                "not checked (LIVESETTINGS_IDP_AUDIENCE_ISSUER_OPTIONAL): tokens the identity "
                "provider issued to other applications are accepted",
            )
        else:
            report.fail(
                label,
                f"not set: serve refuses to start with an identity provider until {setting} is set",
            )


def _check_token(report: Report, verifier: TokenVerifier | None, token: str) -> None:
    if verifier is None:
        report.fail("token", "cannot be checked: no key to verify it with")
        return
    try:
        claims = verifier.verify(token)
    except TokenExpired as exc:
        report.fail("token", exc.message)
        return
    except Unauthorized as exc:
        report.fail("token", f"refused: {exc.message}")
        return
    report.ok("token", f"accepted ({jwt.get_unverified_header(token).get('alg')})")
    report.fact("user id", claims.sub)
    report.fact("role", claims.role or "none (a user token)")
    report.fact("service access", "yes" if claims.is_service else "no")
    report.fact("jti", claims.jti or "none (cannot be revoked by jti)")
    expires = datetime.fromtimestamp(claims.exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report.fact("expires", f"{expires} (in {_duration(claims.exp - time.time())})")


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 120:
        return plural(whole, "second")
    if whole < 7200:
        return plural(whole // 60, "minute")
    if whole < 2 * 86400:
        return plural(whole // 3600, "hour")
    return plural(whole // 86400, "day")
