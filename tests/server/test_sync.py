"""Fan-out and catch-up against a real server process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Backend
from tests.support.server import ServerProcess
from tests.support.sse import SseReader
from tests.support.users import signup
from tests.support.ws import WsClient


def _changes(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "change"]


def test_http_and_ws_writes_reach_every_other_client_once_in_order(server: ServerProcess) -> None:
    with server.client() as http:
        alice = signup(http)
        bob = signup(http)
        with (
            WsClient(server.ws_url) as ws1,
            WsClient(server.ws_url) as ws2,
            WsClient(server.ws_url) as other,
        ):
            assert ws1.auth(alice.token, "tab-1")["type"] == "auth_ok"
            assert ws2.auth(alice.token, "tab-2")["type"] == "auth_ok"
            assert other.auth(bob.token)["type"] == "auth_ok"
            assert [f["type"] for f in ws1.subscribe(None)] == ["snapshot", "synced"]
            assert [f["type"] for f in ws2.subscribe(None)] == ["snapshot", "synced"]
            other.subscribe(None)
            sse = SseReader(server.url, alice.token)
            try:
                first = sse.wait_for(2)
                assert [f["type"] for _, f in first] == ["snapshot", "synced"]

                response = http.patch("/v1/settings", json={"theme": "dark"}, headers=alice.headers)
                assert response.status_code == 200, response.text
                assert response.json()["revision"] == 1

                assert ws1.recv()["revision"] == 1  # the HTTP write arrives first
                mid = ws1.update({"language": "fr"}, base=1)
                ack = ws1.recv()
                assert ack == {"type": "ack", "mutation_id": mid, "revision": 2, "conflicts": []}

                got1 = [ws1.frames[-2], ws1.recv()]
                got2 = [ws2.recv(), ws2.recv()]
                for got in (got1, got2):
                    assert [(f["type"], f["revision"]) for f in got] == [
                        ("change", 1),
                        ("change", 2),
                    ]
                    assert got[0]["patch"] == {"theme": "dark"}
                    assert got[1]["patch"] == {"language": "fr"}
                    assert got[1]["client_id"] == "tab-1"
                    assert got[1]["mutation_id"] == mid
                events = sse.wait_for(4)
                assert [(i, f["type"], f.get("revision")) for i, f in events[2:]] == [
                    ("1", "change", 1),
                    ("2", "change", 2),
                ]

                # Bob's barrier: his own write is the one and only frame he sees.
                bmid = other.update({"theme": "system"})
                assert other.recv()["type"] == "ack"
                change = other.recv()
                assert change["type"] == "change" and change["mutation_id"] == bmid
                assert change["revision"] == 1 and change["patch"] == {"theme": "system"}
                assert other.no_frame()
                assert ws1.no_frame() and ws2.no_frame()
            finally:
                sse.close()


def test_reconnect_with_since_gets_exactly_the_missed_changes(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
        for i in range(5):
            r = http.patch("/v1/settings", json={"preferences": {"n": i}}, headers=user.headers)
            assert r.status_code == 200
        with WsClient(server.ws_url) as ws:
            ws.auth(user.token)
            frames = ws.subscribe(2)
            assert [(f["type"], f.get("revision")) for f in frames] == [
                ("change", 3),
                ("change", 4),
                ("change", 5),
                ("synced", 5),
            ]
            assert [f["patch"] for f in frames[:3]] == [
                {"preferences": {"n": 2}},
                {"preferences": {"n": 3}},
                {"preferences": {"n": 4}},
            ]
        with WsClient(server.ws_url) as ws:
            ws.auth(user.token)
            frames = ws.subscribe(99)  # from the future: a snapshot
            assert frames[0]["type"] == "snapshot" and frames[0]["revision"] == 5
            assert frames[0]["settings"]["preferences"] == {"n": 4}
        page = http.get("/v1/settings/changes?since=3", headers=user.headers).json()
        assert [c["revision"] for c in page["changes"]] == [4, 5] and page["reset"] is False
        page = http.get("/v1/settings/changes?since=99", headers=user.headers).json()
        assert page == {"changes": [], "revision": 5, "reset": True}


def test_catch_up_older_than_the_log_is_a_snapshot(backend: Backend, tmp_path: Path) -> None:
    server = backend.server(tmp_path / "data", changelog_retain=3)
    server.start()
    try:
        with server.client() as http:
            user = signup(http)
            for i in range(6):
                http.patch("/v1/settings", json={"preferences": {"n": i}}, headers=user.headers)
            page = http.get("/v1/settings/changes?since=1", headers=user.headers).json()
            assert page == {"changes": [], "revision": 6, "reset": True}
            with WsClient(server.ws_url) as ws:
                ws.auth(user.token)
                frames = ws.subscribe(1)
                assert [f["type"] for f in frames] == ["snapshot", "synced"]
                assert frames[0]["settings"]["preferences"] == {"n": 5}
                frames = ws.subscribe(3)
                assert [f.get("revision") for f in frames] == [4, 5, 6, 6]
    finally:
        server.stop()


def test_sse_resumes_from_last_event_id(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
        for theme in ("dark", "system", "light"):
            http.patch("/v1/settings", json={"theme": theme}, headers=user.headers)
        sse = SseReader(server.url, user.token, last_event_id=1)
        try:
            events = sse.wait_for(3)
            assert [(i, f["type"]) for i, f in events] == [
                ("2", "change"),
                ("3", "change"),
                ("3", "synced"),
            ]
        finally:
            sse.close()
