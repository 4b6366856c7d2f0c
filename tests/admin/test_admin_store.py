"""The admin flag and the dashboard's bounded searches in the stores, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from livesettings.merge import Mutation
from livesettings.store import PendingMutation, Store
from livesettings.store.idempotency import body_hash
from livesettings.teams import new_team_id, team_key


def _write(key: str, patch: dict[str, Any], actor: str | None = None) -> PendingMutation:
    mutation = Mutation("m-" + uuid.uuid4().hex, "c", None, patch, 1_000)
    return PendingMutation(key, mutation, body_hash("patch", patch), kind="patch", actor=actor)


async def test_the_flag_is_granted_to_built_in_users_only_and_goes_with_the_account(
    store: Store,
) -> None:
    await store.create_user("u-ann", "ann", "hash")
    await store.create_user("u-bob", "bob", "hash")
    assert not await store.is_admin("u-ann")
    assert await store.set_admin("u-ann", True) is True
    assert await store.set_admin("u-ann", True) is False  # nothing changed
    assert await store.set_admin("no-such-user", True) is False  # not a built-in user
    assert await store.is_admin("u-ann") and not await store.is_admin("u-bob")
    assert await store.admin_ids() == {"u-ann"}
    await store.set_admin("u-bob", True)
    assert await store.set_admin("u-ann", False) is True
    assert await store.set_admin("u-ann", False) is False
    assert await store.admin_ids() == {"u-bob"}
    assert await store.remove_user("u-bob")
    assert await store.admin_ids() == set()
    assert not await store.is_admin("u-bob")
    # A new account under the removed id is no admin.
    await store.create_user("u-bob", "bob2", "hash")
    assert not await store.is_admin("u-bob")


async def test_users_are_searched_by_username_or_id_prefix_within_the_limit(
    store: Store,
) -> None:
    for i, name in enumerate(["Alice", "malice", "bob", "a_b%c"]):
        await store.create_user(f"id-{i}-{name.lower()}", name, "secret-hash")
    await store.set_admin("id-2-bob", True)
    # A user known only by a document (an identity provider's) and a team's document.
    [ok] = await store.commit([_write("idp-user-1", {"theme": "dark"})])
    assert ok.error is None
    team_id = new_team_id()
    await store.teams.create_team(team_id, "Ops Team", "id-2-bob", max_teams=10)
    await store.commit([_write(team_key(team_id), {"theme": "x"}, actor="id-2-bob")])

    found = await store.search_users("ALIC", 10)
    assert [u.username for u in found] == ["Alice", "malice"]
    assert all(not u.admin and u.revision == 0 and u.updated_at is None for u in found)
    [bob] = await store.search_users("id-2", 10)
    assert (bob.username, bob.admin, bob.teams) == ("bob", True, 1)
    assert bob.created_at
    # LIKE's wildcards are searched for as text.
    assert [u.username for u in await store.search_users("_b%", 10)] == ["a_b%c"]
    assert [u.username for u in await store.search_users("%", 10)] == ["a_b%c"]
    [idp] = await store.search_users("idp-", 10)
    assert (idp.username, idp.revision, idp.admin) == (None, 1, False)
    assert idp.updated_at and idp.created_at
    everyone = await store.search_users("", 100)
    assert [u.user_id for u in everyone][-1] == "idp-user-1"  # no username: last
    assert not any(u.user_id.startswith("team:") for u in everyone)
    assert len(everyone) == 5
    assert len(await store.search_users("", 2)) == 2
    assert "secret-hash" not in repr(everyone)


async def test_teams_are_searched_by_name_or_id_prefix(store: Store) -> None:
    first, second = new_team_id(), new_team_id()
    await store.teams.create_team(first, "Design", "ann", max_teams=10)
    await store.teams.create_team(second, "Ops", "ann", max_teams=10)
    await store.teams.set_member(second, "ann", "bob", "member", max_members=10, max_teams=10)
    await store.commit([_write(team_key(second), {"theme": "dark"}, actor="ann")])
    [ops] = await store.search_teams("oP", 10)
    assert (ops.team_id, ops.name, ops.members, ops.revision) == (second, "Ops", 2, 1)
    assert ops.created_at
    [design] = await store.search_teams(first, 10)  # an id is a prefix of itself
    assert (design.name, design.members, design.revision) == ("Design", 1, 0)
    assert [t.name for t in await store.search_teams("", 10)] == ["Design", "Ops"]
    assert len(await store.search_teams("", 1)) == 1
    assert await store.search_teams("nothing-like-it", 10) == []
