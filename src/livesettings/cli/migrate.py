"""``livesettings migrate``: the pending schema migrations, applied or (``--dry-run``) printed.

Migrating is what ``setup`` does to a database that already has a livesettings schema (the
store's own ``setup()`` runs it, in one transaction), reported as an upgrade: the version
before and after, the migrations applied. A database without a schema is ``setup``'s to create
(it also makes the key files and the app role), and one newer than this release is refused.
Every migration is expand-only, so nodes of the previous release keep serving meanwhile.
"""

from __future__ import annotations

import click

from ..config import Config
from ..errors import ConfigError
from ..store import SCHEMA_VERSION
from ..store.migrating import Migration, dry_run_sqlite
from ..store.migrations import Backend, pending_migrations, refuse_newer
from ._common import (
    check_database_file,
    database_options,
    existing_keys,
    load_config,
    make_store,
    run,
    shown_url,
)

__all__ = ["migrate"]


@click.command()
@database_options
@click.option(
    "--admin-database-url",
    envvar="LIVESETTINGS_ADMIN_DATABASE_URL",
    help="PostgreSQL: the owner connection the migration runs as.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the SQL the migration would run, in a transaction rolled back; change nothing.",
)
@click.pass_context
def migrate(
    ctx: click.Context,
    data_dir: str | None,
    database_url: str | None,
    admin_database_url: str | None,
    dry_run: bool,
) -> None:
    """Apply the pending schema migrations (--dry-run prints their SQL).

    Safe while servers run: every migration is expand-only, so a node of the previous
    release keeps serving the migrated database (see the compatibility table).
    """
    config = load_config(
        ctx, data_dir=data_dir, database_url=database_url, admin_database_url=admin_database_url
    )
    backend: Backend = "postgres" if config.is_postgres else "sqlite"

    where = f"database {shown_url(config)}"

    async def read_version() -> int | None:
        # As the app role: on PostgreSQL the owner reads no row of a table under forced
        # row-level security outside setup's scope.
        check_database_file(config)
        store = make_store(config, None)
        try:
            return await store.schema_version()
        finally:
            await store.close()

    async def current_version() -> int:
        version = await read_version()
        if version is None:
            raise ConfigError(
                f"the {where} has no livesettings schema; run `livesettings setup`, "
                "which creates it"
            )
        refuse_newer(version, where)
        return version

    before = run(current_version)
    pending = pending_migrations(backend, before)
    if not pending:
        click.echo(f"schema is up to date (version {SCHEMA_VERSION}); nothing to do")
        return
    plan = f"schema version {before} → {SCHEMA_VERSION}: pending {', '.join(pending)}"
    if dry_run:
        click.echo(f"-- {plan}")  # the output stays runnable SQL
        _print_dry_run(run(lambda: _migrate(config, dry_run=True)), before)
        return
    click.echo(plan)

    async def apply() -> tuple[Migration, int | None]:
        return await _migrate(config, dry_run=False), await read_version()

    migration, after = run(apply)
    for line in migration.lines:
        click.echo(line)
    click.secho(f"migrated: schema version {before} → {after}", fg="green")


async def _migrate(config: Config, *, dry_run: bool) -> Migration:
    """The migration (or its dry run) on the configured backend: PostgreSQL's locks the
    tables first (:func:`~livesettings.store.migrating.lock_tables`); SQLite's is the store's
    setup, whose ``BEGIN IMMEDIATE`` waits for the one writer."""
    keyring = existing_keys(config)
    url = config.resolved_database_url
    if dry_run and not config.is_postgres:
        return dry_run_sqlite(url, keyring)
    store = make_store(config, keyring, admin=True)
    try:
        if config.is_postgres:
            from ..store.postgres import PostgresStore  # the driver only when it is used

            assert isinstance(store, PostgresStore)
            return await store.migrate(dry_run=dry_run)
        return Migration(await store.setup(), [])
    finally:
        await store.close()


def _print_dry_run(result: Migration, version: int) -> None:
    """The SQL, runnable as printed (comments and statements each ending with ``;``)."""
    for statement in result.statements:
        click.echo(f"{statement};")
    for line in result.lines:
        click.echo(f"-- would report: {line}")
    click.echo(f"-- dry run: rolled back, nothing changed (schema version stays {version})")
