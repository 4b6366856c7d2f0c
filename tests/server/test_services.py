"""``Services`` in process on SQLite: start and stop, tokens on a clock the test moves (no
sleeping through a lifetime), revocations made elsewhere, and one write through the writer
and the hub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from livesettings.config import Config
from livesettings.errors import TokenExpired, Unauthorized
from livesettings.server.hub import Subscriber
from livesettings.server.services import Services
from tests.support.clock import MovableClock
from tests.support.polling import settle
from tests.support.server import TEST_JWT_SECRET
from tests.support.writes import pending

TTL = 900


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def services(tmp_path: Path, clock: MovableClock) -> AsyncIterator[Services]:
    config = Config.load(
        env={},
        overrides={
            "data_dir": tmp_path / "data",
            "jwt_secret": TEST_JWT_SECRET,
            "access_token_ttl": TTL,
            "argon2_memory_cost": 1024,
            "argon2_time_cost": 1,
        },
    )
    made = Services(config, clock=clock)
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


def issue(services: Services, user_id: str) -> str:
    assert services.issuer is not None
    return services.issuer.issue(user_id)[0]


async def test_start_sets_up_sqlite_and_stop_takes_everything_down(
    tmp_path: Path, clock: MovableClock
) -> None:
    config = Config.load(
        env={}, overrides={"data_dir": tmp_path / "data", "jwt_secret": TEST_JWT_SECRET}
    )
    services = Services(config, clock=clock)
    assert not services.started
    await services.start()
    assert services.started
    assert (tmp_path / "data" / "livesettings.db").exists()
    assert (tmp_path / "data" / "master.keys").exists()
    closed: list[tuple[int, str]] = []

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))

    services.connections.add("u1", close)
    await services.stop()
    assert not services.started and services.draining
    assert closed == [(1001, "server shutting down")]


async def test_tokens_expire_on_the_clock_passed_in(
    services: Services, clock: MovableClock
) -> None:
    token = issue(services, "alice")
    claims = await services.authenticate(token, address="127.0.0.1", via="http")
    assert claims.sub == "alice"
    assert claims.exp == pytest.approx(clock.time() + TTL, abs=1)
    clock.advance(TTL - 5)
    assert (await services.authenticate(token, address="127.0.0.1", via="http")).sub == "alice"
    clock.advance(10)  # past its expiry: the cached verification does not keep it alive
    with pytest.raises(TokenExpired):
        await services.authenticate(token, address="127.0.0.1", via="http")
    with pytest.raises(TokenExpired):
        services.verify_token(token)
    with pytest.raises(TokenExpired):
        services.check_expiry(claims)


async def test_revoking_a_user_voids_the_tokens_issued_before(
    services: Services, clock: MovableClock
) -> None:
    old = issue(services, "bob")
    await services.authenticate(old, address="127.0.0.1", via="http")
    closed: list[int] = []

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    services.connections.add("bob", close)
    clock.advance(0.01)  # revocations void tokens issued before them, to the millisecond
    await services.revoke_user("bob")
    assert closed == [4001]
    with pytest.raises(Unauthorized) as error:
        await services.authenticate(old, address="127.0.0.1", via="http")
    assert error.value.code == "session_revoked"
    clock.advance(1)
    fresh = issue(services, "bob")
    assert (await services.authenticate(fresh, address="127.0.0.1", via="http")).sub == "bob"


async def test_revocations_made_by_another_process_are_polled(
    services: Services, clock: MovableClock
) -> None:
    token = issue(services, "carol")
    assert services.verify_token(token).sub == "carol"
    closed: list[tuple[str, int]] = []

    async def close_user(code: int, reason: str) -> None:
        closed.append(("user", code))

    async def close_token(code: int, reason: str) -> None:
        closed.append(("token", code))

    services.connections.add("carol", close_user)
    services.connections.add("dan", close_token, jti="jti-of-dan")
    # As the CLI or another node would: straight into the database.
    await services.store.revoke_sessions("carol", clock.time_ms() + 1)
    await services.store.revoke_token("jti-of-dan", int(clock.time()) + 60)
    await settle(lambda: len(closed) == 2)
    assert sorted(closed) == [("token", 4001), ("user", 4001)]
    with pytest.raises(Unauthorized):
        services.verify_token(token)
    assert "jti-of-dan" in services.revoked_tokens


async def test_a_write_goes_through_the_writer_to_the_hubs_subscribers(
    services: Services,
) -> None:
    frames: list[dict[str, Any]] = []
    sub = Subscriber("erin", lambda text: frames.append(json.loads(text)))
    assert await services.hub.subscribe(sub, None) == 0
    outcome = await services.writer.submit(pending("erin", {"api_keys": {"openai": "sk-1234"}}))
    assert (outcome.error, outcome.revision) == (None, 1)
    await settle(lambda: any(f["type"] == "change" for f in frames))
    (change,) = [f for f in frames if f["type"] == "change"]
    assert change["revision"] == 1
    assert "sk-1234" not in json.dumps(change)  # the view masks secrets
    services.hub.unsubscribe(sub)
