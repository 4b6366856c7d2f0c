"""Teams in ``livesettings export``/``import`` on every backend: a team's row and members travel
as a team line after the user lines (its document and data key ride a user line keyed
``team:<id>``), and an export made before teams still imports."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from livesettings.backup import export_users, import_users
from livesettings.crypto import Keyring, open_secret, unwrap_data_key
from livesettings.errors import BadRequest, Conflict
from livesettings.merge import Mutation
from livesettings.store import PendingMutation, Store
from livesettings.store.idempotency import body_hash
from livesettings.teams import new_team_id, team_key

from .conftest import MakeStore

CANARY = "sk-team-canary-0123456789abcdef"
LIMITS: dict[str, int] = {"max_members": 10, "max_teams": 10}


def _write(key: str, actor: str, patch: dict[str, Any]) -> PendingMutation:
    mutation = Mutation("m-" + uuid.uuid4().hex, "c", None, patch, 1_000)
    return PendingMutation(key, mutation, body_hash("patch", patch), actor=actor)


async def _team_with_a_secret(store: Store) -> str:
    """A team owned by ann (an account), with bob (an account) as admin and carol (a user of
    an external issuer: no account here) as viewer; its document holds a secret."""
    await store.create_user("ann", "ann", "hash-ann")
    await store.create_user("bob", "bob", "hash-bob")
    team_id = new_team_id()
    await store.teams.create_team(team_id, "Platform", "ann", max_teams=10)
    await store.teams.set_member(team_id, "ann", "bob", "admin", **LIMITS)
    await store.teams.set_member(team_id, "bob", "carol", "viewer", **LIMITS)
    [done] = await store.commit(
        [_write(team_key(team_id), "bob", {"theme": "dark", "api_keys": {"openai": CANARY}})]
    )
    assert done.error is None and done.revision == 1
    return team_id


async def _export(store: Store) -> list[bytes]:
    out = io.BytesIO()
    result = await export_users(store, out.write)
    assert (result.users, result.teams) == (3, 1)  # ann, bob, the team's document; the team
    return out.getvalue().splitlines(keepends=True)


def _roles(members: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.user_id, m.role) for m in members)


async def test_a_team_with_its_members_and_secret_round_trips(
    store: Store, make_store: MakeStore, keyring: Keyring
) -> None:
    team_id = await _team_with_a_secret(store)
    key = team_key(team_id)
    lines = await _export(store)
    assert CANARY.encode() not in b"".join(lines)  # the secret only sealed
    team_line = json.loads(lines[-1])
    assert team_line["kind"] == "team" and team_line["name"] == "Platform"
    assert [(m["user_id"], m["role"]) for m in team_line["members"]] == [
        ("ann", "owner"),
        ("bob", "admin"),
        ("carol", "viewer"),
    ]
    [doc_line] = [json.loads(line) for line in lines if json.loads(line).get("user_id") == key]
    assert doc_line["document"]["settings"]["api_keys"]["openai"]["$sealed"] == 1

    target = await make_store("target")
    result = await import_users(target, lines)
    assert (result.imported, result.teams, result.skipped, result.teams_skipped) == (3, 1, 0, 0)
    [team] = await target.teams.all_teams()
    assert (team.team_id, team.name, team.members) == (team_id, "Platform", 3)
    assert _roles(await target.teams.members(team_id, None)) == [
        ("ann", "owner"),
        ("bob", "admin"),
        ("carol", "viewer"),
    ]
    membership = await target.teams.membership(team_id, "carol")  # no account, still a member
    assert membership is not None and membership.role == "viewer"
    doc = await target.get_document(key, actor="ann")
    assert (doc.revision, doc.settings["theme"]) == (1, "dark")
    wrapped = await target.get_wrapped_key(key)
    assert wrapped is not None
    envelope = doc.settings["api_keys"]["openai"]
    assert open_secret(key, "openai", envelope, unwrap_data_key(keyring, key, wrapped)) == CANARY
    # The restored database exports the same lines.
    assert await _export(target) == lines
    # The roles are in force: the viewer may not write, the admin may.
    [refused, written] = await target.commit(
        [_write(key, "carol", {"language": "fr"}), _write(key, "bob", {"language": "de"})]
    )
    assert refused.error is not None and refused.error.code == "forbidden"
    assert written.error is None and written.revision == 2

    # Importing again: refused, or skipped with skip_existing (teams too).
    with pytest.raises(Conflict, match=r"^line 1: user 'ann' already exists$"):
        await import_users(target, lines)
    with pytest.raises(Conflict, match=rf"^line 2: team '{team_id}' already exists$"):
        await import_users(target, [b"\n", lines[3]])
    again = await import_users(target, lines, skip_existing=True)
    assert (again.imported, again.teams, again.skipped, again.teams_skipped) == (0, 0, 3, 1)
    assert _roles(await target.teams.members(team_id, None)) == _roles(
        await store.teams.members(team_id, None)
    )


async def test_an_export_made_before_teams_still_imports(
    store: Store, make_store: MakeStore
) -> None:
    team_id = await _team_with_a_secret(store)
    old = [line for line in await _export(store) if b'"kind"' not in line]
    assert len(old) == 3 and all("kind" not in json.loads(line) for line in old)
    target = await make_store("target")
    result = await import_users(target, old)
    assert (result.imported, result.teams) == (3, 0)
    assert await target.teams.all_teams() == []
    doc = await target.get_document(team_key(team_id))
    assert (doc.revision, doc.settings["theme"]) == (1, "dark")
    # The team's line, imported later (a newer export), makes the team whole again.
    [team_line] = [line for line in await _export(store) if b'"kind"' in line]
    assert (await import_users(target, [team_line])).teams == 1
    assert _roles(await target.teams.members(team_id, None)) == [
        ("ann", "owner"),
        ("bob", "admin"),
        ("carol", "viewer"),
    ]


async def test_malformed_team_lines_are_refused_naming_the_line(store: Store) -> None:
    owner = {"user_id": "ann", "role": "owner", "added_at": "2025-11-28T17:00:00.000Z"}
    team = {
        "kind": "team",
        "team_id": new_team_id(),
        "name": "T",
        "created_by": "ann",
        "created_at": "2025-11-28T17:00:00.000Z",
        "members": [owner],
    }
    cases = {
        "no owner": {**team, "members": [{**owner, "role": "admin"}]},
        "one of owner": {**team, "members": [{**owner, "role": "boss"}]},
        "listed twice": {**team, "members": [owner, owner]},
        "members": {**team, "members": None},
        "team_id": {**team, "team_id": ""},
        "unknown kind of line 'group'": {**team, "kind": "group"},
    }
    for message, line in cases.items():
        with pytest.raises(BadRequest, match=f"^line 2: .*{message}") as raised:
            await import_users(store, [b"\n", json.dumps(line)])
        assert raised.value.code == "malformed_export"
    assert await store.teams.all_teams() == []
    # The well-formed line imports.
    assert (await import_users(store, [json.dumps(team)])).teams == 1
