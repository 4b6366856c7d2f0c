"""Running and checking a deployment: ``serve``, ``setup``, ``verify``, ``check-db``."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
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
from ..errors import ConfigError, CryptoError, LiveSettingsError
from ..keys import missing_master_keys
from ..store import SCHEMA_VERSION, Store
from ..store.migrations import SERVES_NEWER, pending_migrations
from ..store.pg_triggers import SqlWriteStatus, sql_write_status
from ._common import (
    EXIT_CONFIG,
    KEY_FILE,
    Report,
    check_database_file,
    database_options,
    existing_keys,
    exits,
    fail,
    load_config,
    load_keys,
    make_store,
    ping_ms,
    plural,
    redact_url,
    run,
    shown_url,
)
from .signing import JWT_SECRET_FILE, PEM_SOURCE, hs256_secret, public_keys

__all__ = ["check_db", "serve", "setup", "verify"]

_SQL_BACKLOG_S: Final = 60.0
"""A write made in SQL waiting longer than this means no node applies the queue."""

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
    """Run the server and print the settings page's URL.

    HTTP, WebSocket and SSE on one port; SIGTERM drains the sockets and stops.
    """
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
@click.option(
    "--sql-writer",
    metavar="ROLE",
    envvar="LIVESETTINGS_SQL_WRITER",
    help="PostgreSQL: let this existing role write user_preferences in SQL (confined to the "
    "user named by livesettings.user_id; its writes are pushed live).",
)
@click.pass_context
def setup(
    ctx: click.Context,
    data_dir: str | None,
    database_url: str | None,
    admin_database_url: str | None,
    sql_writer: str | None,
) -> None:
    """Create or upgrade the schema (idempotent).

    SQLite: the database file and the generated key files. PostgreSQL: tables, triggers,
    functions, policies and the app role, run as LIVESETTINGS_ADMIN_DATABASE_URL.
    """
    config = load_config(
        ctx, data_dir=data_dir, database_url=database_url, admin_database_url=admin_database_url
    )
    if sql_writer is not None and not config.is_postgres:
        fail(
            "--sql-writer needs PostgreSQL: the embedded SQLite database has no SQL writers",
            EXIT_CONFIG,
        )

    async def go() -> tuple[list[str], Keyring]:
        # The keyring first: adopting a seed table seals its plaintext API keys.
        keyring = load_keys(config)
        # Built-in users get a generated secret unless an identity provider is configured.
        if not config.is_postgres and not config.jwt_secret and not config.external_auth:
            load_or_create_jwt_secret(config.data_dir / JWT_SECRET_FILE)
        store = make_store(config, keyring, admin=True)
        try:
            if sql_writer is None:
                return await store.setup(), keyring
            from ..store.postgres import PostgresStore  # the driver only for PostgreSQL

            assert isinstance(store, PostgresStore)
            return await store.setup(sql_writer=sql_writer), keyring
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
    """Check schema, durability, keys and bus; exit 1 on a failure."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    _report_checks(config, _verify, "verify")


def _report_checks(
    config: Config, checks: Callable[[Config, Report], Awaitable[None]], command: str
) -> None:
    """Run ``checks`` into a fresh report; exit 1 when one of them failed."""
    report = Report()
    run(lambda: checks(config, report))
    report.finish(command)


async def _verify(config: Config, report: Report) -> None:
    keyring = existing_keys(config)
    store = make_store(config, keyring)
    try:
        check_database_file(config)
        # Reading the version needs no open pool: it doubles as the connectivity check.
        version = await store.schema_version()
        if version is not None and version < SCHEMA_VERSION:
            # Reachable, but open() would refuse it: say which migrations are pending.
            report.ok("database", shown_url(config))
            _check_schema(report, config, version)
            return
        try:
            await store.open()
        except ConfigError as exc:
            # The store says best what is wrong: no schema yet, or (PostgreSQL) an app role
            # that is a superuser, has BYPASSRLS or owns the tables.
            report.fail("database", exc.message)
            return
        report.ok("database", shown_url(config))
        if not _check_schema(report, config, version):
            return
        info = await store.info()
        if info.get("backend") == "sqlite":
            _check_sqlite(report, config, info)
        else:
            _check_postgres(report, info)
            _check_sql_writes(report, await sql_write_status(store))
        await _check_notify(report, store)
        await _check_keys(report, config, store, keyring)
    finally:
        await store.close()
    _check_token_keys(report, config)
    await _check_bus(report, config)


def _check_sql_writes(report: Report, status: SqlWriteStatus | None) -> None:
    """PostgreSQL: the trigger that queues writes made in SQL, and that queue's backlog."""
    if status is None:
        return
    if status.trigger_present:
        report.ok("SQL-write trigger", "on user_preferences, enabled")
    else:
        report.fail(
            "SQL-write trigger",
            "missing or disabled on user_preferences: writes made in SQL are not pushed; "
            "run `livesettings setup`",
        )
    age = status.oldest_age_s
    if status.pending == 0 or age is None:
        report.ok("SQL-write queue", "empty")
    elif age > _SQL_BACKLOG_S:
        report.warn(
            "SQL-write queue",
            f"{plural(status.pending, 'write')} waiting, the oldest for {age:.0f} s: "
            "is a livesettings node running?",
        )
    else:
        report.ok("SQL-write queue", f"{plural(status.pending, 'write')} being applied")


def _pending(config: Config, version: int | None) -> str:
    """The migrations a database at ``version`` lacks, as ``migrate`` would apply them."""
    return ", ".join(pending_migrations("postgres" if config.is_postgres else "sqlite", version))


def _check_schema(report: Report, config: Config, version: int | None) -> bool:
    """The schema version against the compatibility rule (store.migrations): this release's
    passes; the next one's (a rolling upgrade under way) is a warning; others fail."""
    if version is None:
        report.fail("schema version", "no livesettings schema; run `livesettings setup`")
    elif version < SCHEMA_VERSION:
        report.fail(
            "schema version",
            f"{version}, older than {SCHEMA_VERSION}; pending migrations: "
            f"{_pending(config, version)}; run `livesettings migrate`",
        )
    elif version > SCHEMA_VERSION + SERVES_NEWER:
        report.fail(
            "schema version",
            f"{version}; this livesettings (schema {SCHEMA_VERSION}) serves {SCHEMA_VERSION} "
            f"and {SCHEMA_VERSION + SERVES_NEWER} only; upgrade livesettings",
        )
    elif version > SCHEMA_VERSION:
        report.warn(
            "schema version",
            f"{version}, newer than this livesettings ({SCHEMA_VERSION}): served as during a "
            "rolling upgrade; upgrade this node",
        )
        return True
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


def _check_postgres(report: Report, info: dict[str, Any]) -> None:
    """The row-level security facts of DESIGN §6, from the PostgreSQL store's ``info()``."""
    role = info.get("role", "?")
    problems = [
        what
        for key, what in (
            ("role_superuser", "is a superuser"),
            ("role_bypassrls", "has BYPASSRLS"),
            ("role_owns_tables", "owns the tables"),
        )
        if info.get(key)
    ]
    if problems:
        report.fail("app role", f"{role} {', '.join(problems)}")
    else:
        report.ok("app role", f"{role} (no superuser, no BYPASSRLS, owns no table)")
    rls: dict[str, dict[str, Any]] = info.get("rls") or {}
    weak = sorted(t for t, f in rls.items() if not (f.get("enabled") and f.get("forced")))
    if not rls:
        report.fail("row-level security", "no livesettings table found")
    elif weak:
        report.fail("row-level security", f"not enabled and forced on {', '.join(weak)}")
    else:
        report.ok("row-level security", f"enabled and forced on {plural(len(rls), 'table')}")
    functions: dict[str, dict[str, Any]] = info.get("definer_functions") or {}
    loose = sorted(
        name
        for name, facts in functions.items()
        if not facts.get("security_definer")
        or not any(str(c).startswith("search_path=") for c in facts.get("config") or ())
    )
    if loose:
        report.fail("definer functions", f"without a fixed search_path: {', '.join(loose)}")
    elif functions:
        report.ok(
            "definer functions",
            f"{plural(len(functions), 'function')}, each SECURITY DEFINER with a fixed search_path",
        )
    sync = info.get("synchronous_commit")
    if sync == "on":
        report.ok("synchronous commit", sync)
    elif sync is not None:
        report.warn("synchronous commit", f"{sync} (a crash may lose the last commits)")


async def _check_notify(report: Report, store: Store) -> None:
    # Not part of the Store protocol: only a backend with LISTEN/NOTIFY has it.
    probe = getattr(store, "notify_round_trip", None)
    if probe is None:
        return
    try:
        seconds = float(await probe())
    except LiveSettingsError as exc:
        report.fail("NOTIFY round trip", exc.message)
    else:
        report.ok("NOTIFY round trip", f"{seconds * 1000:.1f} ms")


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
        secret, source = hs256_secret(config)
        keys = public_keys(config)
        if secret is not None or keys:
            TokenVerifier(hs256_secret=secret, public_keys=[key for _, key in keys])
    except ConfigError as exc:
        report.fail("token keys", exc.message)
        return
    described = [f"HS256 secret ({source})"] if secret is not None else []
    described += [f"public key ({PEM_SOURCE})" for s, _ in keys if s == PEM_SOURCE]
    if config.jwks_file:
        in_file = sum(s != PEM_SOURCE for s, _ in keys)
        described.append(f"JWKS file {config.jwks_file} ({plural(in_file, 'key')})")
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
    """Check the database: version, round trip, pool facts."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    _report_checks(config, _check_db, "check-db")


async def _check_db(config: Config, report: Report) -> None:
    store = make_store(config, None)
    try:
        check_database_file(config)
        # Connects without the pool: unreachable → exit 4.
        schema_version = await store.schema_version()
        report.ok("connection", shown_url(config))
        try:
            await store.open()
        except ConfigError as exc:
            report.fail("open", exc.message)
            if schema_version is not None and schema_version < SCHEMA_VERSION:
                report.fact("pending migrations", _pending(config, schema_version))
            return
        median, slowest = await ping_ms(store)
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
        if key in ("server_version", "sqlite_version"):
            continue
        if isinstance(value, dict):
            if key == "pool":  # verify reports the other structured facts
                facts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
                report.fact("pool", facts)
            continue
        shown = redact_url(value) if isinstance(value, str) else value
        report.fact(key.replace("_", " "), "none" if shown is None else shown)
