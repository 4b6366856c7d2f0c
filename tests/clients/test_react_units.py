"""The React package's own node tests (clients/react/test/), run by node's test runner."""

from __future__ import annotations

import shutil
import subprocess

from tests.clients.react_support import REPO
from tests.conftest import require_service


def test_node_tests_of_the_react_package_pass() -> None:
    node = shutil.which("node")
    require_service("node", node is not None)
    assert node is not None
    require_service(
        "the npm workspace (run npm ci at the repository root)",
        (REPO / "node_modules" / "react").exists(),
    )
    result = subprocess.run(
        [node, "--test", "clients/react/test/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
