"""Running and checking a deployment: ``serve``, ``setup``, ``verify``, ``check-db``,
``check-auth``."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import click

from ..auth import TokenVerifier, load_or_create_jwt_secret
from ..bus import BusEvent
from ..config import Config
from ..crypto import (
    Keyring,
    new_data_key,
    open_secret,
    seal_secret,
    unwrap_data_key,
    wrap_data_key,
)
from ..document import is_sealed
from ..errors import ConfigError, CryptoError, LiveSettingsError, TokenExpired, Unauthorized
from ..keys import missing_master_keys
from ..store import SCHEMA_VERSION, Store
from ._common import (
    KEY_FILE,
    Report,
    check_database_file,
    database_options,
    exits,
    keyring_for,
    load_config,
    make_store,
    ping_ms,
    plural,
    redact_url,
    run,
    shown_url,
)

__all__ = ["check_auth", "check_db", "serve", "setup", "verify"]

JWT_SECRET_FILE: Final = "jwt.secret"  # the embedded default's generated HS256 secret
_SAMPLE: Final = 200  # stored data keys looked at by verify's decrypt probe
_PROBE_USER: Final = "livesettings-verify-probe"
_BUS_TIMEOUT: Final = 5.0
_SLOW_MS: Final = 50.0


@click.command()
@click.option("--host", envvar="LIVESETTINGS_HOST", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, envvar="LIVESETTINGS_PORT", help="Port to listen on [8000].")
@database_options
@click.option("--bus-url", envvar="LIVESETTINGS_BUS_URL", help="memory://, postgres or redis://…")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    data_dir: str | None,
    database_url: str | None,
    bus_url: str | None,
) -> None:
    """Run the server (HTTP, WebSocket, SSE) and print the settings page's URL."""
    config = load_config(
        ctx, host=host, port=port, data_dir=data_dir, database_url=database_url, bus_url=bus_url
    )
    from ..serve import run_server  # uvicorn and the app only for this command

    with exits():
        code = run_server(config)
    sys.exit(code)


@click.command()
@database_options
@click.option(
    "--admin-database-url",
    envvar="LIVESETTINGS_ADMIN_DATABASE_URL",
    help="PostgreSQL: the owner connection setup runs as.",
)
@click.pass_context
def setup(
    ctx: click.Context,
    data_dir: str | None,
    database_url: str | None,
    admin_database_url: str | None,
) -> None:
    """Create or upgrade the schema, functions, policies and roles (idempotent)."""
    config = load_config(
        ctx, data_dir=data_dir, database_url=database_url, admin_database_url=admin_database_url
    )

    async def go() -> tuple[list[str], Keyring]:
        # The keyring first: adopting a seed table seals its plaintext API keys.
        keyring = keyring_for(config, create=True)
        assert keyring is not None
        if not config.is_postgres and not config.jwt_secret:
            load_or_create_jwt_secret(config.data_dir / JWT_SECRET_FILE)
        store = make_store(config, keyring, admin=True)
        try:
            return await store.setup(), keyring
        finally:
            await store.close()

    lines, keyring = run(go)
    for line in lines:
        click.echo(line)
    click.echo(f"master keys: {keyring.describe()}")
    click.secho(f"setup complete: schema version {SCHEMA_VERSION}", fg="green")


@click.command()
@database_options
@click.pass_context
def verify(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """Check schema, durability, keys and bus; exit 1 naming any check that fails."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    report = Report()
    run(lambda: _verify(config, report))
    report.finish("verify")


async def _verify(config: Config, report: Report) -> None:
    keyring = keyring_for(config, create=False)
    store = make_store(config, keyring)
    try:
        check_database_file(config)
        await store.ping()
        report.ok("database", shown_url(config))
        if not _check_schema(report, await store.schema_version()):
            return
        await store.open()
        info = await store.info()
        if info.get("backend") == "sqlite":
            _check_sqlite(report, config, info)
        _report_checks(report, info)
        await _check_keys(report, config, store, keyring)
    finally:
        await store.close()
    _check_token_keys(report, config)
    await _check_bus(report, config)


def _check_schema(report: Report, version: int | None) -> bool:
    if version is None:
        report.fail("schema version", "no livesettings schema; run `livesettings setup`")
    elif version < SCHEMA_VERSION:
        report.fail(
            "schema version",
            f"{version}, older than {SCHEMA_VERSION}; run `livesettings setup` to upgrade",
        )
    elif version > SCHEMA_VERSION:
        report.fail(
            "schema version",
            f"{version}, newer than this livesettings understands ({SCHEMA_VERSION})",
        )
    else:
        report.ok("schema version", version)
        return True
    return False


def _check_sqlite(report: Report, config: Config, info: dict[str, Any]) -> None:
    mode = str(info.get("journal_mode", "")).lower()
    if mode == "wal":
        report.ok("journal mode", "wal")
    else:
        report.fail("journal mode", f"{mode} (expected wal; run `livesettings setup`)")
    sync = str(info.get("synchronous", "")).upper()
    if sync != config.sqlite_synchronous:
        report.fail("synchronous", f"{sync} (expected {config.sqlite_synchronous})")
    elif sync in ("FULL", "EXTRA"):
        report.ok("synchronous", sync)
    else:
        report.warn(
            "synchronous",
            f"{sync} (LIVESETTINGS_SQLITE_SYNCHRONOUS; a power cut may lose the last commits)",
        )


def _report_checks(report: Report, info: dict[str, Any]) -> None:
    """A backend's own checks (PostgreSQL: triggers, RLS, roles) from ``info()["checks"]``:
    ``{label: bool | [bool, detail] | {"ok": bool, "detail": str}}``."""
    checks = info.get("checks")
    if not isinstance(checks, dict):
        return
    for label, value in checks.items():
        passed, detail = value, "yes" if value else "no"
        if isinstance(value, list | tuple) and len(value) == 2:
            passed, detail = value
        elif isinstance(value, dict):
            passed, detail = value.get("ok"), value.get("detail", "")
        (report.ok if passed is True else report.fail)(str(label), detail)


async def _check_keys(
    report: Report, config: Config, store: Store, keyring: Keyring | None
) -> None:
    counts = await store.count_wrapped_keys()
    total = sum(counts.values())
    if keyring is None:
        if total:
            report.fail(
                "master keys",
                f"none configured, yet {plural(total, 'data key')} are stored; "
                "set LIVESETTINGS_MASTER_KEYS",
            )
        else:
            path = config.data_dir / KEY_FILE
            report.warn("master keys", f"none yet; `livesettings setup` creates {path}")
        return
    report.ok("master keys", keyring.describe())
    if counts:
        report.fact("data keys", ", ".join(f"{key_id}: {n}" for key_id, n in counts.items()))
    for key_id, n in missing_master_keys(counts, keyring).items():
        report.fail(
            "data keys", f"{plural(n, 'data key')} wrapped by {key_id!r}, which is not in the ring"
        )
    await _decrypt_probe(report, store, keyring)
    active = keyring.active.id
    old = sum(n for key_id, n in counts.items() if key_id != active and key_id in keyring.ids)
    if old:
        report.warn(
            "rotation",
            f"{plural(old, 'data key')} not yet under {active}; run `livesettings keys rotate`",
        )


async def _decrypt_probe(report: Report, store: Store, keyring: Keyring) -> None:
    """Seal and open a probe under the active key, then unwrap one stored data key per
    master key (and open one of its user's secrets)."""
    key = unwrap_data_key(keyring, _PROBE_USER, wrap_data_key(keyring, _PROBE_USER, new_data_key()))
    probe = seal_secret(_PROBE_USER, "probe", "probe-value", key, now_ms=0)
    if open_secret(_PROBE_USER, "probe", probe, key) != "probe-value":
        report.fail("decrypt probe", f"a probe sealed under {keyring.active.id} did not open")
        return
    unwrapped = opened = 0
    seen: set[str] = set()
    # "" is no master key id, so this is a sample of every stored key, in user id order.
    for user_id, wrapped in await store.wrapped_keys_not_under("", _SAMPLE):
        if wrapped.master_key_id in seen or wrapped.master_key_id not in keyring.ids:
            continue
        seen.add(wrapped.master_key_id)
        try:
            data_key = unwrap_data_key(keyring, user_id, wrapped)
            unwrapped += 1
            secrets_ = (await store.get_document(user_id)).settings.get("api_keys") or {}
            for name, envelope in secrets_.items():
                if is_sealed(envelope):
                    open_secret(user_id, name, envelope, data_key)
                    opened += 1
                    break
        except CryptoError as exc:
            report.fail("decrypt probe", f"user {user_id}: {exc.message}")
            return
    report.ok(
        "decrypt probe",
        f"{keyring.active.id} seals and opens; {plural(unwrapped, 'stored data key')} "
        f"unwrapped, {plural(opened, 'secret')} opened",
    )


def _check_token_keys(report: Report, config: Config) -> None:
    try:
        secret, source = _hs256_secret(config)
        public = _public_keys(config)
        described = [f"HS256 secret ({source})"] if secret is not None else []
        described += list(dict.fromkeys(label for label, _ in public))
        if secret is not None or public:
            TokenVerifier(hs256_secret=secret, public_keys=[key for _, key in public])
    except ConfigError as exc:
        report.fail("token keys", exc.message)
        return
    if config.jwks_url:
        described.append(f"JWKS {config.jwks_url}")
    if described:
        report.ok("token keys", ", ".join(described))
    elif config.is_postgres:
        report.fail("token keys", "none; set LIVESETTINGS_JWT_SECRET or a public key")
    else:
        report.warn("token keys", source)


async def _check_bus(report: Report, config: Config) -> None:
    url = config.resolved_bus_url
    if url.startswith("memory:"):
        report.fact("bus", "memory:// (in-process, one worker)")
        return
    from ..bus import open_bus

    try:
        bus = open_bus(url, database_url=config.resolved_database_url)
    except ImportError as exc:
        report.fail("bus", f"{redact_url(url)}: its backend is not installed ({exc})")
        return
    probe = f"{_PROBE_USER}-{secrets.token_hex(4)}"
    heard = asyncio.Event()

    def on_events(events: Sequence[BusEvent]) -> None:
        if any(event.user_id == probe for event in events):
            heard.set()

    try:
        await bus.start(on_events, lambda: None)
        start = time.perf_counter()
        await bus.publish([BusEvent(probe, 0)])
        await asyncio.wait_for(heard.wait(), _BUS_TIMEOUT)
        ms = (time.perf_counter() - start) * 1000
        report.ok("bus", f"{redact_url(url)} (publish round trip {ms:.1f} ms)")
    except TimeoutError:
        report.fail("bus", f"{redact_url(url)}: a published probe was not heard within 5 s")
    except (LiveSettingsError, OSError) as exc:
        report.fail("bus", f"{redact_url(url)}: {exc}")
    finally:
        await bus.close()


@click.command("check-db")
@database_options
@click.pass_context
def check_db(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """Check that the database answers: version, round-trip latency, pool facts."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    report = Report()
    run(lambda: _check_db(config, report))
    report.finish("check-db")


async def _check_db(config: Config, report: Report) -> None:
    store = make_store(config, None)
    try:
        check_database_file(config)
        median, slowest = await ping_ms(store)
        report.ok("connection", shown_url(config))
        info = await store.info()
    finally:
        await store.close()
    version = info.get("server_version")
    if version is None and "sqlite_version" in info:
        version = f"SQLite {info['sqlite_version']}"
    report.ok("server", version or info.get("backend", "unknown"))
    latency = f"{median:.2f} ms (median of 5, slowest {slowest:.2f} ms)"
    if median > _SLOW_MS:
        report.warn("round trip", latency)
    else:
        report.ok("round trip", latency)
    for key, value in info.items():
        if key in ("server_version", "sqlite_version", "checks"):
            continue
        shown = redact_url(value) if isinstance(value, str) else value
        report.fact(key.replace("_", " "), "none" if shown is None else shown)


@click.command("check-auth")
@click.option("--token", help="A token to check: accepted or why not, its user, role, expiry.")
@click.option("--data-dir", envvar="LIVESETTINGS_DATA_DIR", help="Where generated secrets live.")
@click.pass_context
def check_auth(ctx: click.Context, token: str | None, data_dir: str | None) -> None:
    """Show how tokens are verified, and check one with --token."""
    config = load_config(ctx, data_dir=data_dir)
    report = Report()
    with exits():
        verifier = _auth_modes(report, config)
    if token is not None:
        _check_token(report, verifier, token)
    report.finish("check-auth")


def _auth_modes(report: Report, config: Config) -> TokenVerifier | None:
    secret, source = _hs256_secret(config)
    if secret is not None:
        report.ok("HS256 secret", f"{source} (built-in users, `token issue`)")
    elif config.is_postgres:
        report.fact("HS256 secret", "not configured (no built-in users)")
    else:
        report.warn("HS256 secret", source)
    public = _public_keys(config)
    pem = any(not label.startswith("JWKS") for label, _ in public)
    report.fact("public key", "LIVESETTINGS_JWT_PUBLIC_KEY" if pem else "not configured")
    from_file = sum(label.startswith("JWKS") for label, _ in public)
    if config.jwks_file:
        report.fact("JWKS file", f"{config.jwks_file} ({plural(from_file, 'key')})")
    if config.jwks_url:
        try:
            fetched = _fetch_jwks(config.jwks_url)
        except ConfigError as exc:
            report.fail("JWKS URL", exc.message)
        else:
            report.ok("JWKS URL", f"{config.jwks_url} ({plural(len(fetched), 'key')})")
            public += [(f"JWKS {config.jwks_url}", key) for key in fetched]
    if not config.jwks_file and not config.jwks_url:
        report.fact("JWKS", "not configured")
    report.fact("audience", config.jwt_audience or "not checked")
    report.fact("issuer", config.jwt_issuer or "not checked")
    if secret is None and not public:
        report.fail("verification", "no JWT secret or public key is configured")
        return None
    try:
        verifier = TokenVerifier(
            hs256_secret=secret,
            public_keys=[key for _, key in public],
            audience=config.jwt_audience,
            issuer=config.jwt_issuer,
        )
    except ConfigError as exc:
        report.fail("verification", exc.message)
        return None
    report.ok("algorithms", ", ".join(verifier.algorithms))
    return verifier


def _check_token(report: Report, verifier: TokenVerifier | None, token: str) -> None:
    if verifier is None:
        report.fail("token", "cannot be checked: no key to verify it with")
        return
    try:
        claims = verifier.verify(token.strip())
    except TokenExpired as exc:
        report.fail("token", exc.message)
        return
    except Unauthorized as exc:
        report.fail("token", f"refused: {exc.message}")
        return
    header_alg = _token_alg(token)
    report.ok("token", f"accepted ({header_alg})")
    report.fact("user id", claims.sub)
    report.fact("role", claims.role or "none (a user token)")
    expires = datetime.fromtimestamp(claims.exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report.fact("expires", f"{expires} (in {_duration(claims.exp - time.time())})")


def _token_alg(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token.strip()).get("alg"))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return plural(seconds, "second")
    if seconds < 7200:
        return plural(seconds // 60, "minute")
    if seconds < 2 * 86400:
        return plural(seconds // 3600, "hour")
    return plural(seconds // 86400, "day")


def _hs256_secret(config: Config) -> tuple[bytes | None, str]:
    """The HS256 secret and where it comes from, without generating one (unlike the
    server's ``load_signing``: a check must not create the file it checks)."""
    if config.jwt_secret:
        return config.jwt_secret.encode(), "LIVESETTINGS_JWT_SECRET"
    if config.is_postgres:
        return None, "not configured"
    path = config.data_dir / JWT_SECRET_FILE
    if path.exists():
        return load_or_create_jwt_secret(path), f"file {path}"
    return None, f"not generated yet; `livesettings setup` or `serve` creates {path}"


def _public_keys(config: Config) -> list[tuple[str, Any]]:
    """The configured public keys with a label each: the PEM key, the JWKS file's keys."""
    keys: list[tuple[str, Any]] = []
    if config.jwt_public_key:
        text = config.jwt_public_key
        if not text.lstrip().startswith("-----BEGIN"):
            try:
                with open(text, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ConfigError(f"cannot read LIVESETTINGS_JWT_PUBLIC_KEY: {exc}") from exc
        keys.append(("public key (LIVESETTINGS_JWT_PUBLIC_KEY)", text))
    if config.jwks_file:
        keys += [(f"JWKS file {config.jwks_file}", key) for key in _jwks_file(config.jwks_file)]
    return keys


def _jwks_file(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            found = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read LIVESETTINGS_JWKS_FILE: {exc}") from exc
    keys = found.get("keys") if isinstance(found, dict) else None
    if not isinstance(keys, list):
        raise ConfigError('LIVESETTINGS_JWKS_FILE holds no "keys" list')
    return keys


def _fetch_jwks(url: str) -> list[Any]:
    import httpx

    try:
        response = httpx.get(url, timeout=_BUS_TIMEOUT, follow_redirects=False)
        response.raise_for_status()
        keys = response.json().get("keys")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot fetch {url}: {exc}") from exc
    if not isinstance(keys, list):
        raise ConfigError(f'{url} serves no "keys" list')
    return keys
