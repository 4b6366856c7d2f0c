"""Making admins of a real server's users, as an operator does: ``livesettings user admin``."""

from __future__ import annotations

import uuid

from click.testing import CliRunner

from livesettings.cli import cli
from tests.support.server import ServerProcess
from tests.support.users import User, signup


def set_admin(server: ServerProcess, user: str, on: bool = True) -> str:
    """``livesettings user admin USER --on|--off`` against ``server``'s database (in-process,
    with the server's environment); its output."""
    env = {k: v for k, v in server.env().items() if k.startswith("LIVESETTINGS_")}
    env["LIVESETTINGS_AUDIT_LOG"] = "-"  # the server's audit log is its own
    result = CliRunner().invoke(
        cli, ["user", "admin", user, "--on" if on else "--off"], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def admin_user(server: ServerProcess) -> User:
    """A new built-in user with the admin flag."""
    with server.client() as http:
        user = signup(http, "admin" + uuid.uuid4().hex[:8])
    set_admin(server, user.username)
    return user
