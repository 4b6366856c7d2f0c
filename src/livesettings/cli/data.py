"""Moving and re-keying data: ``keys rotate``, ``export``, ``import``."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import click

from ..audit import audit, audit_trail
from ..backup import ExportResult, ImportResult, export_users, import_users
from ..config import Config
from ..crypto import Keyring
from ..errors import BadRequest, ConfigError, Conflict, CryptoError
from ..keys import (
    DEFAULT_BATCH,
    RenewalResult,
    RotationResult,
    missing_master_keys,
    renew_data_keys,
    retired_master_keys,
    rotate_data_keys,
)
from ..store import Store
from ._common import (
    Report,
    database_options,
    existing_keys,
    fail,
    load_config,
    opened_store,
    plural,
    progress,
    run,
)

__all__ = ["export", "import_", "keys"]


@click.group()
def keys() -> None:
    """Manage the master keys that wrap every user's data key."""


@keys.command("rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Data keys re-wrapped per batch.",
)
@click.option(
    "--max-keys",
    type=click.IntRange(min=1),
    help="Stop after re-wrapping this many data keys (run again to continue).",
)
@click.option(
    "--data-keys",
    is_flag=True,
    help="Give every user a new data key too, and re-seal their secrets under it.",
)
@database_options
@click.pass_context
def keys_rotate(
    ctx: click.Context,
    batch_size: int,
    max_keys: int | None,
    data_keys: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Re-wrap every data key under the active master key (resumable).

    Put the new key first in LIVESETTINGS_MASTER_KEYS and keep the old ones after it
    (new:…,old:…); run this; once no data key remains under an old key, remove it.
    Secrets are not re-encrypted: only the wrapping of their data keys changes — unless
    --data-keys is given: then each user gets a new data key and every secret is re-sealed
    under it (safe while servers run). On PostgreSQL, with LIVESETTINGS_ADMIN_DATABASE_URL
    set, the tables that held the old keys are vacuumed as the owner afterwards.
    """
    if data_keys and max_keys is not None:
        raise click.UsageError("--max-keys applies to re-wrapping only, not to --data-keys")
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    if data_keys:
        keyring, renewal, scrubbed = run(
            lambda: _renew(config, batch_size),
            interrupted="interrupted; run `livesettings keys rotate --data-keys` again",
        )
        _report_renewal(config, keyring, renewal, scrubbed)
        return
    keyring, result, scrubbed = run(
        lambda: _rotate(config, batch_size, max_keys),
        interrupted="interrupted; run `livesettings keys rotate` again to continue",
    )
    retired = ",".join(result.retired(keyring)) or None
    counts = {"rewrapped": result.rewrapped, "remaining": result.remaining}
    fields = {**counts, "failed": len(result.failed), "retired": retired}
    report, active = _audited_report(config, keyring, "keys_rotated", **fields)
    report.ok("re-wrapped", f"{plural(result.rewrapped, 'data key')} under {active}")
    _report_outcome(
        report,
        result.counts,
        result.failed,
        scrubbed,
        result.retired(keyring),
        raced=result.raced,
        failure=f"keys rotate: {plural(len(result.failed), 'data key')} could not be "
        "re-wrapped (damaged or foreign); every other one was",
    )
    if result.stopped:
        click.echo(
            f"stopped after {plural(result.rewrapped, 'data key')} with "
            f"{result.remaining} left; run `livesettings keys rotate` again to continue"
        )
    else:
        click.secho(f"rotation complete: every data key is under {active}", fg="green")


def _audited_report(
    config: Config, keyring: Keyring, event: str, **fields: Any
) -> tuple[Report, str]:
    """Audit ``event`` under the active master key; a report that starts by naming it."""
    active = keyring.active.id
    with audit_trail(config.resolved_audit_log):
        audit(event, active=active, **fields)
    report = Report()
    report.fact("active master key", active)
    return report, active


def _report_outcome(
    report: Report,
    counts: Mapping[str, int],
    failed: Mapping[str, str],
    scrubbed: list[str],
    retired: Iterable[str],
    *,
    failure: str,
    raced: int = 0,
) -> None:
    """The data keys per master key, the failures (exiting with ``failure`` if any), the old
    key material scrubbed and the master keys that wrap nothing now."""
    shown = ", ".join(f"{key_id}: {n}" for key_id, n in counts.items())
    report.fact("data keys", shown or "none")
    if raced:
        report.fact("changed meanwhile", f"{plural(raced, 'data key')} (re-read)")
    for user_id, why in failed.items():
        report.fail(f"user {user_id}", why)
    for line in scrubbed:
        if line.startswith("warning: "):
            report.warn("old key material", line.removeprefix("warning: "))
        else:
            report.ok("old key material", line)
    if failed:
        fail(failure)
    for key_id in retired:
        report.ok(key_id, "wraps no data key now; it can be removed from the keyring")


def _report_renewal(
    config: Config, keyring: Keyring, result: RenewalResult, scrubbed: list[str]
) -> None:
    retired = retired_master_keys(result.counts, keyring)
    fields = {"users": result.users, "secrets": result.secrets, "failed": len(result.failed)}
    report, active = _audited_report(config, keyring, "data_keys_renewed", **fields)
    report.ok(
        "new data keys",
        f"{plural(result.users, 'user')}, {plural(result.secrets, 'secret')} re-sealed",
    )
    _report_outcome(
        report,
        result.counts,
        result.failed,
        scrubbed,
        retired,
        failure=f"keys rotate: {plural(len(result.failed), 'user')} kept their data key "
        "(damaged or foreign); every other user has a new one",
    )
    click.secho(f"rotation complete: every user has a new data key, under {active}", fg="green")


async def _checked_keyring(store: Store, keyring: Keyring) -> int:
    """Refuse data keys under a master key the ring lacks; how many are not under the
    active one."""
    counts = await store.count_wrapped_keys()
    missing = missing_master_keys(counts, keyring)
    if missing:
        # Refused up front rather than failing key by key: the fix is the same for all.
        key_id, n = next(iter(missing.items()))
        raise CryptoError(
            f"{plural(n, 'data key')} are wrapped by master key {key_id!r}, which is not "
            f"in the keyring ({keyring.describe()}); add it after the active key and "
            "run again",
            code="unknown_master_key",
        )
    return sum(n for key_id, n in counts.items() if key_id != keyring.active.id)


def _keyring(config: Config) -> Keyring:
    keyring = existing_keys(config)
    if keyring is None:
        raise ConfigError(
            "no master keys: set LIVESETTINGS_MASTER_KEYS=new:…,old:… (the new key first)"
        )
    return keyring


async def _rotate(
    config: Config, batch_size: int, max_keys: int | None
) -> tuple[Keyring, RotationResult, list[str]]:
    keyring = _keyring(config)
    async with opened_store(config, keyring, maintenance=True) as store:
        todo = await _checked_keyring(store, keyring)
        with progress("re-wrapping data keys", min(todo, max_keys or todo)) as advance:
            result = await rotate_data_keys(
                store, keyring, batch_size=batch_size, max_keys=max_keys, on_progress=advance
            )
        # Every run, so one that could not vacuum before (no owner URL) can be repeated.
        scrubbed = await store.scrub_key_tables(documents=False)
    return keyring, result, scrubbed


async def _renew(config: Config, batch_size: int) -> tuple[Keyring, RenewalResult, list[str]]:
    keyring = _keyring(config)
    async with opened_store(config, keyring, maintenance=True) as store:
        await _checked_keyring(store, keyring)
        total = sum((await store.count_wrapped_keys()).values())
        with progress("renewing data keys", total) as advance:
            result = await renew_data_keys(
                store, keyring, batch_size=batch_size, on_progress=advance
            )
        scrubbed = await store.scrub_key_tables(documents=True)
    return keyring, result, scrubbed


@click.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (created with mode 0600) instead of stdout.",
)
@database_options
@click.pass_context
def export(
    ctx: click.Context, output: Path | None, data_dir: str | None, database_url: str | None
) -> None:
    """Write every user and team as JSON lines (secrets stay sealed).

    One line per user (and per team document): account, settings and the data key wrapped
    by its master key, so restoring the secrets needs that keyring; then one line per team:
    its name and members with their roles.
    """
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go(write: Callable[[bytes], object]) -> ExportResult:
        async with opened_store(config, None) as store:
            with progress("exporting users", None) as advance:
                return await export_users(store, write, on_progress=advance)

    if output is None:
        stdout = sys.stdout.buffer
        result = run(lambda: go(stdout.write))
        stdout.flush()
    else:
        with _private_file(output) as fh:
            result = run(lambda: go(fh.write))
    # With the data on stdout, the summary goes to stderr.
    teams = f" and {plural(result.teams, 'team')}" if result.teams else ""
    summary = f"exported {plural(result.users, 'user')}{teams}" + (
        f" to {output}" if output else ""
    )
    click.echo(summary, err=output is None)
    if result.master_key_ids:
        ids = ", ".join(sorted(result.master_key_ids))
        click.echo(f"restoring their secrets needs master key(s): {ids}", err=output is None)


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[BinaryIO]:
    """A 0600 file that appears at ``path`` only once complete (no half-written backup)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@click.command("import")
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read FILE instead of stdin.",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip users and teams already present (to finish an interrupted import).",
)
@database_options
@click.pass_context
def import_(
    ctx: click.Context,
    input_path: Path | None,
    skip_existing: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Read users and teams written by `livesettings export`."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go(source: BinaryIO) -> tuple[Keyring | None, ImportResult]:
        keyring = existing_keys(config)
        async with opened_store(config, keyring, setup=True) as store:
            with progress("importing users", None) as advance:
                try:
                    result = await import_users(
                        store, source, skip_existing=skip_existing, on_progress=advance
                    )
                except (Conflict, BadRequest) as exc:
                    # Each user and team is imported in its own transaction: say what is kept.
                    raise type(exc)(
                        f"{exc.message}; users and teams on earlier lines were imported "
                        "(run again with --skip-existing to continue)"
                    ) from exc
        return keyring, result

    if input_path is None:
        keyring, result = run(lambda: go(sys.stdin.buffer))
    else:
        with input_path.open("rb") as fh:
            keyring, result = run(lambda: go(fh))
    teams = f" and {plural(result.teams, 'team')}" if result.teams else ""
    click.echo(f"imported {plural(result.imported, 'user')}{teams}")
    if result.skipped or result.teams_skipped:
        skipped = [plural(result.skipped, "user")] if result.skipped else []
        skipped += [plural(result.teams_skipped, "team")] if result.teams_skipped else []
        click.echo(f"skipped {' and '.join(skipped)} already present")
    _report_import_keys(keyring, result.master_key_ids)


def _report_import_keys(keyring: Keyring | None, ids: Counter[str]) -> None:
    report = Report()
    for key_id, n in sorted(ids.items()):
        if keyring is not None and key_id in keyring.ids:
            report.ok("data keys", f"{plural(n, 'data key')} wrapped by {key_id}, in the keyring")
        else:
            report.warn(
                "data keys",
                f"{plural(n, 'data key')} wrapped by {key_id}, which is not in the keyring: "
                "their secrets cannot be read until it is added to LIVESETTINGS_MASTER_KEYS",
            )
