"""``/realtime/v1/websocket`` against a real server process, with raw WebSocket clients speaking
Phoenix's 2.0.0 (arrays) and 1.0.0 (objects) as supabase-js and realtime-py do.

The real clients themselves are exercised in the other tests of this folder; these pin the
frames: the join's reply and its binding ids, heartbeats, token swaps, leave and close, refusals,
and the events of writes made by other clients, in order and once each.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from livesettings.auth import TokenIssuer
from tests.compat.conftest import anon_key_of
from tests.conftest import SHARED_SERVER_SETTINGS
from tests.support.postgres import Database, clone_database, drop_database
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User, signup
from tests.support.ws import WsClient

VSNS = ["2.0.0", "1.0.0"]
TABLE = {"schema": "public", "table": "user_preferences"}


class Phx:
    """A raw Phoenix client: frames in and out as dicts ``{join_ref, ref, topic, event,
    payload}``, whatever the ``vsn``."""

    def __init__(
        self,
        server: ServerProcess,
        apikey: str | None,
        vsn: str | None,
        *,
        origin: str | None = None,
    ) -> None:
        params = {k: v for k, v in {"apikey": apikey, "vsn": vsn}.items() if v is not None}
        url = server.url.replace("http://", "ws://") + "/realtime/v1/websocket"
        self.vsn = vsn or "1.0.0"
        headers = {"Origin": origin} if origin else None
        self.conn: ClientConnection = connect(
            f"{url}?{urlencode(params)}", open_timeout=5, additional_headers=headers
        )
        self.refs = 0
        self.raw: list[str | bytes] = []

    def push(
        self, topic: str, event: str, payload: dict[str, Any], join_ref: str | None = None
    ) -> str:
        self.refs += 1
        ref = str(self.refs)
        if self.vsn == "2.0.0":
            self.conn.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
            self.conn.send(json.dumps({**frame, "join_ref": join_ref}))
        return ref

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        text = self.conn.recv(timeout=timeout)
        self.raw.append(text)
        assert isinstance(text, str), "the server never sends binary frames"
        data = json.loads(text)
        if self.vsn == "2.0.0":
            assert isinstance(data, list) and len(data) == 5
            join_ref, ref, topic, event, payload = data
            return {
                "join_ref": join_ref,
                "ref": ref,
                "topic": topic,
                "event": event,
                "payload": payload,
            }
        assert set(data) == {"topic", "event", "payload", "ref"}, data  # no join_ref in 1.0.0
        return {**data, "join_ref": None}

    def recv_event(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame, which must be ``event``."""
        frame = self.recv(timeout)
        assert frame["event"] == event, frame
        return frame

    def nothing(self, wait: float = 0.4) -> None:
        try:
            text = self.conn.recv(timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {text!r}")

    def join(
        self, topic: str, bindings: list[dict[str, Any]], token: str | None
    ) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "config": {
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
                "postgres_changes": bindings,
                "private": False,
            }
        }
        if token is not None:
            payload["access_token"] = token
        # phoenix.js sends a join's own ref as its join_ref; realtime-py sends none.
        own = str(self.refs + 1) if self.vsn == "2.0.0" else None
        ref = self.push(topic, "phx_join", payload, join_ref=own)
        reply = self.recv_event("phx_reply")
        assert reply["ref"] == ref and reply["topic"] == topic
        if self.vsn == "2.0.0":
            assert reply["join_ref"] == ref
        return ref, reply["payload"]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def http(compat_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=compat_server.url, timeout=10) as client:
        yield client


def prefs(user: User, **filters: Any) -> dict[str, Any]:
    return {"event": "*", **TABLE, "filter": f"user_id=eq.{user.user_id}", **filters}


def patch(http: httpx.Client, user: User, body: dict[str, Any]) -> int:
    response = http.patch("/v1/settings", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    revision: int = response.json()["revision"]
    return revision


def subscribed(client: Phx, topic: str, join_ref: str) -> None:
    system = client.recv_event("system")
    assert system["topic"] == topic and system["ref"] is None
    assert system["payload"] == {
        "extension": "postgres_changes",
        "status": "ok",
        "message": "Subscribed to PostgreSQL",
        "channel": topic.removeprefix("realtime:"),
    }
    if client.vsn == "2.0.0":
        assert system["join_ref"] == join_ref


def issued(user_id: str, *, role: str | None = None, ttl: int = 600) -> str:
    return TokenIssuer(TEST_JWT_SECRET.encode()).issue(user_id, role=role, ttl_seconds=ttl)[0]


@pytest.mark.parametrize("vsn", VSNS)
def test_join_reply_echoes_bindings_with_ids_then_events_follow_writes(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client, vsn: str
) -> None:
    user = signup(http)
    client = Phx(compat_server, anon_key, vsn)
    try:
        bindings = [prefs(user), prefs(user, event="UPDATE")]
        ref, reply = client.join("realtime:prefs", bindings, user.token)
        assert reply["status"] == "ok"
        echoed = reply["response"]["postgres_changes"]
        assert [{k: v for k, v in b.items() if k != "id"} for b in echoed] == bindings
        ids = [b["id"] for b in echoed]
        assert all(type(i) is int for i in ids) and ids[0] != ids[1]
        subscribed(client, "realtime:prefs", ref)

        heartbeat = client.push("phoenix", "heartbeat", {})
        beat = client.recv_event("phx_reply")
        assert (beat["topic"], beat["ref"], beat["join_ref"]) == ("phoenix", heartbeat, None)
        assert beat["payload"] == {"status": "ok", "response": {}}

        # The first write creates the row: INSERT, for the "*" binding only.
        patch(http, user, {"theme": "dark", "api_keys": {"openai": "sk-test-abcdefgh1234"}})
        insert = client.recv_event("postgres_changes")
        assert insert["topic"] == "realtime:prefs" and insert["ref"] is None
        data = insert["payload"]["data"]
        assert insert["payload"]["ids"] == [ids[0]]
        assert (data["schema"], data["table"], data["type"]) == (
            "public",
            "user_preferences",
            "INSERT",
        )
        assert data["errors"] is None and "old_record" not in data
        assert [c["name"] for c in data["columns"]] == [
            "id",
            "user_id",
            "theme",
            "language",
            "preferences",
            "ai_providers",
            "api_keys",
            "created_at",
            "updated_at",
        ]
        record = data["record"]
        assert record["user_id"] == user.user_id and record["theme"] == "dark"
        assert record["language"] == "en" and record["preferences"] == {}
        assert record["api_keys"]["openai"]["set"] is True
        assert record["api_keys"]["openai"]["last4"] == "1234"
        assert data["commit_timestamp"] == record["updated_at"]
        assert data["commit_timestamp"].endswith("Z") and record["created_at"]
        row_id = record["id"]
        assert row_id is not None

        # Later writes are UPDATEs, for both bindings, with the primary key as old_record.
        patch(http, user, {"preferences": {"fontSize": 14}})
        update = client.recv_event("postgres_changes")
        assert sorted(update["payload"]["ids"]) == sorted(ids)
        data = update["payload"]["data"]
        assert data["type"] == "UPDATE" and data["old_record"] == {"id": row_id}
        assert data["record"]["preferences"] == {"fontSize": 14}
        assert data["record"]["theme"] == "dark" and data["record"]["id"] == row_id
        assert data["record"]["created_at"] == record["created_at"]
        client.nothing()
        assert not any("sk-test-abcdefgh1234" in str(text) for text in client.raw)
    finally:
        client.close()


def test_events_follow_the_binding_event_and_select(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user = signup(http)
    patch(http, user, {"theme": "light"})  # the row exists: later writes are UPDATEs
    client = Phx(compat_server, anon_key, "2.0.0")
    try:
        bindings = [prefs(user, event="INSERT"), prefs(user, event="update", select=["theme"])]
        ref, reply = client.join("realtime:sel", bindings, user.token)
        ids = [b["id"] for b in reply["response"]["postgres_changes"]]
        subscribed(client, "realtime:sel", ref)
        patch(http, user, {"theme": "system"})
        event = client.recv_event("postgres_changes")
        assert event["payload"]["ids"] == [ids[1]]
        data = event["payload"]["data"]
        assert set(data["record"]) == {"id", "theme"} and data["record"]["theme"] == "system"
        assert [c["name"] for c in data["columns"]] == ["id", "theme"]
        client.nothing()
    finally:
        client.close()


@pytest.mark.parametrize("vsn", VSNS)
def test_refusals_leave_the_socket_usable(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client, vsn: str
) -> None:
    user, other = signup(http), signup(http)
    client = Phx(compat_server, anon_key, vsn)
    try:
        cases = {
            "Unauthorized": [prefs(other)],
            "filter none": [{"event": "*", **TABLE}],
            "filter 'id=eq.1'": [prefs(user, filter="id=eq.1")],
            "table 'todos'": [prefs(user, table="todos")],
            "schema 'private'": [prefs(user, schema="private")],
            "InvalidJoinPayload": [prefs(user, event="TRUNCATE")],
        }
        for i, (why, bindings) in enumerate(cases.items()):
            ref, reply = client.join(f"realtime:bad{i}", bindings, user.token)
            assert reply["status"] == "error", reply
            assert why in reply["response"]["reason"], (why, reply)
        # A token that is not valid at all.
        ref, reply = client.join("realtime:tok", [prefs(user)], "not-a-jwt")
        assert reply["status"] == "error"
        assert reply["response"]["reason"].startswith("InvalidJWTToken")
        # A topic outside realtime:*, and a frame for a topic never joined.
        ref, reply = client.join("room:1", [], user.token)
        assert reply["response"] == {"reason": "unmatched topic"}
        sent = client.push("realtime:never", "access_token", {"access_token": user.token})
        answer = client.recv_event("phx_reply")
        assert answer["ref"] == sent and answer["payload"] == {
            "status": "error",
            "response": {"reason": "unmatched topic"},
        }
        client.conn.send("this is not json")
        # Still usable: a valid join works and gets events.
        ref, reply = client.join("realtime:ok", [prefs(user)], user.token)
        assert reply["status"] == "ok"
        subscribed(client, "realtime:ok", ref)
        patch(http, user, {"language": "fr"})
        assert (
            client.recv_event("postgres_changes")["payload"]["data"]["record"]["language"] == "fr"
        )
    finally:
        client.close()


def test_a_service_token_may_follow_any_user(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user = signup(http)
    client = Phx(compat_server, anon_key, "2.0.0")
    try:
        ref, reply = client.join("realtime:svc", [prefs(user)], issued("backend", role="service"))
        assert reply["status"] == "ok"
        subscribed(client, "realtime:svc", ref)
        patch(http, user, {"theme": "dark"})
        event = client.recv_event("postgres_changes")
        assert event["payload"]["data"]["record"]["user_id"] == user.user_id
    finally:
        client.close()


@pytest.mark.parametrize("vsn", VSNS)
def test_early_join_with_the_anon_key_gets_nothing_until_a_users_token(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client, vsn: str
) -> None:
    user = signup(http)
    client = Phx(compat_server, anon_key, vsn)
    try:
        ref, reply = client.join("realtime:early", [prefs(user)], None)  # the apikey: anon
        assert reply["status"] == "ok"
        patch(http, user, {"theme": "dark"})
        client.nothing()
        client.push("realtime:early", "access_token", {"access_token": user.token}, ref)
        subscribed(client, "realtime:early", ref)  # no reply to access_token itself
        patch(http, user, {"theme": "system"})
        event = client.recv_event("postgres_changes")
        assert event["payload"]["data"]["type"] == "UPDATE"
        assert event["payload"]["data"]["record"]["theme"] == "system"
        # Signing out sends the anon key again: nothing flows, the channel stays.
        client.push("realtime:early", "access_token", {"access_token": anon_key}, ref)
        patch(http, user, {"theme": "light"})
        client.nothing()
        # A fresh token of the same user is swapped in silently, and changes flow again.
        client.push("realtime:early", "access_token", {"access_token": issued(user.user_id)}, ref)
        subscribed(client, "realtime:early", ref)
        patch(http, user, {"theme": "dark"})
        assert client.recv_event("postgres_changes")["payload"]["data"]["record"]["theme"] == "dark"
    finally:
        client.close()


def test_a_token_of_another_user_or_an_expired_one_shuts_the_channel(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user, other = signup(http), signup(http)
    client = Phx(compat_server, anon_key, "2.0.0")
    try:
        ref, _ = client.join("realtime:a", [prefs(user)], user.token)
        subscribed(client, "realtime:a", ref)
        client.push("realtime:a", "access_token", {"access_token": other.token}, ref)
        system = client.recv_event("system")
        assert system["payload"]["status"] == "error" and system["payload"]["extension"] == "system"
        assert "no longer have permission" in system["payload"]["message"]
        closed = client.recv_event("phx_close")
        assert (closed["topic"], closed["ref"], closed["join_ref"]) == ("realtime:a", ref, ref)

        ref, _ = client.join("realtime:b", [prefs(user)], issued(user.user_id, ttl=2))
        subscribed(client, "realtime:b", ref)
        system = client.recv_event("system", timeout=6)
        assert system["payload"]["message"].startswith("Token has expired")
        assert client.recv_event("phx_close")["join_ref"] == ref
        patch(http, user, {"theme": "dark"})
        client.nothing()
    finally:
        client.close()


@pytest.mark.parametrize("vsn", VSNS)
def test_leave_is_answered_then_closed(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client, vsn: str
) -> None:
    user = signup(http)
    client = Phx(compat_server, anon_key, vsn)
    try:
        ref, _ = client.join("realtime:bye", [prefs(user)], user.token)
        subscribed(client, "realtime:bye", ref)
        leave = client.push("realtime:bye", "phx_leave", {}, ref)
        reply = client.recv_event("phx_reply")
        assert reply["ref"] == leave and reply["payload"] == {"status": "ok", "response": {}}
        closed = client.recv_event("phx_close")
        assert closed["ref"] == ref and closed["payload"] == {}
        patch(http, user, {"theme": "dark"})
        client.nothing()
        # supabase-js's broadcast goes out as a binary frame: answered, never as binary.
        if vsn == "2.0.0":
            ref, _ = client.join("realtime:room", [], user.token)
            header = bytes([3, len(ref), 2, len("realtime:room"), 4, 0, 1])
            client.conn.send(header + ref.encode() + b"99realtime:roomping" + b"{}")
            answer = client.recv_event("phx_reply")
            assert answer["ref"] == "99" and answer["payload"]["status"] == "error"
    finally:
        client.close()


def test_a_burst_from_another_socket_arrives_in_order_once_each(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user = signup(http)
    phx = Phx(compat_server, anon_key, "2.0.0")
    writer = WsClient(compat_server.url.replace("http://", "ws://") + "/v1/realtime")
    try:
        ref, _ = phx.join("realtime:burst", [prefs(user)], user.token)
        subscribed(phx, "realtime:burst", ref)
        writer.auth(user.token)
        count = 40
        for n in range(1, count + 1):
            writer.send(
                {
                    "type": "update",
                    "mutation_id": str(uuid.uuid4()),
                    "base_revision": n - 1,
                    "patch": {"preferences": {"n": n}},
                    "edited_at": int(time.time() * 1000),
                }
            )
        seen = [phx.recv_event("postgres_changes") for _ in range(count)]
        values = [e["payload"]["data"]["record"]["preferences"]["n"] for e in seen]
        assert values == list(range(1, count + 1))
        assert [e["payload"]["data"]["type"] for e in seen] == ["INSERT"] + ["UPDATE"] * (count - 1)
        phx.nothing()
        acks = [f for f in (writer.recv() for _ in range(count)) if f["type"] == "ack"]
        assert len(acks) == count  # read, so the writer's socket closes at once
    finally:
        writer.conn.close()
        phx.close()


def test_the_handshake_needs_an_apikey_and_a_known_vsn(
    compat_server: ServerProcess, anon_key: str
) -> None:
    for apikey, vsn, status in (
        (None, "2.0.0", 401),
        ("nope", "2.0.0", 401),
        (anon_key, "3.0.0", 400),
    ):
        with pytest.raises(InvalidStatus) as refused:
            Phx(compat_server, apikey, vsn)
        assert refused.value.response.status_code == status
        assert "error" in json.loads(refused.value.response.body or b"{}")


def test_a_browser_origin_must_be_allowed(compat_server: ServerProcess, anon_key: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        Phx(compat_server, anon_key, "2.0.0", origin="http://evil.example")
    assert refused.value.response.status_code == 403
    allowed = compat_server.env()["LIVESETTINGS_ALLOWED_ORIGINS"].split(",")[0]
    Phx(compat_server, anon_key, "2.0.0", origin=allowed).close()


def test_signing_out_everywhere_shuts_the_users_channels(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user = signup(http)
    client = Phx(compat_server, anon_key, "2.0.0")
    try:
        ref, _ = client.join("realtime:out", [prefs(user)], user.token)
        subscribed(client, "realtime:out", ref)
        assert http.post("/v1/auth/logout", headers=user.headers).status_code == 204
        system = client.recv_event("system")
        assert system["payload"]["status"] == "error"
        assert system["payload"]["message"] == "Unauthorized: session ended"
        assert client.recv_event("phx_close")["join_ref"] == ref
        beat = client.push("phoenix", "heartbeat", {})
        assert client.recv_event("phx_reply")["ref"] == beat  # the socket itself stays
    finally:
        client.close()


def test_removing_the_account_ends_the_channel(
    compat_server: ServerProcess, anon_key: str, http: httpx.Client
) -> None:
    user = signup(http)
    patch(http, user, {"theme": "dark"})
    client = Phx(compat_server, anon_key, "1.0.0")
    try:
        ref, _ = client.join("realtime:gone", [prefs(user)], user.token)
        subscribed(client, "realtime:gone", ref)
        removed = http.request(
            "DELETE", "/v1/account", json={"password": user.password}, headers=user.headers
        )
        assert removed.status_code == 204, removed.text
        assert client.recv_event("system")["payload"]["status"] == "error"
        assert client.recv_event("phx_close")["topic"] == "realtime:gone"
        client.nothing()
    finally:
        client.close()


def test_the_per_user_connection_limit_applies(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", max_connections_per_user=1, **SHARED_SERVER_SETTINGS)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            user = signup(http)
        anon = anon_key_of(server)
        first, second = Phx(server, anon, "2.0.0"), Phx(server, anon, "2.0.0")
        ref, reply = first.join("realtime:1", [prefs(user)], user.token)
        assert reply["status"] == "ok"
        subscribed(first, "realtime:1", ref)
        ref, reply = first.join("realtime:2", [prefs(user)], user.token)
        assert reply["status"] == "ok"  # one socket counts once, whatever its channels
        ref, reply = second.join("realtime:1", [prefs(user)], user.token)
        assert reply == {
            "status": "error",
            "response": {"reason": "ConnectionRateLimitReached: Too many connected users"},
        }
        first.close()
        time.sleep(0.3)
        _, reply = second.join("realtime:1", [prefs(user)], user.token)
        assert reply["status"] == "ok"
        second.close()
    finally:
        server.stop()


@pytest.fixture
def two_nodes(pg_template: Database, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two servers on one PostgreSQL database (a copy of the set-up template)."""
    db = clone_database(pg_template)
    nodes: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            settings = {**db.settings(allow_signup="true"), **SHARED_SERVER_SETTINGS}
            node = ServerProcess(tmp_path / name, **settings)
            nodes.append(node)
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        drop_database(db)


@pytest.mark.postgres
def test_writes_on_either_node_reach_a_channel_on_the_other_in_order(
    two_nodes: list[ServerProcess],
) -> None:
    a, b = two_nodes
    with (
        httpx.Client(base_url=a.url, timeout=10) as on_a,
        httpx.Client(base_url=b.url, timeout=10) as on_b,
    ):
        user = signup(on_a)
        client = Phx(b, anon_key_of(a), "2.0.0")
        try:
            ref, reply = client.join("realtime:far", [prefs(user)], user.token)
            assert reply["status"] == "ok"
            subscribed(client, "realtime:far", ref)
            for n in range(1, 11):
                patch(on_a if n % 2 else on_b, user, {"preferences": {"n": n}})
            seen = [client.recv_event("postgres_changes") for _ in range(10)]
            records = [e["payload"]["data"]["record"] for e in seen]
            assert [r["preferences"]["n"] for r in records] == list(range(1, 11))
            assert seen[0]["payload"]["data"]["type"] == "INSERT"
            assert len({r["id"] for r in records}) == 1 and records[0]["id"] is not None
            client.nothing()
        finally:
            client.close()
