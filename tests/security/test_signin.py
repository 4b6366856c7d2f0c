"""Sign-in, refresh and sessions under attack, against a real server.

- successful sign-ins and refreshes are rate-limited per user and per address (429, JSON error,
  ``Retry-After``), and a refused refresh keeps its token;
- a stranger's wrong passwords lock out their own address only, while a much higher
  per-username ceiling still stops guessing from many addresses;
- per-address limits count networks: an IPv6 /64, an IPv4 prefix of the configured size;
- each user keeps at most ``MAX_REFRESH_FAMILIES`` signed-in sessions;
- a reused refresh token ends every session of its user: sockets close with 4001 and the
  access tokens issued so far get 401.

One node behind a trusted proxy (this host): each test speaks from addresses of its own
(``X-Forwarded-For``), so the per-address limits of one test never reach another's.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.idp import audit_events
from tests.support.server import ServerProcess, wait_for
from tests.support.users import User, signup
from tests.support.ws import WsClient

# IPv4 addresses group by /24 on this node: every address() is in a /24 of its own.
_networks = itertools.count(1)


def address(host: int = 7) -> str:
    """An IPv4 address in a /24 no other call gets."""
    n = next(_networks)
    return f"198.19.{n}.{host}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("signin") / "data",
        trusted_proxies="127.0.0.1",
        address_prefix_ipv4=24,
        signin_limit=3,
        signin_limit_per_username=6,
        signup_limit_per_address=1000,
        auth_rate=0.5,
        auth_burst=6,
        auth_rate_per_address=0.01,
        auth_burst_per_address=8,
        max_refresh_families=2,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def http(node: ServerProcess) -> Iterator[httpx.Client]:
    with node.client() as client:
        yield client


def new_user(http: httpx.Client) -> User:
    name = "u" + uuid.uuid4().hex[:10]
    password = "correct horse 1"
    r = http.post(
        "/v1/auth/signup",
        json={"username": name, "password": password},
        headers={"X-Forwarded-For": address()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return User(body["user_id"], name, password, body["access_token"], body["refresh_token"])


def sign_in(
    http: httpx.Client, user: User, client: str, password: str | None = None
) -> httpx.Response:
    return http.post(
        "/v1/auth/token",
        json={"username": user.username, "password": password or user.password},
        headers={"X-Forwarded-For": client},
    )


def refresh(http: httpx.Client, token: str, client: str) -> httpx.Response:
    return http.post(
        "/v1/auth/refresh", json={"refresh_token": token}, headers={"X-Forwarded-For": client}
    )


def assert_limited(r: httpx.Response) -> None:
    """A 429 with ``Retry-After`` and the JSON error body of DESIGN §4."""
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "rate_limited" and error["message"]


def test_successful_sign_ins_and_refreshes_are_limited_per_user(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    other = new_user(http)
    # 6 per user at once (auth_burst), then one per 2 s — from any address.
    pairs = [sign_in(http, user, address()) for _ in range(5)]
    assert [r.status_code for r in pairs] == [200] * 5
    kept = pairs[-1].json()["refresh_token"]
    assert refresh(http, kept, address()).status_code == 200
    assert_limited(sign_in(http, user, address()))
    # The refresh that was refused kept its token: it still works once the budget refills.
    fresh = pairs[-2].json()["refresh_token"]
    assert_limited(refresh(http, fresh, address()))
    time.sleep(2.2)
    assert refresh(http, fresh, address()).status_code == 200
    # Another user is not affected.
    assert sign_in(http, other, address()).status_code == 200

    def limited() -> list[dict[str, object]]:
        events = audit_events(node.log_text())
        return [e for e in events if e["event"] == "auth_rate_limited"]

    wait_for(lambda: len(limited()) >= 2, timeout=10)
    assert {e["user_id"] for e in limited()} == {user.user_id}


def test_sign_ins_and_refreshes_are_limited_per_address(http: httpx.Client) -> None:
    users = [new_user(http) for _ in range(3)]
    client = address()
    # 8 per address (auth_burst_per_address), whatever the user and the outcome.
    answers = [sign_in(http, users[n % 3], client) for n in range(6)]
    answers.append(refresh(http, answers[3].json()["refresh_token"], client))
    answers.append(sign_in(http, users[1], client, "wrong password!"))
    assert [r.status_code for r in answers] == [200] * 7 + [401]
    assert_limited(sign_in(http, users[2], client))
    assert_limited(refresh(http, users[1].refresh_token, client))
    # The same users from elsewhere are fine.
    assert sign_in(http, users[2], address()).status_code == 200


def test_a_strangers_wrong_passwords_do_not_lock_the_user_out(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    attacker = address()
    for _ in range(3):
        assert sign_in(http, user, attacker, "not it at all").status_code == 401
    # The attacker's address is locked out for this username, right password or not...
    assert_limited(sign_in(http, user, attacker))
    # ...while the real user, from another address, signs in.
    assert sign_in(http, user, address()).status_code == 200

    def blocked() -> list[dict[str, object]]:
        events = audit_events(node.log_text())
        return [e for e in events if e["event"] == "signin_blocked" and e["address"] == attacker]

    (event,) = wait_for(blocked, timeout=10)
    assert event["by"] == "username_and_address"
    assert "not it at all" not in node.log_text()


def test_guessing_one_username_from_many_addresses_hits_its_ceiling(
    http: httpx.Client,
) -> None:
    user = new_user(http)
    # 6 failures per username from all addresses (signin_limit_per_username), 2 from each.
    for _ in range(3):
        client = address()
        for _ in range(2):
            assert sign_in(http, user, client, "guess guess 1").status_code == 401
    assert_limited(sign_in(http, user, address(), "guess guess 2"))
    assert_limited(sign_in(http, user, address()))  # the documented price of the ceiling


def test_addresses_group_by_ipv6_64_and_by_the_configured_ipv4_prefix(
    http: httpx.Client,
) -> None:
    user = new_user(http)
    one, same, other = "2001:db8:5:1::a", "2001:db8:5:1:ffff::1", "2001:db8:5:2::a"
    for _ in range(3):
        assert sign_in(http, user, one, "wrong horse 1").status_code == 401
    # Another address of the same /64 is the same attacker...
    assert_limited(sign_in(http, user, same))
    # ...the next /64 is not.
    assert sign_in(http, user, other).status_code == 200

    user = new_user(http)
    n = next(_networks)
    for host in (1, 2, 3):
        assert sign_in(http, user, f"198.19.{n}.{host}", "wrong horse 1").status_code == 401
    assert_limited(sign_in(http, user, f"198.19.{n}.200"))  # the same /24
    assert sign_in(http, user, address()).status_code == 200


def test_over_ipv6_loopback_connections_count_per_64(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A node listening on ``::1`` behind a proxy on ``::1``: the socket limit per address
    counts a /64, whichever of its addresses the proxy forwards."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("ipv6") / "data",
        host="::1",
        trusted_proxies="::1",
        connect_rate=0.01,
        connect_burst=2,
    )
    proc.start()
    try:
        assert proc.url.startswith("http://[::1]:")

        def handshake(client: str) -> int:
            try:
                with WsClient(proc.ws_url, headers={"X-Forwarded-For": client}):
                    return 101
            except InvalidStatus as exc:
                assert int(exc.response.headers["retry-after"]) >= 1
                return exc.response.status_code

        assert handshake("2001:db8:7:1::1") == 101
        assert handshake("2001:db8:7:1:abcd::2") == 101
        assert handshake("2001:db8:7:1::3") == 429  # a third address of the same /64
        assert handshake("2001:db8:7:2::1") == 101  # the next /64 has its own budget
        with httpx.Client(base_url=proc.url, timeout=10) as http:
            user = signup(http)
            # An event stream holds a connection like a socket: the same budget per /64.
            r = http.get(
                "/v1/settings/events",
                headers={**user.headers, "X-Forwarded-For": "2001:db8:7:1::9"},
            )
            assert_limited(r)
    finally:
        proc.stop()


def test_each_user_keeps_at_most_max_refresh_families(http: httpx.Client) -> None:
    user = new_user(http)  # sign-up: the first family
    # Families are ordered by their last use, to the second.
    time.sleep(1.1)
    second = sign_in(http, user, address()).json()["refresh_token"]
    time.sleep(1.1)
    third = sign_in(http, user, address()).json()["refresh_token"]
    # max_refresh_families=2: the sign-up's family was the least recently used, and went.
    r = refresh(http, user.refresh_token, address())
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token")
    assert refresh(http, second, address()).status_code == 200
    assert refresh(http, third, address()).status_code == 200


def test_a_reused_refresh_token_ends_every_session_of_its_user(
    node: ServerProcess, http: httpx.Client
) -> None:
    user = new_user(http)
    bystander = new_user(http)
    first = sign_in(http, user, address()).json()
    second = refresh(http, first["refresh_token"], address()).json()
    with WsClient(node.ws_url) as ws, WsClient(node.ws_url) as other_ws:
        assert ws.auth(second["access_token"])["type"] == "auth_ok"
        ws.subscribe(None)
        assert other_ws.auth(bystander.token)["type"] == "auth_ok"
        time.sleep(0.01)  # the reuse comes after the tokens were issued, to the millisecond
        # The thief (or the user) presents the already used token again.
        r = refresh(http, first["refresh_token"], address())
        assert (r.status_code, r.json()["error"]["code"]) == (401, "token_reused")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
        assert ws.conn.close_code == 4001
        other_ws.send({"type": "ping"})
        assert other_ws.recv() == {"type": "pong"}
    for token in (first["access_token"], second["access_token"], user.token):
        r = http.get("/v1/settings", headers={"Authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "session_revoked")
    # Every refresh token of the user is void, not only the reused family's.
    for token in (second["refresh_token"], user.refresh_token):
        assert refresh(http, token, address()).status_code == 401
    assert http.get("/v1/settings", headers=bystander.headers).status_code == 200
    # The user signs in again and carries on.
    again = sign_in(http, user, address())
    assert again.status_code == 200
    headers = {"Authorization": f"Bearer {again.json()['access_token']}"}
    assert http.get("/v1/settings", headers=headers).status_code == 200
    wait_for(
        lambda: any(
            e["event"] == "refresh_reuse" and e["user_id"] == user.user_id
            for e in audit_events(node.log_text())
        )
    )


def test_the_defaults_are_safe() -> None:
    from livesettings.config import Config

    config = Config()
    assert (config.signin_limit, config.signin_limit_per_username) == (10, 100)
    assert (config.auth_rate, config.auth_burst) == (0.1, 30)
    assert (config.auth_rate_per_address, config.auth_burst_per_address) == (1.0, 120)
    assert (config.address_prefix_ipv4, config.address_prefix_ipv6) == (32, 64)
    assert config.max_refresh_families == 20
    assert (config.argon2_workers, config.argon2_queue) == (2, 32)
