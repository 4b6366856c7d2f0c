"""Fixtures for the tests of the JavaScript packages (clients/js, clients/react): node and npm,
and a real server process with signed-up users and a service token."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_SERVER_SETTINGS, require_service
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "clients" / "js"


@pytest.fixture(scope="session")
def node() -> str:
    found = shutil.which("node")
    require_service("node", found is not None)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def npm() -> str:
    found = shutil.which("npm")
    require_service("npm", found is not None)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def js_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``livesettings serve`` on a random port (SQLite), shared by a module's tests."""
    proc = ServerProcess(tmp_path_factory.mktemp("js") / "data", **SHARED_SERVER_SETTINGS)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def service_token(server: ServerProcess, sub: str, ttl: int | None = None) -> str:
    """A service token (``role: "service"``) issued by the CLI, as an operator would."""
    lifetime = [] if ttl is None else ["--ttl", str(ttl)]
    cli = [sys.executable, "-m", "livesettings", "token", "issue"]
    result = subprocess.run(
        [*cli, "--user", sub, "--service", *lifetime],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout.strip()
