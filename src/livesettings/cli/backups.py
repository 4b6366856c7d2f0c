"""``livesettings backup`` and ``restore``: a consistent snapshot of the embedded store.

The work is :mod:`livesettings.snapshots`'; this module finds the database from the
configuration, prints what was done, and says loudly what a backup does not hold: the
keyring. On PostgreSQL both commands refuse and point to the ``pg_dump``/``pg_restore``
procedure of the operator guide.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import Config
from ..crypto import Keyring
from ..errors import LiveSettingsError
from ..snapshots import NEWEST_RESTORABLE, Counts, restore_snapshot, take_snapshot
from ..store.base import SCHEMA_VERSION
from ..store.sqlite import sqlite_path
from ._common import (
    KEY_FILE,
    Report,
    database_options,
    existing_keys,
    exits,
    fail,
    load_config,
    plural,
)

__all__ = ["backup", "restore"]

_PG_PROCEDURE = (
    "see 'Backup and restore' in docs/operating.md: `pg_dump -Fc` as a superuser, "
    "`pg_restore --no-owner --no-privileges --role=<owner>` into a new empty database, "
    "then `livesettings setup` on it"
)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@database_options
@click.pass_context
def backup(ctx: click.Context, path: Path, data_dir: str | None, database_url: str | None) -> None:
    """Take a consistent snapshot of the embedded store into the new directory PATH.

    Safe while a server is serving the database: the copy is made in one read transaction
    (SQLite VACUUM INTO), which never blocks the server's writes. PATH gets the database
    (mode 0600) and manifest.json. The keyring is NOT in the backup: keep it separately.
    """
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    if config.is_postgres:
        fail(
            "`livesettings backup` copies the embedded SQLite store; on PostgreSQL, "
            + _PG_PROCEDURE
        )
    report = Report()
    with exits():
        source = sqlite_path(config.resolved_database_url)
        manifest = take_snapshot(source, path)
    report.ok("database", f"{source} (schema version {manifest.schema_version})")
    report.ok(
        "snapshot",
        f"{path / manifest.database_file} ({manifest.database_size} bytes, sha256 "
        f"{manifest.database_sha256[:16]}…), integrity check ok",
    )
    report.fact("contents", manifest.counts.describe())
    report.ok("manifest", path / "manifest.json")
    _keyring_warning(config, manifest.counts)
    click.secho(f"backup: written to {path} at {manifest.created_at}", fg="green")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@database_options
@click.pass_context
def restore(ctx: click.Context, path: Path, data_dir: str | None, database_url: str | None) -> None:
    """Put a backup made by `livesettings backup` into an empty data directory.

    Refuses when the configured database file already exists. Checks the backup's sha256,
    schema version and integrity, and whether the configured keyring holds the master keys
    its secrets need.
    """
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    if config.is_postgres:
        fail(
            "`livesettings restore` restores the embedded SQLite store; on PostgreSQL, "
            + _PG_PROCEDURE
        )
    report = Report()
    with exits():
        target = sqlite_path(config.resolved_database_url)
        restored = restore_snapshot(path, target)
    manifest = restored.manifest
    report.ok(
        "backup",
        f"{path}: taken {manifest.created_at} by livesettings {manifest.livesettings_version}, "
        f"schema version {manifest.schema_version}",
    )
    report.ok("sha256", f"matches the manifest ({manifest.database_size} bytes)")
    report.ok("restored", f"{restored.database} (mode 0600), integrity check ok")
    report.fact("contents", restored.counts.describe())
    if manifest.schema_version < SCHEMA_VERSION:
        report.warn(
            "schema",
            f"version {manifest.schema_version}: run `livesettings migrate` (or `setup`) to "
            f"upgrade it to {SCHEMA_VERSION} before serving it",
        )
    elif manifest.schema_version == NEWEST_RESTORABLE:
        report.warn(
            "schema",
            f"version {manifest.schema_version}, from a newer livesettings; this release "
            "serves it, but upgrade to the release that wrote it soon",
        )
    _keyring_check(config, restored.counts, report)
    click.secho(f"restore: {restored.database} is ready to serve", fg="green")


def _configured_keyring(config: Config) -> Keyring | None:
    """The configured keyring, or ``None`` (with a warning when it cannot be read): the
    backup or restore is done by then, so a keyring problem is reported, not fatal."""
    try:
        return existing_keys(config)
    except LiveSettingsError as exc:
        click.secho(f"warning: cannot read the keyring: {exc.message}", fg="red", err=True)
        return None


def _keyring_source(config: Config) -> str:
    if config.master_keys:
        return "LIVESETTINGS_MASTER_KEYS"
    if config.master_key:
        return "LIVESETTINGS_MASTER_KEY"
    return f"the key file {config.data_dir / KEY_FILE}"


def _key_ids(counts: Counts) -> str:
    return ", ".join(
        f"{key_id} ({plural(n, 'data key')})" for key_id, n in counts.master_key_ids.items()
    )


def _keyring_warning(config: Config, counts: Counts) -> None:
    """The loud part of a backup: what it does not hold, and what it needs."""
    needs = (
        f"Restoring its secrets needs master key id(s) {_key_ids(counts)}."
        if counts.master_key_ids
        else "It holds no data key yet; later backups will need the keyring."
    )
    click.secho(
        "\nWARNING: the keyring is NOT in this backup. "
        + needs
        + f"\nKeep the keyring ({_keyring_source(config)}) separately and safely: the backup "
        "without it cannot open any secret, and the keyring without the backup holds no "
        "settings. The JWT secret (LIVESETTINGS_JWT_SECRET, or jwt.secret in the data dir) "
        "is not in it either; without it, users sign in again.\n",
        fg="yellow",
        bold=True,
        err=True,
    )
    keyring = _configured_keyring(config)
    held = set(keyring.ids) if keyring is not None else set()
    missing = sorted(set(counts.master_key_ids) - held)
    if missing:
        click.secho(
            f"warning: the configured keyring lacks master key id(s) {', '.join(missing)}: "
            "the secrets they wrap cannot be opened even now",
            fg="yellow",
            bold=True,
            err=True,
        )


def _keyring_check(config: Config, counts: Counts, report: Report) -> None:
    """Whether the configured keyring opens the restored data keys: a loud warning if not."""
    if not counts.master_key_ids:
        report.ok("keyring", "the backup holds no data key: no secret to open")
        return
    keyring = _configured_keyring(config)
    held = set(keyring.ids) if keyring is not None else set()
    missing = {k: n for k, n in counts.master_key_ids.items() if k not in held}
    if not missing:
        report.ok("keyring", f"holds master key id(s) {', '.join(counts.master_key_ids)}")
        return
    users = sum(missing.values())
    where = (
        f"no keyring is configured (LIVESETTINGS_MASTER_KEYS, or {config.data_dir / KEY_FILE}); "
        "do not start `serve` before configuring it, or it generates a new key that opens "
        "none of them"
        if keyring is None
        else f"configure a keyring holding them ({_keyring_source(config)} holds "
        f"{', '.join(keyring.ids)})"
    )
    report.warn("keyring", f"MISSING master key id(s) {', '.join(missing)}")
    click.secho(
        f"\nWARNING: the secrets of {plural(users, 'user or team')} cannot be opened until "
        f"the keyring holding master key id(s) {', '.join(missing)} is configured: {where}.\n",
        fg="red",
        bold=True,
        err=True,
    )
