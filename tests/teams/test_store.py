"""The stores' part of teams, on SQLite and PostgreSQL: the role is checked again at commit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from livesettings.errors import Conflict
from livesettings.merge import Mutation
from livesettings.store import PendingMutation, Store
from livesettings.store.idempotency import body_hash
from livesettings.teams import new_team_id, team_key


def _write(key: str, actor: str, patch: dict[str, Any], kind: str = "patch") -> PendingMutation:
    mutation = Mutation("m-" + uuid.uuid4().hex, "c", None, patch, 1_000)
    return PendingMutation(key, mutation, body_hash(kind, patch), kind=kind, actor=actor)  # type: ignore[arg-type]


async def test_a_writer_removed_or_demoted_before_the_commit_is_refused_by_it(
    store: Store,
) -> None:
    team_id = new_team_id()
    key = team_key(team_id)
    await store.teams.create_team(team_id, "T", "ann", max_teams=10)
    await store.teams.set_member(team_id, "ann", "bob", "member", max_members=10, max_teams=10)
    [ok] = await store.commit([_write(key, "bob", {"theme": "dark"})])
    assert ok.error is None and ok.revision == 1
    # Demoted after the request was let in: the commit reads the role again.
    await store.teams.set_member(team_id, "ann", "bob", "viewer", max_members=10, max_teams=10)
    [refused] = await store.commit([_write(key, "bob", {"theme": "light"})])
    assert refused.error is not None and refused.error.code == "forbidden"
    [reverting] = await store.commit([_write(key, "bob", {}, kind="revert")])
    assert reverting.error is not None and reverting.error.code == "forbidden"
    await store.teams.remove_member(team_id, "ann", "bob")
    [gone] = await store.commit([_write(key, "bob", {"language": "fr"})])
    assert gone.error is not None and gone.error.code == "not_found"
    # The owner's write in the same batch is unaffected.
    outcomes = await store.commit(
        [_write(key, "bob", {"language": "de"}), _write(key, "ann", {"language": "fr"})]
    )
    assert [o.error is None for o in outcomes] == [False, True]
    doc = await store.get_document(key, actor="ann")
    assert (doc.revision, doc.settings["theme"], doc.settings["language"]) == (2, "dark", "fr")


async def test_memberships_are_listed_and_the_team_deleted_with_its_document(
    store: Store,
) -> None:
    team_id = new_team_id()
    key = team_key(team_id)
    await store.teams.create_team(team_id, "Zeta", "ann", max_teams=10)
    await store.teams.set_member(team_id, None, "cid", "admin", max_members=10, max_teams=10)
    assert [(t.team_id, t.role) for t in await store.teams.teams_of("cid")] == [(team_id, "admin")]
    assert [(m.user_id, m.role) for m in await store.teams.members(team_id, "cid")] == [
        ("ann", "owner"),
        ("cid", "admin"),
    ]
    assert [(t.name, t.members) for t in await store.teams.all_teams()] == [("Zeta", 2)]
    [ok] = await store.commit([_write(key, "cid", {"preferences": {"a": 1}})])
    assert ok.error is None
    assert await store.teams.delete_team(team_id, "ann") == ["ann", "cid"]
    assert await store.teams.teams_of("cid") == []
    assert await store.teams.membership(team_id, "ann") is None
    assert (await store.get_document(key)).revision == 0


async def test_a_user_leaves_every_team_but_a_last_owner_is_refused(store: Store) -> None:
    first, second = new_team_id(), new_team_id()
    await store.teams.create_team(first, "One", "ann", max_teams=10)
    await store.teams.create_team(second, "Two", "bob", max_teams=10)
    await store.teams.set_member(second, "bob", "ann", "owner", max_members=10, max_teams=10)
    with pytest.raises(Conflict) as refused:
        await store.teams.leave_all("ann")
    assert refused.value.code == "last_owner"
    assert refused.value.details == {"teams": [first]}
    assert len(await store.teams.teams_of("ann")) == 2  # nothing changed
    await store.teams.set_member(first, "ann", "bob", "owner", max_members=10, max_teams=10)
    assert sorted(await store.teams.leave_all("ann")) == sorted([first, second])
    assert await store.teams.teams_of("ann") == []
    assert [m.user_id for m in await store.teams.members(second, "bob")] == ["bob"]
