"""What the backup tests share: the CLI as a subprocess, a service token, a user's change log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result

from livesettings.auth import TokenIssuer
from livesettings.cli import cli
from tests.support.server import TEST_JWT_SECRET
from tests.support.users import User

SECRET_VALUE = "sk-backup-restore-secret-0123456789"


def livesettings(
    *args: str | Path, timeout: float = 60.0, **settings: Any
) -> subprocess.CompletedProcess[str]:
    """``python -m livesettings ARGS`` in its own process, with only the given settings
    (``data_dir="…"`` → ``LIVESETTINGS_DATA_DIR``) and the tests' JWT secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESETTINGS_")}
    env["LIVESETTINGS_JWT_SECRET"] = TEST_JWT_SECRET
    env.update({"LIVESETTINGS_" + k.upper(): str(v) for k, v in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "livesettings", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def invoke(*args: str | Path, **settings: Any) -> Result:
    """``livesettings ARGS`` in this process (faster than :func:`livesettings`), with only
    the given settings and the tests' JWT secret."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LIVESETTINGS_")}
    env["LIVESETTINGS_JWT_SECRET"] = TEST_JWT_SECRET
    env.update({"LIVESETTINGS_" + k.upper(): str(v) for k, v in settings.items()})
    return CliRunner().invoke(
        cli, [str(a) for a in args], env=env, catch_exceptions=False, prog_name="livesettings"
    )


def service_headers() -> dict[str, str]:
    """A service token's header: any user's settings and decrypted secrets."""
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue("backup-tests", role="service")
    return {"Authorization": f"Bearer {token}"}


def read_secret(http: httpx.Client, user_id: str, name: str = "openai") -> str:
    """The decrypted secret, through the service route (the server opens it with its keyring)."""
    r = http.get(f"/v1/users/{user_id}/secrets/{name}", headers=service_headers())
    assert r.status_code == 200, r.text
    value: str = r.json()["value"]
    return value


def all_changes(http: httpx.Client, user: User) -> dict[int, dict[str, Any]]:
    """Every change-log row of ``user``, by revision."""
    changes: dict[int, dict[str, Any]] = {}
    since = 0
    while True:
        r = http.get(
            "/v1/settings/changes",
            params={"since": since, "limit": 1000},
            headers=user.headers,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body["reset"]
        for change in body["changes"]:
            changes[change["revision"]] = change
        if not body["changes"]:
            return changes
        since = body["changes"][-1]["revision"]
