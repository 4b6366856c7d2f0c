"""Shared fixtures: hypothesis profiles, service checks, a real server process."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.server import ServerProcess

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

IN_CI = os.environ.get("CI") == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool) -> None:
    """In CI a missing service fails the test; elsewhere it skips with the reason."""
    if available:
        return
    message = f"{name} is not available on this machine"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests that need it must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return _reachable("127.0.0.1", 5432)


@pytest.fixture(scope="session")
def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    require_service("Chromium (/usr/bin/chromium)", path is not None)
    assert path is not None
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `livesettings serve` process on a random port with a fresh SQLite database."""
    proc = ServerProcess(tmp_path / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
