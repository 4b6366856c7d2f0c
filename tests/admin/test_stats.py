"""``GET /v1/admin/stats`` and the sampler behind it; ``/metrics`` on prometheus-client.

The sampler's arithmetic is checked on a real :class:`Metrics` with a clock the test moves;
the endpoint, on a real server process under a known load.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesettings.server.metrics import Metrics
from livesettings.server.stats import POINTS, StatsSampler, quantile
from tests.support.admins import admin_user
from tests.support.clock import MovableClock
from tests.support.server import ServerProcess, wait_for
from tests.support.sse import SseReader
from tests.support.users import User, signup
from tests.support.ws import WsClient

# -- the sampler ------------------------------------------------------------------------------


def _sampler(points: int = POINTS) -> tuple[Metrics, StatsSampler, MovableClock, dict[str, int]]:
    metrics, clock = Metrics(), MovableClock()
    conns = {"ws": 0, "sse": 0}
    sampler = StatsSampler(metrics, lambda: dict(conns), clock=clock, points=points)
    sampler.reset()
    return metrics, sampler, clock, conns


def test_the_ring_buffer_keeps_the_last_900_points() -> None:
    metrics, sampler, clock, _ = _sampler()
    for i in range(POINTS + 100):
        metrics.changes.inc(i % 3)
        clock.advance(1.0)
        sampler.sample()
    series = sampler.series()
    assert len(sampler.points) == POINTS
    assert len(series["t"]) == POINTS
    assert all(len(v) == POINTS for k, v in series.items() if k != "errors_per_s")
    # The oldest 100 went: the first point kept is the 101st sampled.
    assert series["writes_per_s"][:3] == [100 % 3, 101 % 3, 102 % 3]
    assert series["t"] == sorted(series["t"])


def test_each_point_counts_its_own_second() -> None:
    metrics, sampler, clock, conns = _sampler()
    metrics.changes.inc(5)  # before the point: counted in it
    metrics.conflicts.inc(kept="theirs")
    metrics.conflicts.inc(kept="yours")
    for size in (3, 5):
        metrics.batch_size.observe(size)
    for ms in range(1, 101):  # 1 … 100 ms
        metrics.push_latency.observe(ms / 1000)
    metrics.errors.inc(code="not_found")
    metrics.errors.inc(code="not_found")
    metrics.errors.inc(code="no-such-code")  # counted under "other", never as itself
    conns.update(ws=3, sse=2)
    clock.advance(1.0)
    first = sampler.sample()
    assert (first.writes_per_s, first.conflicts_per_s, first.commit_size) == (5, 2, 4.0)
    assert (first.push_p50_ms, first.push_p99_ms) == (50.0, 99.0)
    assert (first.ws_connections, first.sse_connections) == (3, 2)
    assert dict(first.errors) == {"not_found": 2.0, "other": 1.0}

    clock.advance(1.0)
    quiet = sampler.sample()  # nothing happened: zeros, and null where nothing was measured
    assert (quiet.writes_per_s, quiet.conflicts_per_s) == (0, 0)
    assert (quiet.push_p50_ms, quiet.push_p99_ms, quiet.commit_size) == (None, None, None)
    assert quiet.errors == ()

    metrics.errors.inc(code="invalid")
    clock.advance(1.0)
    sampler.sample()
    series = sampler.series()
    assert series["errors_per_s"] == {
        "invalid": [0.0, 0.0, 1.0],
        "not_found": [2.0, 0.0, 0.0],
        "other": [1.0, 0.0, 0.0],
    }
    assert series["push_p50_ms"] == [50.0, None, None]
    # Only the points after `since`, and only the codes seen in them.
    newer = sampler.series(since=series["t"][1])
    assert newer["t"] == series["t"][2:]
    assert newer["errors_per_s"] == {"invalid": [1.0]}
    assert sampler.series(since=series["t"][-1])["t"] == []


def test_a_busy_second_keeps_a_bounded_sample_of_push_latencies() -> None:
    metrics, sampler, clock, _ = _sampler()
    for i in range(20_000):  # uniform 0 … 20 s
        metrics.push_latency.observe(i / 1000)
    clock.advance(1.0)
    point = sampler.sample()
    assert point.push_p50_ms is not None and point.push_p99_ms is not None
    # A uniform sample of 1,024: the quantiles land near the true ones.
    assert 8_000 < point.push_p50_ms < 12_000
    assert 19_000 < point.push_p99_ms <= 20_000
    assert metrics.push_latency.count == 20_000  # the histogram itself counted every one
    assert metrics.push_latency.take() == []


def test_quantile_is_nearest_rank() -> None:
    assert quantile([7.0], 0.99) == 7.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert quantile([float(i) for i in range(1, 101)], 0.29) == 29.0


def test_error_labels_stay_bounded() -> None:
    metrics = Metrics()
    for i in range(1000):
        metrics.errors.inc(code=f"made-up-{i}")
    metrics.errors.inc(code="not_found")
    assert metrics.errors.totals() == {"other": 1000.0, "not_found": 1.0}
    text = metrics.render()
    assert "made-up" not in text
    assert 'livesettings_errors_total{code="other"} 1000.0' in text


# -- the endpoint, on a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    node = ServerProcess(
        tmp_path_factory.mktemp("stats") / "data",
        allow_signup="true",
        signup_limit_per_address=1000,
        connect_burst=1000,
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> User:
    return admin_user(server)


def _stats(http: httpx.Client, admin: User, **params: Any) -> dict[str, Any]:
    r = http.get("/v1/admin/stats", params=params, headers=admin.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _total(http: httpx.Client, admin: User, name: str) -> float:
    return float(sum(_stats(http, admin)["series"][name]))


def _error_total(http: httpx.Client, admin: User, code: str) -> float:
    return float(sum(_stats(http, admin)["series"]["errors_per_s"].get(code, [])))


def test_writes_conflicts_and_errors_add_up_to_the_load(server: ServerProcess, admin: User) -> None:
    with server.client() as http:
        user = signup(http)
        writes, conflicts = (
            _total(http, admin, "writes_per_s"),
            _total(http, admin, "conflicts_per_s"),
        )
        invalid = _error_total(http, admin, "invalid_value")
        for i in range(25):
            r = http.patch("/v1/settings", json={"preferences": {"n": i}}, headers=user.headers)
            assert r.status_code == 200, r.text
        # One edit, then three made on the same old revision with an older clock: each is
        # reported as a conflict the newer value won, and makes no revision.
        base = {**user.headers, "X-Base-Revision": "25"}
        r = http.patch(
            "/v1/settings", json={"theme": "dark"}, headers={**base, "X-Edited-At": "2000"}
        )
        assert r.json()["revision"] == 26
        for _ in range(3):
            r = http.patch(
                "/v1/settings",
                json={"theme": "light"},
                headers={**base, "X-Client-Id": "late", "X-Edited-At": "1000"},
            )
            assert r.json()["revision"] == 26 and len(r.json()["conflicts"]) == 1, r.text
        for _ in range(4):
            r = http.patch("/v1/settings", json={"theme": "purple"}, headers=user.headers)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_value"

        wait_for(lambda: _total(http, admin, "writes_per_s") - writes == 26, timeout=5)
        wait_for(lambda: _total(http, admin, "conflicts_per_s") - conflicts == 3, timeout=5)
        wait_for(lambda: _error_total(http, admin, "invalid_value") - invalid == 4, timeout=5)
        body = _stats(http, admin)
        sizes = [s for s in body["series"]["commit_size"] if s is not None]
        assert sizes and all(s >= 1 for s in sizes)


def test_connections_and_push_latency(server: ServerProcess, admin: User) -> None:
    with server.client() as http:
        user = signup(http)
        with WsClient(server.ws_url) as ws:
            assert ws.auth(user.token)["type"] == "auth_ok"
            ws.subscribe(None)
            stream = SseReader(server.url, user.token)
            try:
                stream.wait_for(2)  # snapshot, synced

                def seen(body: dict[str, Any]) -> bool:
                    series = body["series"]
                    return bool(series["t"]) and (
                        series["ws_connections"][-1] >= 1 and series["sse_connections"][-1] >= 1
                    )

                wait_for(lambda: seen(_stats(http, admin)), timeout=5)
                since = time.time()
                for i in range(20):
                    http.patch("/v1/settings", json={"preferences": {"p": i}}, headers=user.headers)
                for _ in range(20):
                    assert ws.recv()["type"] == "change"

                def pushed() -> list[tuple[float, float]]:
                    series = _stats(http, admin, since=since)["series"]
                    return [
                        (p50, p99)
                        for p50, p99 in zip(
                            series["push_p50_ms"], series["push_p99_ms"], strict=True
                        )
                        if p50 is not None
                    ]

                latencies = wait_for(pushed, timeout=5)
                for p50, p99 in latencies:
                    assert 0 <= p50 <= p99 < 1000
                nodes = _stats(http, admin)["nodes"]
                assert nodes[0]["self"] is True and nodes[0]["connections"] >= 2
            finally:
                stream.close()
        # The socket closed: its count comes back down. (A closed event stream is noticed at
        # its next write: a change or the keepalive.)
        wait_for(lambda: _stats(http, admin)["series"]["ws_connections"][-1] == 0, timeout=5)


def test_the_shape_and_since(server: ServerProcess, admin: User) -> None:
    with server.client() as http:
        wait_for(lambda: len(_stats(http, admin)["series"]["t"]) >= 2, timeout=5)
        body = _stats(http, admin)
        assert body["interval_s"] == 1
        assert body["version"] and body["node_id"] == body["nodes"][0]["node_id"]
        assert body["started_at"] <= body["now"]
        series = body["series"]
        n = len(series["t"])
        for name, values in series.items():
            if name == "errors_per_s":
                assert all(len(v) == n for v in values.values())
            else:
                assert len(values) == n, name
        # Points are a second apart (give or take the event loop).
        gaps = [b - a for a, b in zip(series["t"], series["t"][1:], strict=False)]
        assert all(0.5 < gap < 1.5 for gap in gaps), gaps
        newer = _stats(http, admin, since=series["t"][-2])["series"]
        assert newer["t"][0] == series["t"][-1]
        assert (
            http.get("/v1/admin/stats", params={"since": "soon"}, headers=admin.headers).status_code
            == 422
        )


def test_only_admins_get_the_stats(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
        r = http.get("/v1/admin/stats", headers=user.headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert "series" not in r.text
        assert http.get("/v1/admin/stats").status_code == 401
        spec = http.get("/openapi.json").json()
        operation = spec["paths"]["/v1/admin/stats"]["get"]
        assert operation["tags"] == ["admin"]
        assert {"200", "401", "403"} <= set(operation["responses"])


def test_metrics_keep_their_names_and_add_the_process_ones(
    server: ServerProcess, admin: User
) -> None:
    with server.client() as http:
        text = http.get("/metrics").text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    for name in (
        "livesettings_connections",
        "livesettings_changes_total",
        "livesettings_mutations_total",
        "livesettings_conflicts_total",
        "livesettings_errors_total",
        "livesettings_commits_total",
        "livesettings_pushes_total",
        "livesettings_changelog_reads_total",
        "livesettings_fanout_reads_total",
        "livesettings_bus_changes_carried_total",
        "livesettings_sql_writes_total",
        "livesettings_commit_batch_size_bucket",
        "livesettings_write_latency_seconds_count",
        "livesettings_push_latency_seconds_sum",
        "livesettings_password_hashes_in_flight",
        "livesettings_bus_reconnects",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in names, name
    assert "# TYPE livesettings_push_latency_seconds histogram" in text
    assert 'livesettings_mutations_total{outcome="committed"}' in text
    # Error codes only from the spec's list: no user id, no free text.
    for line in text.splitlines():
        if line.startswith("livesettings_errors_total{"):
            assert line.split('"')[1].replace("_", "").isalpha(), line


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first, second = Metrics(), Metrics()
    first.changes.inc(3)
    assert second.changes.get() == 0
    assert "livesettings_changes_total 0.0" in second.render()
    assert "livesettings_changes_total 3.0" in first.render()
