"""Fixtures for the tests of the JavaScript packages (clients/js, clients/react): node and npm,
a real server process with signed-up users and a service token, and for the React example in
Chromium: the built example served from its own origin, a server allowing it, the browser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext

from tests.browser.helpers import SERVER_SETTINGS, closing_contexts, launched_chromium
from tests.clients.react_support import build_example, serve_directory
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built React example, served; its origin."""
    with serve_directory(build_example(tmp_path_factory.mktemp("react-app"))) as origin:
        yield origin


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, site: str) -> Iterator[ServerProcess]:
    """A real server that allows the example's origin."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("react-server") / "data", **SERVER_SETTINGS, allowed_origins=site
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with launched_chromium(chromium_path) as chromium:
        yield chromium


@pytest.fixture
def contexts() -> Iterator[list[BrowserContext]]:
    with closing_contexts() as opened:
        yield opened
