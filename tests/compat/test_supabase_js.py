"""supabase-js 2.109.0 (Node 20, the ``ws`` transport) against a real server: node's own test
runner runs tests/compat/js/*.test.mjs, the seed's Supabase code with only the URL and the anon
key changed, over realtime vsn 2.0.0 and 1.0.0 on SQLite, and over vsn 2.0.0 on PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.conftest import COMPAT_SERVER_SETTINGS, ORIGIN, anon_key_of, issue_token
from tests.conftest import Backend
from tests.support.postgres import Database
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"
ALL = sorted(JS.glob("*.test.mjs"))
STORAGE = [JS / "rest.test.mjs", JS / "realtime.test.mjs"]


def node_env(server: ServerProcess) -> dict[str, str]:
    """What the node tests read (tests/compat/js/helpers.mjs) for ``server``."""
    service = ["--user", "billing-backend", "--service"]
    return {
        "COMPAT_URL": server.url,
        "COMPAT_ANON_KEY": anon_key_of(server),
        "COMPAT_SERVICE_TOKEN": issue_token(server, *service),
        "COMPAT_EXPIRED_TOKEN": issue_token(server, *service, "--ttl", "1"),
        "COMPAT_ORIGIN": ORIGIN,
    }


def run_node_tests(node: str, env: dict[str, str], vsn: str, files: list[Path]) -> str:
    """Run ``files`` with node's test runner; assert that every test in them passed."""
    run = subprocess.run(
        # Force the exit once the tests are done: realtime-js's disconnect() (which
        # removeAllChannels() calls) leaves a 10 s timer that holds node up.
        [node, "--test", "--test-force-exit", *(str(p.relative_to(REPO)) for p in files)],
        cwd=REPO,
        env={**os.environ, **env, "COMPAT_VSN": vsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout[-12000:] + run.stderr[-4000:]
    assert run.returncode == 0, output
    written = sum(len(re.findall(r"^test\(", p.read_text("utf-8"), re.M)) for p in files)
    assert f"# pass {written}\n" in run.stdout, output
    assert "# fail 0\n# cancelled 0\n# skipped 0\n" in run.stdout, output
    return run.stdout


def test_the_test_files_are_all_there() -> None:
    assert {p.name for p in ALL} == {"auth.test.mjs", "rest.test.mjs", "realtime.test.mjs"}
    assert all(p in ALL for p in STORAGE)


@pytest.fixture(scope="module")
def sqlite_env(compat_server: ServerProcess) -> dict[str, str]:
    return node_env(compat_server)


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_the_seed_code_runs_on_supabase_js(node: str, sqlite_env: dict[str, str], vsn: str) -> None:
    run_node_tests(node, sqlite_env, vsn, ALL)


@pytest.fixture
def pg_server(pg_template: Database, tmp_path: Path) -> Iterator[ServerProcess]:
    backend = Backend("postgres", pg_template)
    try:
        proc = backend.server(tmp_path / "data", **COMPAT_SERVER_SETTINGS)
        proc.start()
        yield proc
    finally:
        backend.close()


@pytest.mark.postgres
def test_the_seed_code_runs_on_supabase_js_over_postgresql(
    node: str, pg_server: ServerProcess
) -> None:
    run_node_tests(node, node_env(pg_server), "2.0.0", STORAGE)
