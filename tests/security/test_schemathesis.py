"""Schemathesis against the running server's ``/openapi.json``, every check included.

``st run --checks all`` generates valid and invalid requests for every operation: no 5xx, no
response outside the document, every invalid input refused, and ``ignored_auth`` proves each
operation that declares bearer auth refuses requests without it or with a bad token. Two
smaller passes cover the service routes with a service token and the admin routes with an
admin's. Bounded: a fixed seed, a few
examples per operation, one worker.

The event stream is left out (an endless response); ``test_authorization`` and the sync tests
cover it. ``schemathesis.toml`` lists the statuses a valid request may still get for reasons
no schema states; ``schemathesis_hooks`` issues a fresh token per request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.admins import set_admin
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import signup

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ST = Path(sys.executable).parent / "st"
SEED = os.environ.get("LIVESETTINGS_SCHEMATHESIS_SEED", "20261128")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("schemathesis") / "data",
        write_rate=10_000,
        write_burst=100_000,
        signup_limit_per_address=100_000,
        connect_burst=100_000,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _run(
    target: ServerProcess,
    cwd: Path,
    role: str,
    examples: str,
    *options: str,
    admin: bool = False,
) -> str:
    with target.client() as http:
        user = signup(http)
    if admin:
        set_admin(target, user.username)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "SCHEMATHESIS_HOOKS": "tests.security.schemathesis_hooks",
        "LS_ST_SECRET": TEST_JWT_SECRET,
        "LS_ST_USER": user.user_id,
        "LS_ST_ROLE": role,
        "NO_COLOR": "1",
    }
    cwd.mkdir()
    done = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            target.url + "/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            examples,
            "--seed",
            SEED,
            "--workers",
            "1",  # Python's ast is not thread-safe on 3.11 (hypothesis parses lambdas)
            "--request-timeout",
            "5",
            "--exclude-path",
            "/v1/settings/events",
            "--exclude-path",
            "/v1/teams/{team_id}/settings/events",
            *options,
        ],
        cwd=cwd,  # a fresh example database: no replay of another run's failures
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_schemathesis_finds_nothing_with_a_user_token(
    target: ServerProcess, tmp_path: Path
) -> None:
    output = _run(target, tmp_path / "user", "", "8")
    # Every operation but the two event streams (the /v1/admin ones answer this user 403).
    assert "40 selected / 42 total" in output
    assert "Tested: 40" in output
    for code in ("ST0", "ST1", "ST2", "ST3"):
        assert f"❌ {code}" not in output
    assert target.proc is not None and target.proc.poll() is None
    assert "Traceback" not in target.log_text()


def test_schemathesis_finds_nothing_on_the_service_routes(
    target: ServerProcess, tmp_path: Path
) -> None:
    output = _run(target, tmp_path / "service", "service", "5", "--include-tag", "service")
    assert "Tested: 5" in output
    assert "Traceback" not in target.log_text()


def test_schemathesis_finds_nothing_on_the_admin_routes(
    target: ServerProcess, tmp_path: Path
) -> None:
    output = _run(target, tmp_path / "admin", "", "5", "--include-tag", "admin", admin=True)
    assert "Tested: 6" in output  # /v1/admin/stats and the five of admin_routes
    assert "Traceback" not in target.log_text()
