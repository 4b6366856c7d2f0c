"""One user flooding deletes cannot stall another user's writes (the write path is shared).

A delete leaves a tombstone even for a path that never existed; unbounded, one user's
tombstones made every merge of theirs slower and the one writer served everyone behind them.
Now tombstones are bounded per document, the merge finds records through a prefix index, a
write's rate-limit cost grows with its leaf count, and the writer takes users in turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.users import User, signup

FLOOD_SECONDS = 10.0
FLOOD_REQUESTS = 400  # per flooding connection, whichever comes first
DELETES = 1000  # the most one patch may edit


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("flood") / "data")  # the default limits
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def flood(
    node: ServerProcess, user: User, lane: int, stop: threading.Event, codes: list[int]
) -> None:
    deadline = time.monotonic() + FLOOD_SECONDS
    with httpx.Client(base_url=node.url, timeout=30.0) as http:
        for number in range(FLOOD_REQUESTS):
            if stop.is_set() or time.monotonic() > deadline:
                return
            start = (lane * FLOOD_REQUESTS + number) * DELETES
            patch = {"preferences": {f"k{n}": None for n in range(start, start + DELETES)}}
            response = http.patch("/v1/settings", json=patch, headers=user.headers)
            codes.append(response.status_code)
            if response.status_code == 429:  # at its rate limit: as fast as it is let
                wait = float(response.headers["retry-after"])
                stop.wait(min(wait, max(0.0, deadline - time.monotonic())))


def test_another_users_writes_stay_fast_while_one_user_floods_deletes(
    node: ServerProcess,
) -> None:
    with node.client() as http:
        attacker = signup(http)
        victim = signup(http)
    stop = threading.Event()
    codes: list[int] = []
    lanes = [
        threading.Thread(target=flood, args=(node, attacker, lane, stop, codes))
        for lane in range(3)
    ]
    latencies: list[float] = []
    try:
        for lane in lanes:
            lane.start()
        time.sleep(1.0)  # let the flood fill its burst and the writer's queue
        with httpx.Client(base_url=node.url, timeout=30.0) as http:
            for number in range(20):
                started = time.perf_counter()
                response = http.patch(
                    "/v1/settings", json={"preferences": {"n": number}}, headers=victim.headers
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                time.sleep(0.25)
    finally:
        stop.set()
        for lane in lanes:
            lane.join(timeout=60)
    # The flood really ran at its rate limit: some of it committed, the rest was refused.
    assert codes.count(200) >= 5
    assert 429 in codes
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    with node.client() as http:
        mine = http.get("/v1/settings", headers=victim.headers).json()
        theirs = http.get("/v1/settings", headers=attacker.headers).json()
    assert mine["settings"]["preferences"] == {"n": 19}
    assert theirs["settings"]["preferences"] == {}


def test_a_patch_may_edit_at_most_a_thousand_values(node: ServerProcess) -> None:
    with node.client() as http:
        user = signup(http)
        patch = {"preferences": {f"k{n}": None for n in range(1001)}}
        response = http.patch("/v1/settings", json=patch, headers=user.headers)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "too_large"
        assert error["details"] == {"limit": 1000, "leaves": 1001}
        assert http.get("/v1/settings", headers=user.headers).json()["revision"] == 0
