"""The authorisation matrix: one user's token against another user's data, on every route.

Mallory (a plain user token) tries to read, write, revert, subscribe to and list the changes of
Alice, naming her by id in the path, the query, the body or a frame, over every HTTP route the
OpenAPI document lists, every WebSocket action and the event stream. Every attempt must be
refused — or, where a route only ever acts on the caller, answered about Mallory alone — and
no byte of Alice's data may come back. Runs on every storage backend.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

CANARY = "sk-canary-Zq7xW3vN9pL2mK8jH4gF"
ALICE_PREFERENCE = "alice-only-7b1f"
ALICE_PROVIDER = "alice-provider-model-3c9d"
ALICE_LANGUAGE = "x-alice7"
ALICE_CLIENT = "alice-client-5e2a"


@dataclass
class Scene:
    server: ServerProcess
    http: httpx.Client
    alice: User
    mallory: User
    alice_mutations: list[str]
    alice_team: str = ""

    def markers(self) -> list[str]:
        """What only Alice's data contains (not what Mallory sends, such as her username)."""
        return [
            ALICE_PREFERENCE,
            ALICE_PROVIDER,
            ALICE_LANGUAGE,
            ALICE_CLIENT,
            CANARY,
            CANARY[:-4],
            CANARY[-4:],  # the masked view's last4
            *self.alice_mutations,
        ]

    def assert_clean(self, text: str, what: object) -> None:
        for marker in self.markers():
            assert marker not in text, (what, marker, text[:300])

    def alice_state(self) -> tuple[Any, Any]:
        h = self.alice.headers
        doc = self.http.get("/v1/settings", headers=h).json()
        changes = self.http.get("/v1/settings/changes?since=0", headers=h).json()
        return doc, changes


@pytest.fixture
def scene(server: ServerProcess) -> Iterator[Scene]:
    with server.client() as http:
        alice, mallory = signup(http), signup(http, password="mallory pass 9")
        mutations = [f"alice-mutation-{uuid.uuid4().hex[:8]}" for _ in range(2)]
        for mutation_id, patch in zip(
            mutations,
            [
                {
                    "theme": "dark",
                    "language": ALICE_LANGUAGE,
                    "preferences": {"private": ALICE_PREFERENCE},
                    "api_keys": {"openai": CANARY},
                },
                {"ai_providers": {"default": "openai", "openai": {"model": ALICE_PROVIDER}}},
            ],
            strict=True,
        ):
            r = http.patch(
                "/v1/settings",
                json=patch,
                headers={
                    **alice.headers,
                    "Idempotency-Key": mutation_id,
                    "X-Client-Id": ALICE_CLIENT,
                },
            )
            assert r.status_code == 200, r.text
        # Alice's team, holding her data too (Mallory is no member of it).
        team = http.post("/v1/teams", json={"name": "alice-team"}, headers=alice.headers)
        assert team.status_code == 201, team.text
        team_id = team.json()["team_id"]
        r = http.patch(
            f"/v1/teams/{team_id}/settings",
            json={"preferences": {"private": ALICE_PREFERENCE}, "api_keys": {"openai": CANARY}},
            headers={**alice.headers, "X-Client-Id": ALICE_CLIENT},
        )
        assert r.status_code == 200, r.text
        yield Scene(server, http, alice, mallory, mutations, team_id)


# How each HTTP route is attacked. ``{alice}`` is Alice's user id; "own" routes only ever act
# on the caller, so they may answer 2xx — about Mallory.
REFUSED = "refused"
OWN = "own"


@dataclass(frozen=True)
class Attack:
    path: str
    body: Any = None
    headers: dict[str, str] | None = None
    expect: str = REFUSED
    statuses: tuple[int, ...] = (403,)


def _team_attacks(alice: User, team_id: str) -> dict[tuple[str, str], list[Attack]]:
    """Alice's team, to Mallory who is not in it: 404 everywhere (existence does not leak)."""
    a, t = alice.user_id, f"/v1/teams/{team_id}"
    nf = (404,)
    return {
        ("post", "/v1/teams"): [Attack("/v1/teams", {"name": "mallory's"}, expect=OWN)],
        ("get", "/v1/teams"): [Attack(f"/v1/teams?user_id={a}", expect=OWN)],
        ("delete", "/v1/teams/{team_id}"): [Attack(t, statuses=nf)],
        ("get", "/v1/teams/{team_id}/members"): [Attack(f"{t}/members", statuses=nf)],
        ("put", "/v1/teams/{team_id}/members/{user_id}"): [
            Attack(f"{t}/members/{a}", {"role": "viewer"}, statuses=nf),
            Attack(
                f"{t}/members/{alice.username}",
                {"username": alice.username, "role": "viewer"},
                statuses=nf,
            ),
        ],
        ("delete", "/v1/teams/{team_id}/members/{user_id}"): [
            Attack(f"{t}/members/{a}", statuses=nf)
        ],
        ("get", "/v1/teams/{team_id}/settings"): [Attack(f"{t}/settings", statuses=nf)],
        ("patch", "/v1/teams/{team_id}/settings"): [
            Attack(f"{t}/settings", {"theme": "dark"}, statuses=nf)
        ],
        ("put", "/v1/teams/{team_id}/settings"): [
            Attack(f"{t}/settings", {"theme": "dark"}, {"If-Match": '"1"'}, statuses=nf)
        ],
        ("get", "/v1/teams/{team_id}/settings/changes"): [
            Attack(f"{t}/settings/changes?since=0", statuses=nf)
        ],
        ("post", "/v1/teams/{team_id}/settings/revert"): [
            Attack(f"{t}/settings/revert", {"revision": 0}, statuses=nf)
        ],
        ("get", "/v1/teams/{team_id}/settings/events"): [
            Attack(f"{t}/settings/events", statuses=nf)
        ],
        ("get", "/v1/teams/{team_id}/secrets/{name}"): [Attack(f"{t}/secrets/openai", statuses=nf)],
        ("get", "/v1/settings/effective"): [
            Attack(f"/v1/settings/effective?team={team_id}", statuses=nf)
        ],
    }


def _attacks(alice: User, team_id: str) -> dict[tuple[str, str], list[Attack]]:
    a = alice.user_id
    q = f"user_id={a}"
    return {
        **_team_attacks(alice, team_id),
        ("post", "/v1/auth/signup"): [
            Attack(
                "/v1/auth/signup",
                {"username": alice.username, "password": "x" * 12},
                None,
                REFUSED,
                (409,),
            ),
            Attack(
                "/v1/auth/signup",
                {"username": "m" + uuid.uuid4().hex[:8], "password": "x" * 12, "user_id": a},
                None,
                REFUSED,
                (422,),
            ),
        ],
        ("post", "/v1/auth/token"): [
            Attack(
                "/v1/auth/token",
                {"username": alice.username, "password": "wrong guess 1"},
                None,
                REFUSED,
                (401,),
            ),
            Attack(
                "/v1/auth/token",
                {"username": alice.username, "password": "x", "user_id": a},
                None,
                REFUSED,
                (422,),
            ),
        ],
        ("post", "/v1/auth/refresh"): [
            Attack("/v1/auth/refresh", {"refresh_token": a}, None, REFUSED, (401,)),
            Attack("/v1/auth/refresh", {"refresh_token": "x", "user_id": a}, None, REFUSED, (422,)),
        ],
        ("post", "/v1/auth/password"): [
            Attack(
                f"/v1/auth/password?{q}",
                {"current_password": alice.password, "new_password": "mallory owns it 1"},
                None,
                REFUSED,
                (401,),
            ),
            Attack(
                "/v1/auth/password",
                {"current_password": "x", "new_password": "y" * 9, "user_id": a},
                None,
                REFUSED,
                (422,),
            ),
        ],
        ("get", "/v1/settings"): [
            Attack(f"/v1/settings?{q}", expect=OWN),
            Attack("/v1/settings", headers={"X-User-Id": a}, expect=OWN),
        ],
        ("patch", "/v1/settings"): [
            Attack(f"/v1/settings?{q}", {"theme": "system"}, expect=OWN),
            Attack("/v1/settings", {"user_id": a, "theme": "light"}, None, REFUSED, (422,)),
            Attack(
                "/v1/settings",
                {"preferences": {"x": 1}},
                {"X-Client-Id": "mallory-tab", "Idempotency-Key": "m-own-1"},
                OWN,
            ),
        ],
        ("put", "/v1/settings"): [
            Attack(f"/v1/settings?{q}", {"theme": "dark"}, {"If-Match": "*"}, REFUSED, (400,)),
            Attack(
                "/v1/settings",
                {"theme": "dark", "user_id": a},
                {"If-Match": '"0"'},
                REFUSED,
                (412, 422),
            ),
        ],
        ("get", "/v1/settings/changes"): [
            Attack(f"/v1/settings/changes?since=0&{q}", expect=OWN),
        ],
        ("post", "/v1/settings/revert"): [
            Attack(f"/v1/settings/revert?{q}", {"revision": 999}, None, REFUSED, (422,)),
            Attack(f"/v1/settings/revert?{q}", {"revision": 1}, expect=OWN),
            Attack("/v1/settings/revert", {"revision": 0, "user_id": a}, None, REFUSED, (422,)),
        ],
        ("get", "/v1/settings/events"): [
            Attack(f"/v1/settings/events?{q}", None, None, REFUSED, (403,)),
            Attack(
                f"/v1/settings/events?{q}&since=0", None, {"Last-Event-ID": "0"}, REFUSED, (403,)
            ),
        ],
        ("get", "/v1/schema"): [Attack(f"/v1/schema?{q}", expect=OWN)],
        ("get", "/v1/users/{user_id}/settings"): [Attack(f"/v1/users/{a}/settings")],
        ("patch", "/v1/users/{user_id}/settings"): [
            Attack(f"/v1/users/{a}/settings", {"theme": "light"}),
            Attack(f"/v1/users/{a}/settings", {"api_keys": {"openai": None}}),
        ],
        ("get", "/v1/users/{user_id}/secrets/{name}"): [
            Attack(f"/v1/users/{a}/secrets/openai"),
            Attack(f"/v1/users/{a}/secrets/missing"),
        ],
        ("delete", "/v1/users/{user_id}"): [Attack(f"/v1/users/{a}")],
        ("get", "/v1/users/{user_id}/export"): [Attack(f"/v1/users/{a}/export")],
        ("get", "/v1/account/export"): [Attack(f"/v1/account/export?{q}", expect=OWN)],
        ("delete", "/v1/account"): [
            # Mallory's token is fresh, so a wrong password is what keeps her own account.
            Attack(f"/v1/account?{q}", {"password": "wrong guess 2"}, None, REFUSED, (403,)),
            Attack("/v1/account", {"password": "x", "user_id": a}, None, REFUSED, (422,)),
        ],
        ("get", "/healthz"): [Attack(f"/healthz?{q}", expect=OWN)],
        ("get", "/readyz"): [Attack(f"/readyz?{q}", expect=OWN)],
        ("get", "/metrics"): [Attack(f"/metrics?{q}", expect=OWN)],
        ("get", "/v1/admin/stats"): [Attack(f"/v1/admin/stats?{q}")],  # admins only: 403
        # The other admin routes: 403 to Mallory, whatever she names.
        ("get", "/v1/admin/users"): [Attack(f"/v1/admin/users?q={a}&{q}")],
        ("get", "/v1/admin/teams"): [Attack(f"/v1/admin/teams?q={team_id}&{q}")],
        ("get", "/v1/admin/audit"): [Attack(f"/v1/admin/audit?{q}")],
        ("post", "/v1/admin/users/{user_id}/revoke"): [Attack(f"/v1/admin/users/{a}/revoke")],
        ("delete", "/v1/admin/users/{user_id}"): [Attack(f"/v1/admin/users/{a}")],
        # Last: it ends Mallory's sessions (and must end nobody else's).
        ("post", "/v1/auth/logout"): [
            Attack(f"/v1/auth/logout?{q}", {"user_id": a}, None, OWN),
        ],
    }


def test_every_http_route_refuses_another_users_data(scene: Scene) -> None:
    http, alice, mallory = scene.http, scene.alice, scene.mallory
    before = scene.alice_state()
    operations = {
        (method, path)
        for path, item in http.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    attacks = _attacks(alice, scene.alice_team)
    # A route added later must be classified here before this test passes again.
    assert operations == set(attacks), operations ^ set(attacks)

    with WsClient(scene.server.ws_url) as alice_socket:
        alice_socket.auth(alice.token)
        alice_socket.subscribe(None)
        for (method, _), tries in attacks.items():
            for attack in tries:
                headers = {**mallory.headers, **(attack.headers or {})}
                r = http.request(
                    method.upper(),
                    attack.path,
                    json=attack.body,
                    headers=headers,
                )
                what = (method, attack.path, attack.body, r.status_code)
                scene.assert_clean(r.text, what)
                scene.assert_clean(json.dumps(dict(r.headers)), what)
                if attack.expect == REFUSED:
                    assert r.status_code in attack.statuses, (what, r.text)
                else:
                    assert r.is_success, (what, r.text)
                    body = r.json() if r.headers.get("content-type") == "application/json" else {}
                    if isinstance(body, dict) and "user_id" in body:
                        assert body["user_id"] == mallory.user_id, what
        # Alice's socket saw nothing of Mallory's doings, and lives on after her logout.
        assert alice_socket.no_frame(timeout=0.3)
        alice_socket.send({"type": "ping"})
        assert alice_socket.recv() == {"type": "pong"}

    assert scene.alice_state() == before
    assert http.get("/v1/settings", headers=alice.headers).status_code == 200
    r = http.post("/v1/auth/token", json={"username": alice.username, "password": alice.password})
    assert r.status_code == 200  # her password is hers still
    # Mallory's own writes went to Mallory's document.
    own = http.post(
        "/v1/auth/token", json={"username": mallory.username, "password": mallory.password}
    )
    mine = http.get(
        "/v1/settings", headers={"Authorization": f"Bearer {own.json()['access_token']}"}
    )
    assert mine.json()["revision"] >= 2 and mine.json()["settings"]["theme"] == "system"


def test_every_websocket_action_refuses_another_users_data(scene: Scene) -> None:
    alice, mallory = scene.alice, scene.mallory
    before = scene.alice_state()
    a = alice.user_id
    with WsClient(scene.server.ws_url) as ws:
        assert ws.auth(mallory.token)["user_id"] == mallory.user_id
        ws.send({"type": "subscribe", "since": None, "user_id": a})
        assert ws.recv()["code"] == "forbidden"
        ws.send({"type": "subscribe", "since": 0, "user_id": a})
        assert ws.recv()["code"] == "forbidden"
        ws.update({"theme": "light"}, base=0, mutation_id="m1", user_id=a)
        err = ws.recv()
        assert (err["type"], err["code"], err["mutation_id"]) == ("error", "forbidden", "m1")
        # Replaying one of Alice's mutation ids only ever names Mallory's own history.
        ws.update({"theme": "dark"}, mutation_id=scene.alice_mutations[0])
        ack = ws.recv()
        assert ack["type"] == "ack" and ack["revision"] == 1
        ws.update({"user_id": a}, mutation_id="m2")
        assert ws.recv()["code"] == "unknown_field"
        ws.send({"type": "unsubscribe", "user_id": a})
        # Mallory's own subscription carries Mallory's document only.
        frames = ws.subscribe(None)
        assert frames[0]["settings"]["theme"] == "dark"
        # Live changes of Alice never reach Mallory's socket.
        scene.http.patch("/v1/settings", json={"theme": "system"}, headers=alice.headers)
        assert ws.no_frame(timeout=0.5)
        # Switching the socket to Alice's token ends it.
        ws.send({"type": "auth", "token": alice.token})
        err = ws.recv()
        assert err["type"] == "error" and err["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001
        for frame in ws.frames:
            # An ack echoes the mutation id Mallory sent, even when she borrowed Alice's.
            shown = {k: v for k, v in frame.items() if frame["type"] != "ack" or k != "mutation_id"}
            scene.assert_clean(json.dumps(shown), frame)
    after = scene.alice_state()
    assert after[0]["revision"] == before[0]["revision"] + 1  # only her own write


def test_the_event_stream_refuses_another_users_data(scene: Scene) -> None:
    from tests.support.sse import SseReader

    alice, mallory = scene.alice, scene.mallory
    r = scene.http.get(
        f"/v1/settings/events?user_id={alice.user_id}&since=0", headers=mallory.headers
    )
    assert r.status_code == 403
    scene.assert_clean(r.text, "events")
    sse = SseReader(scene.server.url, mallory.token)
    try:
        assert [f["type"] for _, f in sse.wait_for(2)] == ["snapshot", "synced"]
        scene.http.patch("/v1/settings", json={"theme": "system"}, headers=alice.headers)
        scene.http.patch("/v1/settings", json={"theme": "dark"}, headers=mallory.headers)
        events = sse.wait_for(3)
        assert events[-1][1]["type"] == "change" and events[-1][1]["patch"] == {"theme": "dark"}
        for _, frame in events:
            scene.assert_clean(json.dumps(frame), frame)
    finally:
        sse.close()


def test_no_request_names_another_user_without_a_token(scene: Scene) -> None:
    """Without any token, nothing of Alice's answers either (a baseline for the matrix)."""
    a = scene.alice.user_id
    for method, path in [
        ("GET", "/v1/settings"),
        ("GET", f"/v1/users/{a}/settings"),
        ("GET", f"/v1/users/{a}/secrets/openai"),
        ("GET", f"/v1/settings/events?user_id={a}"),
    ]:
        r = scene.http.request(method, path)
        assert r.status_code == 401, (method, path)
        scene.assert_clean(r.text, path)
