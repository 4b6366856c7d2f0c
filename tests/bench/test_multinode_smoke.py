"""The multi-node harness, run for a few seconds at a low rate against three real nodes.

This proves ``bench/multinode.py`` and the cross-node mode of ``bench/load.py`` work end to
end — scratch database set up, three nodes on the PostgreSQL bus, every user's devices on nodes
other than its writer's, every change matched to every device, the marked section of the
results file written and the rest of the file kept, the database and roles dropped — without
asserting any timing, which depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.support.postgres import sql

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def test_three_nodes_cross_node_lose_nothing(tmp_path: Path, postgres_available: bool) -> None:
    require_service("PostgreSQL", postgres_available)
    results = tmp_path / "RESULTS.md"
    results.write_text("# single-node section\n\nkept as it is\n")
    runs_file = tmp_path / "runs.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "multinode.py"),
            "--users=4",
            "--devices=3",
            "--rates=20",
            "--target-rate=20",
            "--warmup=0.5",
            "--duration=1.5",
            "--profile=off",
            "--redis=off",
            "--free-run=off",
            "--nice=0",
            f"--workdir={tmp_path / 'work'}",
            f"--results={results}",
            f"--json={runs_file}",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dump = json.loads(runs_file.read_text())
    runs = dump["runs"]
    assert [(r["bus"], r["plan"]["rate"], r["plan"]["nodes"]) for r in runs] == [
        ("postgres", 20.0, 3)
    ]
    run = runs[0]
    counts = {
        key: run[key]
        for key in (
            "http_errors",
            "unanswered",
            "missing",
            "duplicates",
            "gaps",
            "misrouted",
            "ws_errors",
            "ws_closed",
            "lost",
            "nothing_lost",
        )
    }
    assert counts == {
        "http_errors": {},
        "unanswered": 0,
        "missing": 0,
        "duplicates": 0,
        "gaps": 0,
        "misrouted": 0,
        "ws_errors": 0,
        "ws_closed": 0,
        "lost": 0,
        "nothing_lost": True,
    }, run["notes"]
    assert run["writes"] > 0
    assert run["ok"] == run["writes"]
    assert run["expected_deliveries"] == run["received"] == run["writes"] * 3
    assert run["latency"]["count"] == run["measured_writes"] * 3
    assert len(run["measured"]["server_cpu_each"]) == 3
    # Each node's own change-log reads (W5: at most one per change per node).
    side = run["server_side"]
    assert len(side["changelog_reads_each"]) == 3
    assert sum(side["changelog_reads_each"]) == side["changelog_reads"]
    assert side["changes"] >= run["writes"]
    # Users 0..3 write through nodes 1, 2, 3, 1; devices go to the next node, the one after,
    # then the next again: (2, 3, 2), (3, 1, 3), (1, 2, 1), (2, 3, 2).
    assert run["layout"]["devices_per_node"] == [3, 5, 4]
    assert run["layout"]["same_node_devices"] == 0
    assert sum(run["layout"]["writes_per_node"]) == run["writes"]

    text = results.read_text()
    assert text.startswith("# single-node section\n\nkept as it is\n\n<!-- multinode:start -->")
    assert text.count("<!-- multinode:start -->") == text.count("<!-- multinode:end -->") == 1
    assert "## Multi-node runs" in text and "| postgres | 20 |" in text
    assert "max reads/change on a node" in text
    assert str(ROOT) not in text  # no absolute machine paths in the results

    database, roles = dump["database"], dump["roles"]
    assert sql("SELECT datname FROM pg_catalog.pg_database WHERE datname = $1", database) == []
    assert sql("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)", roles) == []
