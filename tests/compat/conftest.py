"""Fixtures for the Supabase-compatible endpoints: a real server process (SQLite, the test JWT
secret of tests/support/server.py, the compat endpoints mounted as by default) and its anon key,
issued by ``livesettings token issue --anon`` with the server's own configuration, as an
operator would."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.clients.conftest import node  # noqa: F401  (the node executable, a fixture)
from tests.conftest import SHARED_SERVER_SETTINGS
from tests.support.server import TEST_JWT_SECRET, ServerProcess

__all__ = [
    "COMPAT_SERVER_SETTINGS",
    "ORIGIN",
    "TEST_JWT_SECRET",
    "anon_key_of",
    "issue_token",
    "new_email",
]

ORIGIN = "http://localhost:3000"
"""The browser app's origin that the compat servers allow (where a seed app runs in dev)."""

COMPAT_SERVER_SETTINGS = {**SHARED_SERVER_SETTINGS, "allowed_origins": ORIGIN}


def issue_token(server: ServerProcess, *args: str) -> str:
    """What ``livesettings token issue ARGS`` prints with ``server``'s configuration."""
    result = subprocess.run(
        [sys.executable, "-m", "livesettings", "token", "issue", *args],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    token = result.stdout.strip()
    assert token.count(".") == 2, f"not a JWT: {token!r}"
    return token


def anon_key_of(server: ServerProcess) -> str:
    """The anon key (a JWT with ``role: anon``) that ``token issue --anon`` prints."""
    return issue_token(server, "--anon")


def new_email(prefix: str = "u") -> str:
    """A fresh address: GoTrue's users sign up by email, which is the livesettings username."""
    return f"{prefix}{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture(scope="module")
def compat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``livesettings serve`` on a random port (SQLite), shared by a module's tests."""
    proc = ServerProcess(tmp_path_factory.mktemp("compat") / "data", **COMPAT_SERVER_SETTINGS)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def anon_key(compat_server: ServerProcess) -> str:
    """``compat_server``'s anon key."""
    return anon_key_of(compat_server)
