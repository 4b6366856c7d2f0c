"""Fixtures for the CLI tests: a data dir per test, a runner with its environment, keys."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from livesettings.cli import cli
from livesettings.crypto import Keyring
from livesettings.merge import Mutation
from livesettings.store import PendingMutation, Store
from livesettings.store.planning import body_hash
from livesettings.store.sqlite import SqliteStore

T = TypeVar("T")

JWT_SECRET = "cli-tests-jwt-secret-0123456789abcdefghij"
OLD_KEY = base64.b64encode(b"o" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
OLD = f"old:{OLD_KEY}"
NEW = f"new:{NEW_KEY}"


class Cli:
    """Invokes ``livesettings`` in-process with a fixed environment (stdout and stderr apart)."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        # Nothing from the outer environment leaks in: every LIVESETTINGS_* is unset first.
        self.env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("LIVESETTINGS_")
        }
        self.env.update(
            {
                "LIVESETTINGS_DATA_DIR": str(data_dir),
                "LIVESETTINGS_JWT_SECRET": JWT_SECRET,
                "LIVESETTINGS_ARGON2_MEMORY_COST": "1024",
                "LIVESETTINGS_ARGON2_TIME_COST": "1",
            }
        )
        self.env.update(env)
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, **env: str | None) -> Result:
        return self.runner.invoke(
            cli,
            list(args),
            input=input,
            env={**self.env, **{f"LIVESETTINGS_{k.upper()}": v for k, v in env.items()}},
            catch_exceptions=False,
            prog_name="livesettings",
        )

    @property
    def db(self) -> Path:
        return self.data_dir / "livesettings.db"

    def store_do(self, keys: str | None, fn: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``fn`` against this data dir's database, opened with keyring ``keys``."""

        async def go() -> T:
            keyring = Keyring.parse(keys) if keys else None
            store = SqliteStore(f"sqlite:///{self.db}", keyring=keyring)
            try:
                await store.open()
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(go())


@pytest.fixture
def run_cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data", LIVESETTINGS_MASTER_KEYS=OLD)


def edit(user_id: str, mutation_id: str, patch: dict[str, Any]) -> PendingMutation:
    return PendingMutation(
        user_id, Mutation(mutation_id, "cli-test", None, patch, 1_000), body_hash("patch", patch)
    )


def ok(result: Result) -> str:
    """The stdout of a run that must have succeeded (its stderr in the failure message)."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout
