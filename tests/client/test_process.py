"""A client process that exits with a pending queue replays it exactly once when restarted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.client.helpers import new_user, server_changes, server_settings, token_for
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def run_client(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "tests.client.client_process", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_client_process_replays_its_queue_exactly_once_after_restarting(
    server: ServerProcess, tmp_path: Path
) -> None:
    user = new_user()
    token = token_for(user)
    cache = tmp_path / "client.db"
    patches = [{"theme": "dark"}, {"language": "fr"}, {"preferences": {"n": 1}}]

    server.stop()
    queued = run_client("queue", server.url, token, str(cache), json.dumps(patches))
    assert queued["connection"] == "offline"
    assert queued["unsaved"] == 3
    assert queued["revision"] is None
    assert queued["settings"]["preferences"] == {"n": 1}  # shown while queued
    ids = queued["mutation_ids"]
    # The same queue, as if the process had died after the server applied it but before it
    # heard the acks: replaying it must change nothing.
    shutil.copy(cache, tmp_path / "copy.db")

    server.restart()
    replayed = run_client("replay", server.url, token, str(cache))
    assert replayed["queued_at_start"] == 3
    assert (replayed["connection"], replayed["unsaved"]) == ("online", 0)
    assert replayed["client_id"] == queued["client_id"]
    assert [c["mutation_id"] for c in server_changes(server, user)] == ids
    assert [c["client_id"] for c in server_changes(server, user)] == [queued["client_id"]] * 3
    expected = server_settings(server, user)
    assert expected["revision"] == 3
    assert replayed["settings"] == expected["settings"]
    assert expected["settings"]["theme"] == "dark"

    again = run_client("replay", server.url, token, str(tmp_path / "copy.db"))
    assert (again["queued_at_start"], again["unsaved"]) == (3, 0)
    assert again["revision"] == 3
    assert [c["mutation_id"] for c in server_changes(server, user)] == ids
    assert server_settings(server, user)["revision"] == 3

    idle = run_client("replay", server.url, token, str(cache))
    assert (idle["queued_at_start"], idle["revision"]) == (0, 3)
