"""The benchmark harness, run for a few seconds at a low rate against a real server.

This proves ``bench/run.py`` and ``bench/load.py`` work end to end — server started, devices
subscribed, open-loop writes sent, every change matched to every device, RESULTS.md written —
without asserting any timing, which depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_harness_runs_and_loses_nothing(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    runs_file = tmp_path / "runs.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--users=4",
            "--devices=3",
            "--baseline-rate=20",
            "--baseline-duration=1.5",
            "--warmup=0.5",
            "--duration=1.5",
            "--rates=40",
            "--profile=off",
            "--refine=0",
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
    runs = json.loads(runs_file.read_text())
    assert [r["plan"]["rate"] for r in runs] == [20.0, 40.0]
    for run in runs:
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
        assert (run["plan"]["users"], run["plan"]["devices"]) == (4, 3)
        assert run["writes"] > 0
        assert run["ok"] == run["writes"]
        assert run["expected_deliveries"] == run["received"] == run["writes"] * 3
        assert run["latency"]["count"] == run["measured_writes"] * 3
    text = results.read_text()
    assert "## Targets" in text and "## Runs" in text and "## Setup" in text
    assert "LIVESETTINGS_CONNECT_BURST=100000" in text
    assert not (tmp_path / "work" / "data").exists()
