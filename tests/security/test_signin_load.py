"""Sign-ins in a loop do not stall the node: Argon2 runs on its own threads, and a full backlog
is refused at once with 429 and ``Retry-After`` instead of queueing without bound.

The node hashes with a deliberately expensive Argon2 setting (64 MiB, 6 passes: about half a
second per verify on a small machine), so a verify on the event loop would hold every other
request for that long. The load is bounded in count and time, on loopback only.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess

PASSWORD = "correct horse 1"
SIGNERS = 2  # the backlog holds exactly this many (1 thread + 1 waiting)
SIGN_INS_EACH = 3
LOAD_DEADLINE = 30.0  # seconds


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("argon2") / "data",
        argon2_time_cost=6,
        argon2_memory_cost=65536,
        argon2_workers=1,
        argon2_queue=1,
        auth_burst=1000,
        auth_burst_per_address=1000,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def username(node: ServerProcess) -> str:
    name = "load" + uuid.uuid4().hex[:8]
    with node.client() as http:
        r = http.post("/v1/auth/signup", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
    return name


def _verify_seconds(node: ServerProcess, username: str) -> float:
    with node.client() as http:
        started = time.perf_counter()
        r = http.post("/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return time.perf_counter() - started


def test_healthz_stays_responsive_while_sign_ins_run_in_a_loop(
    node: ServerProcess, username: str
) -> None:
    one = _verify_seconds(node, username)
    assert one > 0.2, f"the Argon2 setting is not expensive enough here ({one:.3f} s)"
    statuses: list[int] = []
    stop = time.monotonic() + LOAD_DEADLINE

    def sign_in_loop() -> None:
        with node.client() as http:
            for _ in range(SIGN_INS_EACH):
                if time.monotonic() > stop:
                    return
                r = http.post("/v1/auth/token", json={"username": username, "password": PASSWORD})
                statuses.append(r.status_code)

    signers = [threading.Thread(target=sign_in_loop) for _ in range(SIGNERS)]
    for t in signers:
        t.start()
    latencies: list[float] = []
    try:
        with node.client() as http:
            time.sleep(0.1)  # let the first verifies start
            while any(t.is_alive() for t in signers) and time.monotonic() < stop:
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
    finally:
        for t in signers:
            t.join(LOAD_DEADLINE)
    assert statuses.count(200) == SIGNERS * SIGN_INS_EACH, statuses
    # With verifies on the loop, a /healthz would wait for the verify under way (and those
    # queued before it): a median of a good fraction of `one`. Off the loop it takes
    # milliseconds; the bound is generous for a loaded machine.
    assert statistics.median(latencies) < min(0.15, one / 3), (one, sorted(latencies))
    assert len(latencies) >= 10, latencies


def test_a_full_hashing_backlog_answers_429_with_retry_after(
    node: ServerProcess, username: str
) -> None:
    go = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def attempt(n: int) -> None:
        with node.client() as http:
            go.wait()
            # Unknown usernames cost a (dummy) verify too, so the lookup cannot be timed.
            name = username if n % 2 else f"nobody{n}"
            answers.append(
                http.post("/v1/auth/token", json={"username": name, "password": PASSWORD})
            )

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOAD_DEADLINE)
    refused = [r for r in answers if r.status_code == 429]
    served = [r for r in answers if r.status_code in (200, 401)]
    assert len(answers) == 6
    assert refused and served, [r.status_code for r in answers]
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"
    # The backlog drains; the node then serves sign-ins again.
    assert _verify_seconds(node, username) > 0
