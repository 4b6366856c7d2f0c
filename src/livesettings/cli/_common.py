"""What the CLI's commands share: exit codes, configuration, opening the store, fact lines.

Output rules: results on stdout, one fact per line with an ``ok``/``FAIL``/``warn`` marker;
errors on stderr as ``error: …``; colour only when a terminal is attached (click strips the
styles otherwise). Nothing here ever prints key material, the JWT secret or a password.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NoReturn, TypeVar

import click

from ..config import Config
from ..crypto import Keyring
from ..errors import ConfigError, LiveSettingsError, StorageError
from ..store import Store, open_store
from ..store.sqlite import sqlite_path
from ..urls import redact_url

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "KEY_FILE",
    "Report",
    "check_database_file",
    "database_options",
    "existing_keys",
    "exits",
    "fail",
    "load_config",
    "load_keys",
    "make_store",
    "opened_store",
    "ping_ms",
    "plural",
    "progress",
    "redact_url",
    "run",
    "shown_url",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed, or the operation was refused
EXIT_USAGE = 2  # click's own code for a usage error
EXIT_CONFIG = 3
EXIT_UNREACHABLE = 4  # the database (or bus) cannot be reached
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

KEY_FILE = "master.keys"  # the embedded default's generated keyring, in the data dir


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def plural(count: int, word: str) -> str:
    """``"1 data key"``, ``"2 data keys"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def load_config(ctx: click.Context, **overrides: Any) -> Config:
    """The configuration: ``--config`` TOML, ``LIVESETTINGS_*`` variables, then options."""
    try:
        return Config.load(config_file=ctx.obj.get("config_file"), overrides=overrides)
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)


@contextmanager
def exits(*, interrupted: str = "interrupted") -> Iterator[None]:
    """Turn livesettings errors into a message and an exit code: configuration 3, an
    unreachable or failing database 4, anything else 1; Ctrl-C 130."""
    try:
        yield
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)
    except StorageError as exc:
        fail(exc.message, EXIT_UNREACHABLE)
    except LiveSettingsError as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        fail(interrupted, EXIT_INTERRUPTED)


def run(factory: Callable[[], Awaitable[T]], *, interrupted: str = "interrupted") -> T:
    """Run a command's async body under :func:`exits`."""

    async def main() -> T:
        return await factory()

    with exits(interrupted=interrupted):
        return asyncio.run(main())
    raise AssertionError("unreachable")  # mypy: exits() never swallows without exiting


def database_options(command: F) -> F:
    """``--data-dir`` and ``--database-url``, each with its ``LIVESETTINGS_*`` variable."""
    command = click.option(
        "--database-url",
        envvar="LIVESETTINGS_DATABASE_URL",
        help="sqlite:///path or postgresql://… [<data dir>/livesettings.db]",
    )(command)
    command = click.option(
        "--data-dir",
        envvar="LIVESETTINGS_DATA_DIR",
        help="Where the embedded default keeps its files [./livesettings_data].",
    )(command)
    return command


def shown_url(config: Config) -> str:
    """The database URL as it may be printed."""
    return redact_url(config.resolved_database_url)


def load_keys(config: Config) -> Keyring:
    """The master keyring, as the server loads it: the embedded default generates its key
    file (mode 0600) when missing."""
    from ..config_loaders import load_keyring

    return load_keyring(config)


def existing_keys(config: Config) -> Keyring | None:
    """The master keyring, or ``None`` when the embedded default has not generated one yet
    (commands that only read keys must not create them)."""
    if config.master_keys or config.master_key or config.is_postgres:
        return load_keys(config)
    path = config.data_dir / KEY_FILE
    return Keyring.load_or_create_file(path) if path.exists() else None


def make_store(
    config: Config, keyring: Keyring | None, *, admin: bool = False, maintenance: bool = False
) -> Store:
    """An unopened store for the configured database, with only the options its backend
    takes. ``admin`` (``setup`` on PostgreSQL) adds the owner and app connections;
    ``maintenance`` (``keys rotate``) serves as the app role but vacuums as the owner."""
    url = config.resolved_database_url
    kwargs: dict[str, Any] = {
        "keyring": keyring,
        "limits": config.limits,
        "changelog_retain": config.changelog_retain,
    }
    if config.is_postgres:
        if admin:
            kwargs["admin_url"] = config.admin_database_url
            kwargs["app_url"] = url
            url = config.admin_database_url or url
        elif maintenance and config.admin_database_url:
            kwargs["admin_url"] = config.admin_database_url
    else:
        kwargs["synchronous"] = config.sqlite_synchronous
    try:
        return open_store(url, **kwargs)
    except ImportError as exc:
        raise ConfigError(
            f"the PostgreSQL backend is not available in this installation ({exc}); "
            "install livesettings[postgres]"
        ) from exc


def check_database_file(config: Config) -> None:
    """``StorageError`` naming the file and the fix when the SQLite database is missing."""
    # The store would only say "unable to open database file".
    if config.is_postgres:
        return
    path = sqlite_path(config.resolved_database_url)
    if not path.exists():
        raise StorageError(
            f"the SQLite database {path} does not exist; run `livesettings setup` first"
        )


@asynccontextmanager
async def opened_store(
    config: Config, keyring: Keyring | None, *, setup: bool = False, maintenance: bool = False
) -> AsyncIterator[Store]:
    """The store, opened (schema checked), closed on exit.

    ``setup=True`` creates the embedded SQLite database first, as ``serve`` does; PostgreSQL
    is never set up implicitly (``setup`` runs as the owner).
    """
    store = make_store(config, keyring, maintenance=maintenance)
    try:
        if setup and not config.is_postgres:
            await store.setup()
        else:
            check_database_file(config)
        await store.open()
        yield store
    finally:
        await store.close()


async def ping_ms(store: Store, rounds: int = 5) -> tuple[float, float]:
    """Median and slowest round trip of ``store.ping()`` in milliseconds, after a warm-up."""
    await store.ping()
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        await store.ping()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


class Report:
    """Prints one fact per line with a marker, and decides the exit code at the end."""

    _MARKERS = {"ok": "green", "FAIL": "red", "warn": "yellow", "-": None}

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def _line(self, marker: str, label: str, value: object) -> None:
        styled = click.style(marker.ljust(4), fg=self._MARKERS[marker], bold=marker == "FAIL")
        click.echo(f"{styled} {label}: {value}")

    def ok(self, label: str, value: object) -> None:
        """A check that passed."""
        self.passed += 1
        self._line("ok", label, value)

    def fail(self, label: str, value: object) -> None:
        """A check that failed: the command exits 1 at :meth:`finish`."""
        self.failed.append(label)
        self._line("FAIL", label, value)

    def warn(self, label: str, value: object) -> None:
        """Worth knowing, not a failure."""
        self._line("warn", label, value)

    def fact(self, label: str, value: object) -> None:
        """A plain fact."""
        self._line("-", label, value)

    def finish(self, command: str) -> None:
        """Exit 1 naming the failed checks, or print that every check passed."""
        if self.failed:
            fail(
                f"{command}: {plural(len(self.failed), 'check')} failed: " + ", ".join(self.failed)
            )
        click.secho(f"{command}: {plural(self.passed, 'check')} passed", fg="green")


@contextmanager
def progress(label: str, length: int | None) -> Iterator[Callable[[int], None]]:
    """An ``advance(n)`` callback drawing progress on stderr when it is a terminal.

    A bar when the total is known, a running count otherwise; nothing at all when stderr
    is a file or a pipe, so scripts and logs stay clean.
    """
    stream = sys.stderr
    if not stream.isatty():
        yield lambda n: None
        return
    if length:
        with click.progressbar(length=length, label=label, file=stream) as bar:
            yield bar.update
        return
    count = 0
    shown_at = 0.0

    def advance(n: int) -> None:
        nonlocal count, shown_at
        count += n
        now = time.monotonic()
        if now - shown_at >= 0.1:
            shown_at = now
            stream.write(f"\r{label}: {count}")
            stream.flush()

    try:
        yield advance
    finally:
        stream.write(f"\r{label}: {count}\n")
        stream.flush()
