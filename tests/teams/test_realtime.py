"""Team documents over the WebSocket and Server-Sent Events, against a real server."""

from __future__ import annotations

from typing import Any

from tests.support.server import ServerProcess
from tests.support.sse import SseReader
from tests.support.users import signup
from tests.support.ws import WsClient
from tests.teams.helpers import add_member, create_team


def _types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def test_two_members_follow_each_other_live_over_websocket_and_sse(
    server: ServerProcess,
) -> None:
    with server.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        doc = f"team:{team_id}"
        with WsClient(server.ws_url) as ws_owner, WsClient(server.ws_url) as ws_member:
            assert ws_owner.auth(owner.token, "owner-tab")["type"] == "auth_ok"
            assert ws_member.auth(member.token, "member-tab")["type"] == "auth_ok"
            # One socket holds its own document and the team's: frames about the team's
            # carry doc, frames about its own do not.
            own = ws_member.subscribe(None)
            assert [("doc" in f) for f in own] == [False, False]
            team = ws_member.subscribe(None, doc=doc)
            assert [(f["type"], f["doc"], f["revision"]) for f in team] == [
                ("snapshot", doc, 0),
                ("synced", doc, 0),
            ]
            assert ws_owner.subscribe(0, doc=doc)[-1] == {
                "type": "synced",
                "revision": 0,
                "doc": doc,
            }
            sse = SseReader(server.url, owner.token, path=f"/v1/teams/{team_id}/settings/events")
            try:
                assert [f["type"] for _, f in sse.wait_for(2)] == ["snapshot", "synced"]
                # The member writes over the socket: ack (with doc), then the change to all.
                mid = ws_member.update({"theme": "dark"}, base=0, doc=doc)
                frames = ws_member.recv_until("change")
                assert [(f["type"], f.get("doc")) for f in frames] == [
                    ("ack", doc),
                    ("change", doc),
                ]
                assert frames[0]["mutation_id"] == mid and frames[0]["revision"] == 1
                change = ws_owner.recv()
                assert (change["type"], change["doc"], change["revision"]) == ("change", doc, 1)
                assert change["patch"] == {"theme": "dark"}
                # The owner writes over HTTP: the member's socket gets it, and the stream too.
                http.patch(
                    f"/v1/teams/{team_id}/settings",
                    json={"language": "fr"},
                    headers=owner.headers,
                )
                got = ws_member.recv()
                assert (got["type"], got["doc"], got["patch"]) == (
                    "change",
                    doc,
                    {"language": "fr"},
                )
                events = sse.wait_for(4)
                assert [(i, f["type"], f["revision"]) for i, f in events[2:]] == [
                    ("1", "change", 1),
                    ("2", "change", 2),
                ]
                # Personal writes stay personal.
                http.patch("/v1/settings", json={"theme": "dark"}, headers=owner.headers)
                assert ws_member.no_frame(0.3)
            finally:
                sse.close()


def test_roles_and_non_members_on_the_socket(server: ServerProcess) -> None:
    with server.client() as http:
        owner, member, viewer, stranger = (signup(http) for _ in range(4))
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        add_member(http, team_id, owner, viewer, "viewer")
        doc = f"team:{team_id}"
        with (
            WsClient(server.ws_url) as ws_member,
            WsClient(server.ws_url) as ws_viewer,
            WsClient(server.ws_url) as ws_stranger,
        ):
            for ws, user in ((ws_member, member), (ws_viewer, viewer), (ws_stranger, stranger)):
                assert ws.auth(user.token)["type"] == "auth_ok"
            mid = ws_member.update({"api_keys": {"openai": "sk-no-0123456789"}}, doc=doc)
            error = ws_member.recv()
            assert (error["type"], error["code"], error["mutation_id"], error["doc"]) == (
                "error",
                "forbidden",
                mid,
                doc,
            )
            assert error["details"]["path"] == "/api_keys/openai"
            mid = ws_viewer.update({"theme": "dark"}, doc=doc)
            error = ws_viewer.recv()
            assert (error["code"], error["mutation_id"], error["doc"]) == ("forbidden", mid, doc)
            # A non-member: not_found on subscribe and on update, and nothing else.
            ws_stranger.send({"type": "subscribe", "since": None, "doc": doc})
            error = ws_stranger.recv()
            assert (error["type"], error["code"], error["doc"]) == ("error", "not_found", doc)
            ws_stranger.update({"theme": "dark"}, doc=doc)
            assert ws_stranger.recv()["code"] == "not_found"
            ws_stranger.send({"type": "subscribe", "doc": "team:nope"})
            assert ws_stranger.recv()["code"] == "not_found"
            ws_stranger.send({"type": "subscribe", "doc": "nope"})
            assert ws_stranger.recv()["code"] == "invalid_frame"
            # The socket stays usable.
            assert _types(ws_stranger.subscribe(None)) == ["snapshot", "synced"]
        got = http.get(f"/v1/teams/{team_id}/settings", headers=owner.headers).json()
        assert got["revision"] == 0


def test_a_removed_member_stops_receiving_at_once(server: ServerProcess) -> None:
    with server.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        second = create_team(http, owner)
        add_member(http, second, owner, member, "viewer")
        doc, doc2 = f"team:{team_id}", f"team:{second}"
        with WsClient(server.ws_url) as ws, WsClient(server.ws_url) as other_tab:
            assert ws.auth(member.token)["type"] == "auth_ok"
            assert other_tab.auth(member.token)["type"] == "auth_ok"
            ws.subscribe(None)
            ws.subscribe(None, doc=doc)
            ws.subscribe(None, doc=doc2)  # several teams on one socket
            sse = SseReader(server.url, member.token, path=f"/v1/teams/{team_id}/settings/events")
            try:
                sse.wait_for(2)
                # A role change: every socket of the user hears of it.
                add_member(http, team_id, owner, member, "viewer")
                assert ws.recv() == {"type": "membership", "doc": doc, "role": "viewer"}
                assert other_tab.recv() == {"type": "membership", "doc": doc, "role": "viewer"}
                assert sse.wait_for(3)[2][1] == {"type": "membership", "doc": doc, "role": "viewer"}
                response = http.delete(
                    f"/v1/teams/{team_id}/members/{member.user_id}", headers=owner.headers
                )
                assert response.status_code == 204
                assert ws.recv() == {"type": "membership", "doc": doc, "role": None}
                error = ws.recv()
                assert (error["type"], error["code"], error["doc"]) == ("error", "forbidden", doc)
                assert other_tab.recv() == {"type": "membership", "doc": doc, "role": None}
                events = sse.wait_for(5)
                assert events[3][1] == {"type": "membership", "doc": doc, "role": None}
                assert (events[4][1]["type"], events[4][1]["code"]) == ("error", "forbidden")
                assert sse.ended.wait(5)
                # Nothing more about the team reaches the removed member.
                http.patch(
                    f"/v1/teams/{team_id}/settings", json={"theme": "dark"}, headers=owner.headers
                )
                assert ws.no_frame(0.5)
                assert other_tab.no_frame(0.1)
                # Their own document and their other team's still flow on the same socket.
                http.patch("/v1/settings", json={"theme": "dark"}, headers=member.headers)
                change = ws.recv()
                assert change["type"] == "change" and "doc" not in change
                http.patch(
                    f"/v1/teams/{second}/settings", json={"language": "fr"}, headers=owner.headers
                )
                change = ws.recv()
                assert (change["type"], change["doc"], change["revision"]) == ("change", doc2, 1)
                # And subscribing again is refused like any non-member.
                ws.send({"type": "subscribe", "since": None, "doc": doc})
                assert ws.recv()["code"] == "not_found"
            finally:
                sse.close()
