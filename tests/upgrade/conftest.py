"""The previous release, built once per session, and a scratch PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_service
from tests.support.postgres import Database, create_database, drop_database, drop_roles
from tests.support.server import ServerProcess
from tests.upgrade.old_release import OldRelease, build_old_release, has_commit

__all__ = ["PREVIOUS_RELEASE", "OldServer"]

PREVIOUS_RELEASE = "3b1ed4f"
"""livesettings 0.1.0 (schema version 2): the commit before the branch that made schema 3."""


@pytest.fixture(scope="session")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> OldRelease:
    """The previous release in a venv of its own (about 2 s, once per session)."""
    if not has_commit(PREVIOUS_RELEASE):
        message = (
            f"the previous release {PREVIOUS_RELEASE} is not in this repository's history "
            "(a shallow clone? `git fetch --unshallow`)"
        )
        if IN_CI:
            pytest.fail(f"{message}; CI=true: the upgrade tests must run")
        pytest.skip(message)
    return build_old_release(PREVIOUS_RELEASE, tmp_path_factory.mktemp("previous-release"))


@pytest.fixture
def pg_database(postgres_available: bool) -> Iterator[Database]:
    """A fresh empty database and owner role (nothing set up), dropped afterwards."""
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    db = create_database("ls_up")
    try:
        yield db
    finally:
        drop_database(db)
        drop_roles(db)


class OldServer(ServerProcess):
    """``livesettings serve`` of the previous release (its venv's console script)."""

    def __init__(self, release: OldRelease, data_dir: Path, **settings: Any) -> None:
        super().__init__(data_dir, **settings)
        self.release = release

    def start(self, timeout: float = 20.0) -> None:
        # ServerProcess.start with the old release's command and environment: the output
        # pump and the start line are the same.
        self.proc = subprocess.Popen(
            [str(self.release.livesettings), "serve"],
            env=self.release.env(self.env()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = self.proc.stdout
        assert stdout is not None
        started = threading.Event()

        def pump() -> None:
            with contextlib.suppress(ValueError, OSError):
                for line in stdout:
                    self.output.append(line)
                    if not started.is_set() and "livesettings is running: open " in line:
                        self.url = line.split("open ", 1)[1].split()[0].rstrip("/")
                        self.port = int(self.url.rsplit(":", 1)[1])
                        started.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not started.wait(timeout):
            self.kill()
            raise RuntimeError("the old release did not start:\n" + "".join(self.output))
