"""Team documents on the Python clients, against a real server process (DESIGN §11).

Two members follow one team document live; roles limit what each may write (403 with the
path); a non-member gets 404 everywhere; a removed member is told, drops its pending edits and
stops receiving; the last owner stays; effective settings layer the user over the team; and a
personal and a team client share one offline cache file without mixing their documents.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livesettings.client import (
    AsyncClient,
    Change,
    ChangeOrigin,
    Client,
    ConnectionState,
    ErrorEvent,
    Member,
    Membership,
    OfflineCache,
    Team,
    can_write,
    team_doc,
)
from livesettings.client.teams import TeamRole
from livesettings.errors import BadRequest, Conflict, Forbidden, NotFound
from tests.client.helpers import (
    MakeClient,
    eventually,
    new_user,
    server_settings,
    service_token,
    token_for,
)
from tests.support.server import ServerProcess
from tests.support.users import signup

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port


async def new_team(
    server: ServerProcess, make_client: MakeClient, members: dict[str, TeamRole] | None = None
) -> tuple[str, AsyncClient, Team]:
    """A team owned by a new user; ``members`` maps user ids to roles."""
    owner = new_user()
    manager = await make_client(server.url, token_for(owner))
    team = await manager.create_team("Acme " + owner)
    for user_id, role in (members or {}).items():
        await manager.set_member(team.team_id, role, user_id=user_id)
    return owner, manager, team


def changes_of(client: AsyncClient) -> list[Change]:
    seen: list[Change] = []
    client.subscribe(seen.append)
    return seen


def errors_of(client: AsyncClient) -> list[ErrorEvent]:
    seen: list[ErrorEvent] = []
    client.on_error(seen.append)
    return seen


# --- following a team document ----------------------------------------------------------------


async def test_two_members_follow_a_team_document_live(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea = new_user()
    ada, manager, team = await new_team(live_server, make_client, {bea: "member"})
    assert (team.role, team.doc) == ("owner", team_doc(team.team_id))
    a = await make_client(live_server.url, token_for(ada), doc=team.doc)
    b = await make_client(live_server.url, token_for(bea), doc=team.doc)
    assert a.status.connection is ConnectionState.ONLINE
    assert b.status.connection is ConnectionState.ONLINE
    assert a.doc == b.doc == team.doc
    seen_by_b, seen_by_a = changes_of(b), changes_of(a)

    ack = await a.update({"theme": "dark"})
    assert (ack.revision, ack.doc, ack.user_id) == (1, team.doc, None)
    await eventually(lambda: b.get("/theme") == "dark")
    remote = [c for c in seen_by_b if c.origin is ChangeOrigin.REMOTE]
    assert [(c.revision, c.patch, c.doc) for c in remote] == [(1, {"theme": "dark"}, team.doc)]

    await b.set("/language", "fr")
    await eventually(lambda: a.get("/language") == "fr" and a.revision == 2)
    assert any(c.patch == {"language": "fr"} and c.doc == team.doc for c in seen_by_a)

    # The team's document is not either member's own.
    assert (await a.get_latest_settings())["theme"] != "dark"
    assert (await manager.get_latest_settings(doc=team.doc))["language"] == "fr"
    assert server_settings(live_server, ada)["settings"]["theme"] != "dark"
    assert [t.team_id for t in await b.teams()] == [team.team_id]
    assert b.role == "member"


async def test_the_service_names_reach_a_team_document_with_doc(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea = new_user()
    _, manager, team = await new_team(live_server, make_client, {bea: "admin"})
    personal = await make_client(live_server.url, token_for(bea))  # follows bea's own document
    seen: list[Change] = []
    await personal.subscribe_to_settings_changes(None, seen.append, doc=team.doc)

    ack = await manager.update_settings_realtime(None, {"theme": "dark"}, doc=team.doc)
    assert ack.doc == team.doc
    await eventually(lambda: any(c.patch == {"theme": "dark"} for c in seen))
    assert all(c.doc == team.doc for c in seen)
    assert personal.get("/theme") != "dark"  # bea's own document is untouched
    assert (await personal.get_latest_settings(doc=team.doc))["theme"] == "dark"
    with pytest.raises(BadRequest):
        await personal.update_settings_realtime(bea, {"theme": "x"}, doc=team.doc)

    # A service token reaches users' documents, never a team's: membership grants that.
    service = await make_client(live_server.url, service_token(), follow=False)
    with pytest.raises(Forbidden):
        await service.subscribe_to_settings_changes(None, seen.append, doc=team.doc)
    with pytest.raises(NotFound):
        await service.get_latest_settings(doc=team.doc)


# --- roles ------------------------------------------------------------------------------------


async def test_a_member_cannot_write_api_keys_and_a_viewer_cannot_write(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea, cy = new_user(), new_user()
    _, _, team = await new_team(live_server, make_client, {bea: "member", cy: "viewer"})
    member = await make_client(live_server.url, token_for(bea), doc=team.doc)
    viewer = await make_client(live_server.url, token_for(cy), doc=team.doc)
    member_errors, viewer_errors = errors_of(member), errors_of(viewer)

    handle = member.update({"api_keys": {"openai": "sk-team-0123456789"}})
    with pytest.raises(Forbidden) as refused:
        await handle
    assert refused.value.details == {"path": "/api_keys/openai"}
    await eventually(lambda: member_errors)
    event = member_errors[0]
    assert (event.code, event.path, event.doc) == ("forbidden", "/api_keys/openai", team.doc)
    assert event.mutation_id == handle.mutation_id
    assert member.get("/api_keys/openai") is None  # rolled back
    assert (await member.update({"preferences": {"tabs": 2}})).revision == 1  # allowed

    with pytest.raises(Forbidden) as refused:
        await viewer.set("/theme", "dark")
    assert refused.value.details == {"path": "/theme"}
    await eventually(lambda: viewer.get("/preferences/tabs") == 2)  # a viewer still reads
    assert viewer.get("/theme") != "dark"
    assert [e.code for e in viewer_errors] == ["forbidden"]
    assert viewer.status.connection is ConnectionState.ONLINE  # a refused edit is no outage

    assert can_write("member", "/api_keys/openai")[0] is False
    assert can_write("member", "theme") == (True, None)
    assert can_write("viewer", "/theme")[0] is False
    assert can_write("admin", ("api_keys", "openai")) == (True, None)


async def test_a_non_member_gets_not_found_everywhere(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    _, _, team = await new_team(live_server, make_client)
    stranger = new_user()
    outsider = await make_client(live_server.url, token_for(stranger), doc=team.doc)
    assert outsider.status.connection is ConnectionState.ERROR
    assert isinstance(outsider.status.error, NotFound)
    personal = await make_client(live_server.url, token_for(stranger))
    for call in (
        personal.members(team.team_id),
        personal.effective_settings(team.team_id),
        personal.get_latest_settings(doc=team.doc),
        personal.set_member(team.team_id, "owner", user_id=stranger),
        personal.delete_team(team.team_id),
        personal.subscribe_to_settings_changes(None, print, doc=team.doc),
    ):
        with pytest.raises(NotFound):
            await call
    assert await personal.teams() == []
    assert personal.status.connection is ConnectionState.ONLINE


# --- membership changes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server granting one write per document and user every 30 s: an edit beyond it is
    refused ``rate_limited`` and stays pending in its client until the retry."""
    proc = ServerProcess(tmp_path_factory.mktemp("slow") / "data", write_rate=1 / 30, write_burst=1)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_removed_member_is_told_drops_its_edits_and_stops_receiving(
    slow_server: ServerProcess,
    make_client: MakeClient,
    cache_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="livesettings.client")
    bea = new_user()
    ada, manager, team = await new_team(slow_server, make_client, {bea: "member"})
    b = await make_client(slow_server.url, token_for(bea), doc=team.doc, cache_path=cache_path)
    told: list[Membership] = []
    b.on_membership(told.append)
    errors, seen = errors_of(b), changes_of(b)
    own: list[Change] = []
    await b.subscribe_to_settings_changes(bea, own.append)  # bea's own document, same socket

    assert (await b.update({"theme": "dark"})).revision == 1
    held = b.update({"language": "fr"})  # beyond the rate: pending until the retry
    await eventually(lambda: f"edit {held.mutation_id}: rate_limited" in caplog.text)
    assert b.get("/language") == "fr" and b.status.unsaved == 1

    await manager.remove_member(team.team_id, bea)
    await eventually(lambda: told)
    assert told == [Membership(team.doc, None)]
    with pytest.raises(Forbidden):
        await held
    await eventually(lambda: len(errors) == 2)
    assert [(e.code, e.mutation_id, e.doc) for e in errors] == [
        ("forbidden", held.mutation_id, team.doc),
        ("forbidden", None, team.doc),
    ]
    assert b.get("/language") != "fr"
    assert seen[-1].origin is ChangeOrigin.ROLLBACK
    assert b.status.connection is ConnectionState.ERROR
    assert isinstance(b.status.error, Forbidden)
    assert (b.status.unsaved, b.role) == (0, None)
    with OfflineCache.open(cache_path) as cache:
        assert team.doc not in cache.keys()  # noqa: SIM118 — a former member keeps nothing of the team

    # The team moves on without bea: her socket still works, but hears nothing of the team.
    a = await make_client(slow_server.url, token_for(ada), doc=team.doc)
    assert (await a.update({"theme": "light"})).revision == 2
    writer = await make_client(slow_server.url, token_for(bea))
    await writer.update({"preferences": {"own": True}})
    await eventually(lambda: any(c.patch == {"preferences": {"own": True}} for c in own))
    assert b.get("/theme") == "dark" and b.revision == 1
    assert not [c for c in seen if c.revision == 2]
    with pytest.raises(NotFound):
        await b.members(team.team_id)


async def test_a_member_added_again_follows_the_document_again(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea = new_user()
    _, manager, team = await new_team(live_server, make_client, {bea: "viewer"})
    b = await make_client(live_server.url, token_for(bea), doc=team.doc)
    told: list[Membership] = []
    b.on_membership(told.append)
    await manager.set_member(team.team_id, "member", user_id=bea)
    await eventually(lambda: b.role == "member")
    await manager.remove_member(team.team_id, bea)
    await eventually(lambda: b.status.connection is ConnectionState.ERROR)
    await manager.set_member(team.team_id, "admin", user_id=bea)
    await eventually(lambda: b.status.connection is ConnectionState.ONLINE)
    assert [m.role for m in told] == ["member", None, "admin"]
    await manager.update_settings_realtime(None, {"theme": "dark"}, doc=team.doc)
    await eventually(lambda: b.get("/theme") == "dark")
    assert (await b.set("/api_keys/openai", "sk-admin-0123456789")).doc == team.doc


async def test_the_last_owner_cannot_leave(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea = new_user()
    _, manager, team = await new_team(live_server, make_client, {bea: "admin"})
    with pytest.raises(Conflict) as refused:
        await manager.leave_team(team.team_id)
    assert refused.value.code == "last_owner"
    b = await make_client(live_server.url, token_for(bea))
    with pytest.raises(Forbidden):
        await b.set_member(team.team_id, "owner", user_id=bea)  # admins manage below owner
    await manager.set_member(team.team_id, "owner", user_id=bea)
    await manager.leave_team(team.team_id)
    assert await manager.teams() == []
    members = await b.members(team.team_id)
    assert [(m.user_id, m.role) for m in members] == [(bea, "owner")]
    await b.delete_team(team.team_id)
    assert await b.teams() == []


async def test_effective_settings_layer_the_user_over_the_team(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    bea = new_user()
    _, manager, team = await new_team(live_server, make_client, {bea: "member"})
    await manager.update_settings_realtime(
        None,
        {"theme": "dark", "language": "fr", "preferences": {"a": 1, "b": 2}},
        doc=team.doc,
    )
    b = await make_client(live_server.url, token_for(bea))
    await b.update({"theme": "light", "preferences": {"b": 3}})
    body = await b.effective_settings(team.doc)
    settings: dict[str, Any] = body["settings"]
    assert (settings["theme"], settings["language"]) == ("light", "fr")
    assert settings["preferences"] == {"a": 1, "b": 3}
    assert (body["team_id"], body["team_revision"], body["revision"]) == (team.team_id, 1, 1)


# --- one offline cache for a personal and a team client -----------------------------------------


async def test_a_personal_and_a_team_client_share_one_cache_file_apart(
    live_server: ServerProcess, make_client: MakeClient, cache_path: str
) -> None:
    ada, manager, team = await new_team(live_server, make_client)
    token = token_for(ada)
    personal = await make_client(live_server.url, token, cache_path=cache_path)
    shared = await make_client(live_server.url, token, cache_path=cache_path, doc=team.doc)
    await personal.update({"theme": "light"})
    await shared.update({"theme": "dark"})
    await personal.close()
    await shared.close()

    # Offline, each reads its own document from the file, and queues its own edits.
    personal = await make_client(UNREACHABLE, token, cache_path=cache_path)
    shared = await make_client(UNREACHABLE, token, cache_path=cache_path, doc=team.doc)
    assert (personal.get("/theme"), shared.get("/theme")) == ("light", "dark")
    personal.set("/language", "de")
    shared.set("/language", "it")
    await personal.close()
    await shared.close()

    # Online again, the team client replays the team's queue only, and the personal its own.
    shared = await make_client(live_server.url, token, cache_path=cache_path, doc=team.doc)
    await asyncio.wait_for(shared.flush(), 10)
    assert (await manager.get_latest_settings(doc=team.doc))["language"] == "it"
    assert server_settings(live_server, ada)["settings"]["language"] != "de"
    personal = await make_client(live_server.url, token, cache_path=cache_path)
    await asyncio.wait_for(personal.flush(), 10)
    assert server_settings(live_server, ada)["settings"]["language"] == "de"
    assert (await manager.get_latest_settings(doc=team.doc))["language"] == "it"
    assert (personal.get("/theme"), shared.get("/theme")) == ("light", "dark")
    with OfflineCache.open(Path(cache_path)) as cache:
        assert cache.keys() == ["", team.doc]
        assert cache.load_pending() == []


# --- the blocking client ------------------------------------------------------------------------


def test_the_blocking_client_manages_teams_by_username(live_server: ServerProcess) -> None:
    with live_server.client() as http:
        ada, bea = signup(http), signup(http)
    with Client(live_server.url, ada.token, connect_timeout=5.0) as client:
        team = client.create_team("Blocking")
        members = client.set_member(team.team_id, "member", username=bea.username)
        assert Member(bea.user_id, "member", bea.username) in [
            Member(m.user_id, m.role, m.username) for m in members
        ]
        assert {m.user_id for m in client.members(team.team_id)} == {ada.user_id, bea.user_id}
        client.update_settings_realtime(None, {"theme": "dark"}, doc=team.doc)
        assert client.get_latest_settings(doc=team.doc)["theme"] == "dark"
        with Client(live_server.url, bea.token, doc=team.doc, connect_timeout=5.0) as b:
            assert b.get("/theme") == "dark"
            assert [t.role for t in b.teams()] == ["member"] and b.role == "member"
            told: list[Membership] = []
            removed = threading.Event()

            def on_membership(membership: Membership) -> None:
                told.append(membership)
                removed.set()

            b.on_membership(on_membership)
            client.remove_member(team.team_id, bea.user_id)
            assert removed.wait(10)
            assert told == [Membership(team.doc, None)]
            assert b.status.connection is ConnectionState.ERROR
        assert client.effective_settings(team.team_id)["settings"]["theme"] == "dark"
        client.delete_team(team.team_id)
        assert client.teams() == []


async def test_a_team_queue_left_by_another_user_is_dropped_not_replayed(
    live_server: ServerProcess, make_client: MakeClient, cache_path: str
) -> None:
    bea = new_user()
    ada, manager, team = await new_team(live_server, make_client, {bea: "member"})
    first = await make_client(live_server.url, token_for(ada), cache_path=cache_path, doc=team.doc)
    await first.close()
    offline = await make_client(UNREACHABLE, token_for(ada), cache_path=cache_path, doc=team.doc)
    offline.set("/language", "fr")  # ada's edit, queued in the file
    await offline.close()

    b = await make_client(live_server.url, token_for(bea), cache_path=cache_path, doc=team.doc)
    assert b.status.connection is ConnectionState.ONLINE
    assert b.get("/language") != "fr" and b.status.unsaved == 0
    assert (await manager.get_latest_settings(doc=team.doc)).get("language") != "fr"
    with OfflineCache.open(Path(cache_path)) as cache:
        assert cache.load_pending() == []
