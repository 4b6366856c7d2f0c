"""``livesettings migrate``: the pending schema migrations, applied or (``--dry-run``) printed."""

from __future__ import annotations

import click

__all__ = ["migrate"]


@click.command()
def migrate() -> None:
    """Apply the pending schema migrations (--dry-run prints their SQL)."""
    raise click.ClickException("not built yet")
