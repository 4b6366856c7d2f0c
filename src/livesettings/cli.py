"""The ``livesettings`` command line (DESIGN §8).

Exit codes: 0 success, 1 a check failed or the operation was refused, 2 usage error (click),
3 configuration error, 4 the database or bus is unreachable.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from . import __version__
from .config import Config
from .errors import ConfigError, LiveSettingsError, StorageError

__all__ = ["cli", "main"]

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_CONFIG = 3
EXIT_UNREACHABLE = 4


def _load(ctx: click.Context, **overrides: Any) -> Config:
    try:
        return Config.load(config_file=ctx.obj.get("config_file"), overrides=overrides)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except ConfigError as exc:
        _fail(exc.message, EXIT_CONFIG)
    except StorageError as exc:
        _fail(exc.message, EXIT_UNREACHABLE)
    except LiveSettingsError as exc:
        _fail(exc.message, EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="livesettings")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="LIVESETTINGS_CONFIG",
    help="A TOML file of settings (LIVESETTINGS_* variables and options win over it).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """livesettings: real-time settings synchronisation for applications."""
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file


@cli.command()
@click.option("--host", envvar="LIVESETTINGS_HOST", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, envvar="LIVESETTINGS_PORT", help="Port to listen on [8000].")
@click.option(
    "--data-dir", envvar="LIVESETTINGS_DATA_DIR", help="Where the embedded default keeps its files."
)
@click.option(
    "--database-url", envvar="LIVESETTINGS_DATABASE_URL", help="sqlite:///path or postgresql://…"
)
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
    config = _load(
        ctx, host=host, port=port, data_dir=data_dir, database_url=database_url, bus_url=bus_url
    )
    from .serve import run_server

    try:
        sys.exit(run_server(config))
    except ConfigError as exc:
        _fail(exc.message, EXIT_CONFIG)


@cli.command()
@click.option(
    "--database-url", envvar="LIVESETTINGS_DATABASE_URL", help="sqlite:///path or postgresql://…"
)
@click.pass_context
def setup(ctx: click.Context, database_url: str | None) -> None:
    """Create or upgrade the schema (idempotent)."""
    config = _load(ctx, database_url=database_url)
    from .store import open_store

    async def go() -> list[str]:
        store = open_store(config.admin_database_url or config.resolved_database_url)
        try:
            return await store.setup()
        finally:
            await store.close()

    for line in _run(go):
        click.echo(line)
    click.secho("setup complete", fg="green")


@cli.command()
@click.option(
    "--database-url", envvar="LIVESETTINGS_DATABASE_URL", help="sqlite:///path or postgresql://…"
)
@click.pass_context
def verify(ctx: click.Context, database_url: str | None) -> None:
    """Check the schema version, journal and sync level, and that the keys decrypt."""
    config = _load(ctx, database_url=database_url)
    from .store import open_store

    async def go() -> dict[str, Any]:
        store = open_store(config.resolved_database_url)
        try:
            await store.open()
            return await store.info()
        finally:
            await store.close()

    info = _run(go)
    for key, value in info.items():
        click.echo(f"{key}: {value}")


def main() -> None:
    cli(prog_name="livesettings")
