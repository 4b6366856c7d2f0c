"""``livesettings backup`` and ``restore``: a consistent snapshot of the embedded store."""

from __future__ import annotations

import click

__all__ = ["backup", "restore"]


@click.command()
def backup() -> None:
    """Take a consistent snapshot of the embedded store while it serves."""
    raise click.ClickException("not built yet")


@click.command()
def restore() -> None:
    """Put a snapshot taken by `livesettings backup` into an empty data directory."""
    raise click.ClickException("not built yet")
