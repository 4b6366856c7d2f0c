"""Team documents on PostgreSQL: row-level security by membership, and several nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.multinode.conftest import cluster
from tests.support.postgres import Database, sql
from tests.support.server import wait_for
from tests.support.users import signup
from tests.support.ws import WsClient
from tests.teams.helpers import add_member, create_team

pytestmark = pytest.mark.postgres


async def _as_app_role(db: Database, user_id: str, statements: list[str]) -> list[Any]:
    """Each statement's rows (or status), run by the app role acting as ``user_id`` — the way
    anyone holding the app role's password could, with hand-written SQL."""
    conn = await asyncpg.connect(db.app_url)
    try:
        results: list[Any] = []
        async with conn.transaction():
            await conn.execute("SELECT set_config('livesettings.user_id', $1, true)", user_id)
            for statement in statements:
                if statement.lstrip().upper().startswith("SELECT"):
                    results.append([dict(r) for r in await conn.fetch(statement)])
                else:
                    results.append(await conn.execute(statement))
        return results
    finally:
        await conn.close()


def test_the_app_role_sees_a_team_document_only_as_a_member(
    pg_database: Database, tmp_path: Path
) -> None:
    settings = pg_database.settings(allow_signup="true")
    with cluster(tmp_path, 1, **settings) as (node,), node.client() as http:
        owner, member, stranger = signup(http), signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "viewer")
        http.patch(
            f"/v1/teams/{team_id}/settings",
            json={"theme": "dark", "api_keys": {"openai": "sk-rls-0123456789"}},
            headers=owner.headers,
        )
    key = f"team:{team_id}"
    reads = [
        f"SELECT theme FROM public.user_preferences WHERE user_id = '{key}'",
        f"SELECT revision FROM public.settings_changes WHERE user_id = '{key}'",
        f"SELECT mutation_id FROM public.applied_mutations WHERE user_id = '{key}'",
        f"SELECT key_id FROM public.data_keys WHERE user_id = '{key}'",
        f"SELECT name FROM public.teams WHERE team_id = '{team_id}'",
        f"SELECT user_id FROM public.team_members WHERE team_id = '{team_id}'",
        "SELECT user_id FROM public.user_preferences WHERE user_id LIKE 'team:%'",
    ]
    seen = asyncio.run(_as_app_role(pg_database, member.user_id, reads))
    assert [len(rows) for rows in seen] == [1, 1, 1, 1, 1, 2, 1]
    assert seen[0] == [{"theme": "dark"}]
    # Under another user's context — a stranger's, or none — nothing of the team shows.
    for who in (stranger.user_id, "", "team:" + str(uuid.uuid4())):
        hidden = asyncio.run(_as_app_role(pg_database, who, reads))
        assert hidden == [[] for _ in reads], who
    # Nor can the stranger write it, or make themselves a member.
    writes = [
        f"UPDATE public.user_preferences SET theme = 'light' WHERE user_id = '{key}'",
        f"DELETE FROM public.data_keys WHERE user_id = '{key}'",
        f"DELETE FROM public.team_members WHERE team_id = '{team_id}'",
    ]
    done = asyncio.run(_as_app_role(pg_database, stranger.user_id, writes))
    assert done == ["UPDATE 0", "DELETE 0", "DELETE 0"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(
            _as_app_role(
                pg_database,
                stranger.user_id,
                [
                    "INSERT INTO public.team_members (team_id, user_id, role, added_at) "
                    f"VALUES ('{team_id}', 'intruder', 'owner', now())"
                ],
            )
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(
            _as_app_role(
                pg_database,
                stranger.user_id,
                [
                    "INSERT INTO public.settings_changes (user_id, revision, patch, "
                    "mutation_id, client_id, committed_at, conflicts, inverse) "
                    f"VALUES ('{key}', 99, '{{}}', 'm', 'c', 0, '[]', '{{}}')"
                ],
            )
        )
    still = asyncio.run(_as_app_role(pg_database, member.user_id, reads[:1]))
    assert still == [[{"theme": "dark"}]]


@pytest.mark.parametrize("bus", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def test_team_changes_and_removals_reach_every_node(
    bus: str, pg_database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bus_url = "postgres" if bus == "postgres" else request.getfixturevalue("redis_bus_url")
    settings = pg_database.settings(allow_signup="true", bus_url=bus_url)
    with cluster(tmp_path, 2, **settings) as (node1, node2), node1.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        doc = f"team:{team_id}"
        with WsClient(node2.ws_url) as ws, WsClient(node1.ws_url) as ws_owner:
            assert ws.auth(member.token)["type"] == "auth_ok"
            assert ws_owner.auth(owner.token)["type"] == "auth_ok"
            ws.subscribe(None, doc=doc)
            ws_owner.subscribe(None, doc=doc)
            # A write on node 1 reaches the member on node 2; theirs on node 2 reaches node 1.
            http.patch(
                f"/v1/teams/{team_id}/settings", json={"theme": "dark"}, headers=owner.headers
            )
            change = ws.recv()
            assert (change["type"], change["doc"], change["revision"]) == ("change", doc, 1)
            assert ws_owner.recv()["revision"] == 1
            ws.update({"language": "fr"}, base=1, doc=doc)
            assert [f["type"] for f in ws.recv_until("change")] == ["ack", "change"]
            got = ws_owner.recv()
            assert (got["type"], got["doc"], got["patch"]) == ("change", doc, {"language": "fr"})
            # Removed on node 1: the socket on node 2 is told and stops at once.
            removed = http.delete(
                f"/v1/teams/{team_id}/members/{member.user_id}", headers=owner.headers
            )
            assert removed.status_code == 204
            assert ws.recv(timeout=2.0) == {"type": "membership", "doc": doc, "role": None}
            error = ws.recv(timeout=2.0)
            assert (error["type"], error["code"], error["doc"]) == ("error", "forbidden", doc)
            http.patch(
                f"/v1/teams/{team_id}/settings", json={"theme": "light"}, headers=owner.headers
            )
            assert ws_owner.recv()["revision"] == 3
            assert ws.no_frame(0.5)


def test_a_removal_missed_while_a_node_was_deaf_reaches_its_sockets_after(
    pg_database: Database, tmp_path: Path
) -> None:
    settings = pg_database.settings(allow_signup="true", bus_url="postgres")
    with cluster(tmp_path, 2, **settings) as (node1, node2), node1.client() as http:
        assert node2.proc is not None
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        doc = f"team:{team_id}"
        with WsClient(node2.ws_url) as ws:
            assert ws.auth(member.token)["type"] == "auth_ok"
            ws.subscribe(None, doc=doc)
            listener = sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2",
                pg_database.name,
                f"livesettings-bus/{node2.proc.pid}@%",
            )[0]["pid"]
            # Node 2 is frozen while its listener goes and the removal is committed: the
            # removal's notification is certainly lost to it.
            os.kill(node2.proc.pid, signal.SIGSTOP)
            try:
                assert sql("SELECT pg_terminate_backend($1) AS ok", listener) == [{"ok": True}]
                wait_for(
                    lambda: not sql("SELECT 1 FROM pg_stat_activity WHERE pid = $1", listener),
                    timeout=5.0,
                )
                removed = http.delete(
                    f"/v1/teams/{team_id}/members/{member.user_id}", headers=owner.headers
                )
                assert removed.status_code == 204
            finally:
                os.kill(node2.proc.pid, signal.SIGCONT)
            # Node 2 listens again and reads the memberships its sockets rely on.
            assert ws.recv(timeout=15.0) == {"type": "membership", "doc": doc, "role": None}
            error = ws.recv(timeout=5.0)
            assert (error["type"], error["code"], error["doc"]) == ("error", "forbidden", doc)
