"""The ``livesettings`` command line (DESIGN §8).

Exit codes: 0 success, 1 a check failed or the operation was refused, 2 usage error (click),
3 configuration error, 4 the database or bus is unreachable, 130 interrupted.

Commands live by topic: :mod:`.admin` (serve, setup, verify, check-db), :mod:`.signing`
(check-auth), :mod:`.accounts` (user, token), :mod:`.teams` (team), :mod:`.data` (keys rotate,
export, import), :mod:`.migrate` (migrate), :mod:`.backups` (backup, restore).
"""

from __future__ import annotations

import os

import click

from .. import __version__
from ._common import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNREACHABLE, EXIT_USAGE
from .accounts import token, user
from .admin import check_db, serve, setup, verify
from .backups import backup, restore
from .data import export, import_, keys
from .migrate import migrate
from .signing import check_auth
from .teams import team

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "cli",
    "main",
]


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


for _command in (
    serve,
    setup,
    verify,
    check_db,
    check_auth,
    user,
    token,
    team,
    keys,
    export,
    import_,
    migrate,
    backup,
    restore,
):
    cli.add_command(_command)


def main() -> None:
    """The console script's entry point."""
    # Everything livesettings writes (database, key files, exports) is for its owner only.
    os.umask(0o077)
    cli(prog_name="livesettings")
