"""The npm package ``livesettings`` (clients/js) against a real server: node's own test runner
runs clients/js/test/*.test.mjs (a Node backend following users with a service token, the
``ws`` WebSocket and the SSE fallback, masked secrets, a process that exits after close()),
and the server serves the package's own files, byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess

from tests.clients.conftest import JS, REPO, service_token
from tests.support.server import ServerProcess
from tests.support.users import signup

NODE_TESTS = sorted((JS / "test").glob("*.test.mjs"))
# The users the node tests follow: a few per test file, so that files running side by side
# never wait for each other's writes (see clients/js/test/helpers.mjs).
USER_NAMES = [
    "ann",
    "ben",
    "cat",
    "dot",
    "eve",
    "fay",
    "gus",
    "hal",
    "ida",
    "jon",
    "kim",
    "lou",
    "max",
]


def test_the_node_tests_pass_against_a_real_server(node: str, js_server: ServerProcess) -> None:
    with js_server.client() as http:
        users = {
            name: {"user_id": user.user_id, "token": user.token, "username": user.username}
            for name in USER_NAMES
            for user in [signup(http)]
        }
    env = {
        **os.environ,
        "LIVESETTINGS_TEST_URL": js_server.url,
        "LIVESETTINGS_TEST_SERVICE": service_token(js_server, "billing-backend"),
        "LIVESETTINGS_TEST_SHORT_SERVICE": service_token(js_server, "billing-backend", ttl=4),
        "LIVESETTINGS_TEST_USERS": json.dumps(users),
    }
    run = subprocess.run(
        [node, "--test", *(str(p.relative_to(REPO)) for p in NODE_TESTS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout[-8000:] + run.stderr[-4000:]
    assert run.returncode == 0, output
    written = sum(len(re.findall(r"^test\(", p.read_text("utf-8"), re.M)) for p in NODE_TESTS)
    assert written >= 10, "a node test file is missing"
    assert f"# pass {written}\n" in run.stdout, output
    assert "# fail 0\n# cancelled 0\n# skipped 0\n" in run.stdout, output


def test_the_server_serves_the_package_files_byte_for_byte(js_server: ServerProcess) -> None:
    sources = sorted((JS / "src").glob("*.js"))
    assert {p.name for p in sources} >= {"livesettings.js", "client.js", "service.js"}
    with js_server.client() as http:
        for path in sources:
            response = http.get(f"/static/{path.name}")
            assert response.status_code == 200, path.name
            assert response.content == path.read_bytes(), f"/static/{path.name} differs"
            assert response.headers["content-type"].startswith("text/javascript"), path.name
